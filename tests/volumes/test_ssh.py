"""SshBackend: the argv it runs (no key in it, ever), its errors, and its scripts for real.

The scripts run for real through a stand-in ``ssh`` that executes the remote command line
here with ``sh -c`` (the same one string sshd would hand to the login shell), against a
LUKS2 file: quoting, the key-file install and the comparison are exercised as on a PC.
"""

from __future__ import annotations

import base64
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.volumes import VolumeError
from campus_provision.volumes import ssh as ssh_module
from campus_provision.volumes.fleet import Connection
from campus_provision.volumes.journal import default_journal_dir
from campus_provision.volumes.rotate import rotate_key
from campus_provision.volumes.ssh import INSTALL_SCRIPT, SshBackend, remote_command, ssh_argv
from tests.volumes.conftest import CHEAP, VOLUME, Vol

LAB = Connection("sgm-a01", "10.254.1.11", "root", None, None, ("-F", "/lab dir/ssh_config"))
ADMIN = Connection("sgm-a01", "10.21.0.11", "park-seoyeon", 2222, "/k/id_ed25519", ())
KEY = base64.b64encode(b"k" * 64)
NEW = base64.b64encode(b"n" * 64)


def spellings(key: bytes) -> list[bytes]:
    raw = base64.b64decode(key)
    return [key, raw, raw.hex().encode(), key.hex().encode(), base64.b64encode(key)]


class Recorder:
    """Stands in for subprocess.run: records argv and stdin, answers with ``replies``."""

    def __init__(self, *replies: tuple[int, str, str]) -> None:
        self.calls: list[tuple[list[str], bytes]] = []
        self.replies = list(replies)

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((argv, kwargs.get("input") or b""))
        assert kwargs["timeout"] > 0
        rc, out, err = self.replies.pop(0) if self.replies else (0, "", "")
        return subprocess.CompletedProcess(argv, rc, out.encode(), err.encode())

    def remote(self, index: int = -1) -> list[str]:
        return shlex.split(self.calls[index][0][-1])


def backend(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, conn: Connection = LAB
) -> SshBackend:
    monkeypatch.setattr(subprocess, "run", recorder)
    return SshBackend(conn, "card-spending-2025", pbkdf=CHEAP)


def test_the_ssh_command_line() -> None:
    argv = ssh_argv(LAB, "true")
    assert argv[:3] == ["ssh", "-F", "/lab dir/ssh_config"]
    assert "BatchMode=yes" in argv and "ConnectTimeout=15" in argv
    assert "ServerAliveInterval=15" in argv
    assert argv[-5:] == ["-l", "root", "--", "10.254.1.11", "true"]
    admin = ssh_argv(ADMIN, "true")
    assert (
        admin[admin.index("-p") + 1] == "2222" and admin[admin.index("-i") + 1] == "/k/id_ed25519"
    )
    assert shlex.split(remote_command(ADMIN, ["cryptsetup", "luksDump", "/dev/x"]))[:3] == [
        "sudo", "-n", "env",
    ]  # fmt: skip
    assert shlex.split(remote_command(LAB, ["a b", "$(x)"]))[-2:] == ["a b", "$(x)"]


def test_every_operation_sends_keys_on_stdin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(
        (0, "Key slot 0 unlocked.\n", ""),  # key_opens
        (0, "Key slot 1 created.\n", ""),  # add_key
        (0, '{"keyslots": {"0": {}, "1": {}}}', ""),  # kill_slot: luksDump
        (0, "", ""),  # kill_slot: luksKillSlot
        (0, "", ""),  # install_keyfile
        (1, "", ""),  # keyfile_holds
    )
    b = backend(monkeypatch, rec, ADMIN)
    assert b.key_opens(KEY)
    assert b.add_key(KEY, NEW) == 1
    b.kill_slot(0, NEW)
    b.install_keyfile(NEW)
    assert not b.keyfile_holds(KEY)
    assert len(rec.calls) == 6
    for argv, stdin in rec.calls:
        text = "\0".join(argv).encode()
        for key in (KEY, NEW):
            assert not any(s in text for s in spellings(key)), argv
        assert stdin in (b"", KEY, NEW, KEY + NEW)
    assert rec.calls[1][1] == KEY + NEW
    opened = rec.remote(0)
    assert opened[:5] == ["sudo", "-n", "env", "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert opened[5:8] == ["cryptsetup", "open", "--test-passphrase"]
    assert opened[-1] == "/dev/disk/by-partlabel/card-spending-2025"
    install = rec.remote(4)
    assert install[5:7] == ["sh", "-c"] and install[-2:] == ["/etc/cryptsetup-keys.d",
                                                             "card-spending-2025.key"]  # fmt: skip
    assert rec.remote(5)[-1] == "/etc/cryptsetup-keys.d/card-spending-2025.key"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((255, "", "ssh: connect to host 10.254.1.11 port 22: No route to host\n"),
         "sgm-a01: unreachable over SSH as root@10.254.1.11: ssh: connect to host"),
        ((1, "", "sudo: a password is required\n"), "sudo -n refused for park-seoyeon"),
    ],
)  # fmt: skip
def test_ssh_and_sudo_failures_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, reply: tuple[int, str, str], message: str
) -> None:
    conn = ADMIN if "sudo" in message else LAB
    b = backend(monkeypatch, Recorder(reply), conn)
    with pytest.raises(VolumeError, match=message):
        b.key_opens(KEY)


