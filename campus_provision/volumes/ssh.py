"""A dataset volume on a PC, reached over SSH: :class:`SshBackend`.

Each operation is one ``ssh`` command with a *fixed* remote command line, built with
:func:`campus_provision.shell.join` from constant words and names checked against the
spec's rules (dataset ids, device and key-file paths); keys travel only on ssh's stdin,
so no key is ever in an argv, here or on the PC, nor in a log. The remote side runs in
the C locale (cryptsetup's messages are parsed) with ``sudo -n`` when the login is not
root (``--admin``).

- ``run(args, stdin)``: ``cryptsetup <args>`` on the PC (the device is
  ``/dev/disk/by-partlabel/<dataset id>``, the partition the role names after it).
- ``install_keyfile(key)``: one ``sh -c`` with a fixed script: the key from stdin into a
  0600 temp file in ``/etc/cryptsetup-keys.d``, fsync'd, renamed over ``<id>.key``.
- ``keyfile_holds(key)``: the key goes to the PC on stdin and ``cmp -s - <file>`` answers
  yes or no; the PC never sends a key back.
- ``label_and_slots()``, ``is_mounted()``, ``keyfile_present()``: what ``volumes status``
  shows, no key involved.

ssh gets ``BatchMode``, ``ConnectTimeout`` and keepalives, and every command a bounded
timeout; an unreachable PC (ssh's exit 255), a refused ``sudo -n`` or a timeout is one
:class:`~campus_provision.volumes.VolumeError` naming the host.

One connection per PC is shared by the commands of one process (``ControlMaster``): an
SSH handshake costs seconds on a slow PC, and an operation takes a dozen commands. The
sockets live in a private directory of this process (0700, never shared with another
process or lab); at exit each master is told to stop and the directory goes. A process
that is killed leaves its masters to stop by themselves after ``ControlPersist``, and the
next process removes the directory it left (named after its pid).

API (stable; later changes are additive): ``SshBackend(connection, dataset_id, *,
pbkdf=None, timeout=300, device=None, keyfile=None)``; ``ssh_argv(connection, remote)``;
``remote_command(connection, argv)``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from campus_provision.keys.volumes import KEYFILE_BYTES
from campus_provision.shell import join
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import CryptsetupBackend, Pbkdf, Result, check_key
from campus_provision.volumes.fleet import Connection

KEY_DIR = "/etc/cryptsetup-keys.d"
MOUNT_ROOT = "/srv/datasets"
PARTLABEL_DIR = "/dev/disk/by-partlabel"
CONNECT_TIMEOUT = 15
SSH_UNREACHABLE = 255
# sh's exit codes in the scripts below that mean "no such file" (not an ssh failure).
_NO_FILE = 3
_REMOTE_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
_DATASET_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_LABEL = re.compile(r"^Label:\s*(.*?)\s*$", re.MULTILINE)
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+-]+")
# Key from stdin into a temp file beside the key file, 0600 root, fsync'd, renamed into
# place, the directory fsync'd: a crash leaves the old key file or the new one, whole.
INSTALL_SCRIPT = f"""set -eu
umask 077
dir=$1 name=$2
[ -d "$dir" ] || {{ echo "$dir: no such directory" >&2; exit {_NO_FILE}; }}
tmp=$(mktemp "$dir/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
size=$(wc -c < "$tmp")
[ "$size" -eq {KEYFILE_BYTES} ] || {{ echo "got $size bytes, not {KEYFILE_BYTES}" >&2; exit 4; }}
chown 0:0 "$tmp"
chmod 0600 "$tmp"
sync "$tmp"
mv -f "$tmp" "$dir/$name"
trap - EXIT
sync "$dir"
"""
# The key on stdin against the file: 0 same, 1 differs, 3 no file. Nothing comes back.
HOLDS_SCRIPT = f"""[ -f "$1" ] || {{ cat > /dev/null; exit {_NO_FILE}; }}
cmp -s - "$1"
"""
EXISTS_SCRIPT = f'[ -f "$1" ] || exit {_NO_FILE}'


def luks_label(dump: str) -> str | None:
    """The label in ``cryptsetup luksDump``'s text (the JSON metadata does not hold it)."""
    found = _LABEL.search(dump)
    if found is None or found.group(1) == "(no label)":
        return None
    return found.group(1)


def remote_command(connection: Connection, argv: list[str]) -> str:
    """The one string ssh sends: ``argv`` quoted, in the C locale, under sudo if not root."""
    prefix = ["sudo", "-n"] if connection.become else []
    return join([*prefix, "env", "LC_ALL=C", _REMOTE_PATH, *argv])


CONTROL_PERSIST = 15  # seconds a master idles before it stops (a killed process's too)
_control_dir: Path | None = None


def _stop_masters() -> None:
    """Tell each master of this process to stop, then remove the socket directory."""
    global _control_dir
    directory, _control_dir = _control_dir, None
    if directory is None:
        return
    for socket in directory.iterdir():
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(  # noqa: S603 - fixed words and our own socket's path
                ["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "campus-pc"],  # noqa: S607
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
    shutil.rmtree(directory, ignore_errors=True)


CONTROL_PREFIX = "cp-ssh-"
_OWNER = re.compile(rf"{CONTROL_PREFIX}(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_control_dirs(root: Path) -> list[Path]:
    """Remove the socket directories of processes that are gone (killed: no atexit ran).

    Only this user's directories named ``cp-ssh-<pid>-*`` whose process no longer runs;
    a master such a process left stops by itself after ``ControlPersist``.
    """
    removed = []
    for directory in root.glob(f"{CONTROL_PREFIX}*-*"):
        owner = _OWNER.match(directory.name)
        try:
            mine = directory.lstat().st_uid == os.getuid() and directory.is_dir()
        except OSError:
            continue
        if owner and mine and not directory.is_symlink() and not _alive(int(owner.group(1))):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def control_options() -> list[str]:
    """ssh options sharing one connection per PC within this process (see the module doc)."""
    global _control_dir  # noqa: PLW0603 - made once, on first use
    if _control_dir is None:
        sweep_stale_control_dirs(Path(tempfile.gettempdir()))
        _control_dir = Path(tempfile.mkdtemp(prefix=f"{CONTROL_PREFIX}{os.getpid()}-"))
        atexit.register(_stop_masters)
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={_control_dir}/%C",
            "-o", f"ControlPersist={CONTROL_PERSIST}"]  # fmt: skip


def ssh_argv(connection: Connection, remote: str) -> list[str]:
    """The ssh command line running ``remote`` (a :func:`remote_command`) on the PC."""
    argv = ["ssh", *connection.ssh_args, *control_options()]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]  # fmt: skip
    if connection.port is not None:
        argv += ["-p", str(connection.port)]
    if connection.identity_file:
        argv += ["-i", connection.identity_file]
    # "--" before the address: an inventory's ansible_host of "-oProxyCommand=..." is a
    # host name ssh cannot resolve, not an option that runs a command here.
    return [*argv, "-l", connection.user, "--", connection.address, remote]


def _checked_path(path: str, what: str) -> str:
    if not _SAFE_PATH.fullmatch(path) or "/../" in f"{path}/":
        raise VolumeError(f"{path!r}: not a safe absolute {what} path")
    return path


class SshBackend(CryptsetupBackend):
    """One dataset volume on a PC, every operation one ssh command, keys on stdin only."""

    def __init__(
        self,
        connection: Connection,
        dataset_id: str,
        *,
        pbkdf: Pbkdf | None = None,
        timeout: float = 300,
        device: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        if not _DATASET_RE.fullmatch(dataset_id):
            raise VolumeError(f"{dataset_id!r}: not a dataset id")
        device = _checked_path(device or f"{PARTLABEL_DIR}/{dataset_id}", "device")
        super().__init__(device, pbkdf or Pbkdf())
        self.connection = connection
        self.dataset_id = dataset_id
        self.keyfile = _checked_path(keyfile or f"{KEY_DIR}/{dataset_id}.key", "key file")
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"{self.connection.host}:{self.device}"

    def ssh(self, argv: list[str], stdin: bytes, what: str) -> Result:
        """Run ``argv`` on the PC with ``stdin``; VolumeError if ssh or sudo cannot."""
        cmd = ssh_argv(self.connection, remote_command(self.connection, argv))
        try:
            done = subprocess.run(  # noqa: S603 - an argument list, no key in it
                cmd, input=stdin, capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise VolumeError(
                f"{self.connection.host}: {what} did not finish in {self.timeout:g} s over SSH"
            ) from None
        except OSError as exc:
            raise VolumeError(f"{self.connection.host}: cannot run ssh: {exc.strerror}") from None
        result = Result(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )
        if result.returncode == SSH_UNREACHABLE:
            detail = result.stderr.strip().splitlines()
            raise VolumeError(
                f"{self.connection.host}: unreachable over SSH as {self.connection.user}@"
                f"{self.connection.address}: {detail[-1] if detail else 'ssh exit 255'}"
            )
        if self.connection.become and "sudo:" in result.stderr and result.returncode == 1:
            raise VolumeError(
                f"{self.connection.host}: sudo -n refused for {self.connection.user}: "
                f"{result.stderr.strip().splitlines()[-1]}"
            )
        return result

    def run(self, args: list[str], stdin: bytes) -> Result:
        return self.ssh(["cryptsetup", *args], stdin, f"cryptsetup {args[0]}")

    def _split_keyfile(self) -> tuple[str, str]:
        path = PurePosixPath(self.keyfile)
        return str(path.parent), path.name

    def install_keyfile(self, key: bytes) -> None:
        directory, name = self._split_keyfile()
        result = self.ssh(
            ["sh", "-c", INSTALL_SCRIPT, "sh", directory, name], check_key(key), "install key file"
        )
        if result.returncode != 0:
            detail = result.stderr.strip().replace("\n", "; ")
            raise VolumeError(
                f"{self.connection.host}: cannot write the key file {self.keyfile} "
                f"(exit {result.returncode}): {detail}"
            )

    def keyfile_holds(self, key: bytes) -> bool:
        result = self.ssh(["sh", "-c", HOLDS_SCRIPT, "sh", self.keyfile], check_key(key), "cmp")
        if result.returncode in (1, _NO_FILE):
            return False
        if result.returncode != 0:
            raise VolumeError(
                f"{self.connection.host}: cannot compare the key file {self.keyfile} "
                f"(exit {result.returncode}): {result.stderr.strip()}"
            )
        return True

    # -- what ``volumes status`` shows (no key involved) ---------------------------------

    def keyfile_present(self) -> bool:
        """Whether the key file exists on the PC."""
        result = self.ssh(["sh", "-c", EXISTS_SCRIPT, "sh", self.keyfile], b"", "test -f")
        return result.returncode == 0

    def label_and_slots(self) -> tuple[str | None, list[int]] | None:
        """The LUKS label and active keyslots, or None when the device is not LUKS (or absent)."""
        result = self.run(["luksDump", self.device], b"")
        if result.returncode != 0:
            return None
        return luks_label(result.stdout), self.active_slots()

    def is_mounted(self, mount_root: str = MOUNT_ROOT) -> bool:
        """Whether ``<mount_root>/<id>`` is a mount point on the PC."""
        path = _checked_path(f"{mount_root}/{self.dataset_id}", "mount")
        result = self.ssh(["findmnt", "-rn", "--mountpoint", path], b"", "findmnt")
        return result.returncode == 0
