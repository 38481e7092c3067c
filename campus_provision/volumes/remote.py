"""A root shell on a PC, one command at a time: what the data operations run their steps in.

Retire, load and swap act on partitions, mounts and boot files, not only on LUKS keyslots,
so they need more than the cryptsetup backend: a shell command run as root, with bytes on
its stdin (a key), or an open file as its stdin (a dataset file, which ssh then reads
itself: it never passes through this process's memory, whatever its size), and its exit
code and output back. The command text never holds a key: keys only ever travel on stdin.

:class:`LocalShell` runs the same commands here (the unit tests point them at LUKS2 files
and boot files in a temp directory); :class:`SshShell` runs them on a PC over one SSH
command each, as root or through ``sudo -n``, with :mod:`~campus_provision.volumes.ssh`'s
command line.
"""

from __future__ import annotations

import subprocess
from typing import BinaryIO, Protocol

from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Result
from campus_provision.volumes.fleet import Connection
from campus_provision.volumes.ssh import SSH_UNREACHABLE, remote_command, ssh_argv

DEFAULT_TIMEOUT = 600.0
# A file sent on stdin may take this long per byte on top of DEFAULT_TIMEOUT (1 MiB/s at
# worst) before the command counts as hung: a 2 GiB file then has 35 min more.
SECONDS_PER_BYTE = 1.0 / (1 << 20)
# sbin is not on every login's PATH; the commands use cryptsetup, wipefs, sfdisk, blkid.
PATH_PREFIX = "PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH; export PATH; LC_ALL=C; export LC_ALL; "


class Shell(Protocol):
    """A root shell on one machine."""

    @property
    def where(self) -> str:
        """The machine, for messages."""
        ...

    def run(
        self, script: str, stdin: bytes | BinaryIO = b"", timeout: float = DEFAULT_TIMEOUT
    ) -> Result:
        """Run ``script`` with ``sh -c`` as root; VolumeError if it cannot run at all.

        ``stdin`` is bytes, or an open file the command reads straight from."""
        ...


def _finish(where: str, argv: list[str], stdin: bytes | BinaryIO, timeout: float) -> Result:
    # An open file goes to the command as its stdin descriptor: the command reads it, so
    # this process holds none of it (a dataset file may be larger than this machine's RAM).
    try:
        if isinstance(stdin, bytes):
            done = subprocess.run(  # noqa: S603 - an argument list, the script holds no secret
                argv, input=stdin, capture_output=True, timeout=timeout, check=False
            )
        else:
            done = subprocess.run(  # noqa: S603 - as above
                argv, stdin=stdin, capture_output=True, timeout=timeout, check=False
            )
    except subprocess.TimeoutExpired:
        raise VolumeError(f"{where}: a command did not finish in {timeout:g} s") from None
    except OSError as exc:
        raise VolumeError(f"{where}: cannot run {argv[0]}: {exc.strerror}") from None
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


class LocalShell:
    """This machine's shell (the tests: LUKS2 files, boot files in a temp directory)."""

    where = "localhost"

    def run(
        self, script: str, stdin: bytes | BinaryIO = b"", timeout: float = DEFAULT_TIMEOUT
    ) -> Result:
        return _finish(self.where, ["sh", "-c", PATH_PREFIX + script], stdin, timeout)


class SshShell:
    """A PC's root shell over SSH (:mod:`~campus_provision.volumes.ssh`'s command line:
    BatchMode, timeouts, ``sudo -n`` when the login is not root, the C locale)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def where(self) -> str:
        return self.connection.host

    def run(
        self, script: str, stdin: bytes | BinaryIO = b"", timeout: float = DEFAULT_TIMEOUT
    ) -> Result:
        remote = remote_command(self.connection, ["sh", "-c", PATH_PREFIX + script])
        result = _finish(self.where, ssh_argv(self.connection, remote), stdin, timeout)
        if result.returncode == SSH_UNREACHABLE and not result.stdout:
            detail = result.stderr.strip().splitlines()
            raise VolumeError(
                f"{self.where}: unreachable over SSH as {self.connection.user}@"
                f"{self.connection.address}: {detail[-1] if detail else 'ssh exit 255'}"
            )
        return result


def check(
    shell: Shell,
    script: str,
    what: str,
    stdin: bytes | BinaryIO = b"",
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Run ``script``; its stdout, or VolumeError naming ``what`` and the command's error."""
    result = shell.run(script, stdin, timeout)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        raise VolumeError(f"{shell.where}: {what} failed (exit {result.returncode}): {detail}")
    return result.stdout