def test_a_hung_command_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(argv: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hang)
    b = SshBackend(LAB, "card-spending-2025", timeout=7)
    with pytest.raises(VolumeError, match="did not finish in 7 s over SSH"):
        b.active_slots()


@pytest.mark.parametrize(
    ("dataset", "device"), [("Bad;id", None), ("ok", "/dev/x; rm -rf /"), ("ok", "rel/path")]
)
def test_names_that_are_not_safe_are_refused(dataset: str, device: str | None) -> None:
    with pytest.raises(VolumeError, match="not a"):
        SshBackend(LAB, dataset, device=device)


@pytest.fixture
def local_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``ssh`` on PATH that runs the remote command line here, as sshd would."""
    if os.geteuid() != 0:
        pytest.skip("the key-file script chowns to root: run as root (make test does)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text('#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n', encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path


def test_rotation_through_the_ssh_backend_for_real(local_ssh: Path, vol: Vol) -> None:
    key_dir = local_ssh / "cryptsetup-keys.d"
    key_dir.mkdir(mode=0o700)
    keyfile = key_dir / "ds1.key"
    b = SshBackend(LAB, "ds1", pbkdf=CHEAP, device=str(vol.header), keyfile=str(keyfile))
    assert not b.keyfile_holds(vol.old_secret)  # no key file yet
    assert not b.keyfile_present()
    b.install_keyfile(vol.old_secret)
    info = keyfile.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0
    assert b.keyfile_present() and b.keyfile_holds(vol.old_secret)
    assert b.label_and_slots() == ("ds1@1", [0])
    store = VolumeKeystore(vol.keys_dir, vol.store._passphrase)
    result = rotate_key(store, VOLUME, b, default_journal_dir(vol.keys_dir))
    new = store.secret(VOLUME, str(result.new_key))
    assert keyfile.read_bytes() == new and b.keyfile_holds(new)
    assert b.key_opens(new) and not b.key_opens(vol.old_secret)
    assert [p.name for p in key_dir.iterdir()] == ["ds1.key"]  # no temp file left


def test_a_short_key_file_write_is_refused_and_leaves_nothing(local_ssh: Path) -> None:
    key_dir = local_ssh / "keys.d"
    key_dir.mkdir()
    b = SshBackend(LAB, "ds1", device="/dev/null", keyfile=str(key_dir / "ds1.key"))
    done = b.ssh(["sh", "-c", INSTALL_SCRIPT,
                  "sh", str(key_dir), "ds1.key"], b"short", "install")  # fmt: skip
    assert done.returncode == 4 and "not 88" in done.stderr
    assert list(key_dir.iterdir()) == []
    missing = SshBackend(LAB, "ds1", device="/dev/null", keyfile=str(local_ssh / "no/ds1.key"))
    with pytest.raises(VolumeError, match="no such directory"):
        missing.install_keyfile(KEY)


def test_one_connection_per_pc_is_shared_in_a_private_directory_and_stopped_at_exit() -> None:
    """Within one process every command of a PC goes over one master connection whose
    socket is in a 0700 directory of that process; at exit the directory goes."""
    script = (
        "import os, stat, sys\n"
        "from campus_provision.volumes import ssh\n"
        "from tests.volumes.test_ssh import LAB\n"
        "a, b = ssh.ssh_argv(LAB, 'true'), ssh.ssh_argv(LAB, 'false')\n"
        "path = next(o for o in a if o.startswith('ControlPath='))\n"
        "assert path in b and 'ControlMaster=auto' in a, a\n"
        "directory = path.removeprefix('ControlPath=').removesuffix('/%C')\n"
        "assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700\n"
        "print(directory)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    directory = Path(done.stdout.strip())
    assert directory.name.startswith("cp-ssh-") and not directory.exists()


def test_the_socket_directory_a_killed_process_left_is_swept_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    stale = tmp_path / f"cp-ssh-{gone.stdout.strip()}-abc123"
    live = tmp_path / f"cp-ssh-{os.getpid()}-def456"
    other = tmp_path / "cp-ssh-notapid"
    for directory in (stale, live, other):
        directory.mkdir()
    (stale / "0123abcd").write_bytes(b"")  # a socket the dead master left
    assert ssh_module.sweep_stale_control_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir() and other.is_dir()
