"""SshBackend against an nspawn lab PC: keyslot work over real SSH on a LUKS2 *file*.

Keyslot operations need no device-mapper, so a container (seconds to start, prefix cps)
shows the SSH backend for real: the connection as the lab's inventory gives it (through
:func:`load_fleet`), a full rotation with the key file installed by the backend's script,
an admin login that becomes root with ``sudo -n`` (and one whose sudo is refused), and an
unreachable address, each one clear error. Meanwhile ``ps`` is sampled on the controller
(it sees the container's processes too): no key in any argv, on either side.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from campus_provision.hostkeys import ssh_options
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore
from campus_provision.lab import control
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf
from campus_provision.volumes.fleet import Connection, load_fleet
from campus_provision.volumes.journal import default_journal_dir
from campus_provision.volumes.rotate import rotate_key
from campus_provision.volumes.ssh import SshBackend
from tests.lab.conftest import lab_paths, require_lab, small_spec
from tests.leaks import PsSampler, Secret

pytestmark = [pytest.mark.lab]
PREFIX = "cps"
PC = "sgm-a01"
HEADER = "/root/ds1.luks"
KEYFILE = "/etc/cryptsetup-keys.d/ds1.key"
VOLUME = f"{PC}/ds1"
CHEAP = Pbkdf(memory_kib=32768, force_iterations=4)
ADMIN, NOBODY = "cpr-admin", "cpr-nosudo"


@dataclass
class Pc:
    paths: LabPaths
    host: LabHost
    connection: Connection
    store: VolumeKeystore
    keys_dir: Path
    sampler: PsSampler

    def sh(self, command: str, stdin: bytes | None = None) -> str:
        done = subprocess.run([*control.ssh_args(self.paths, self.host), command], input=stdin,
                              capture_output=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout.decode()


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pc]:
    require_lab()
    tmp = tmp_path_factory.mktemp(PREFIX)
    paths = lab_paths(PREFIX)
    control.down(paths)
    sampler = PsSampler(interval=0.2)
    try:
        result = control.up(small_spec(tmp), paths, per_site=1, sites=["sangam"], progress=print)
        host = result.plan.host(PC)
        (target,) = load_fleet(paths.inventory / "hosts.yml", limit=PC)
        store = VolumeKeystore(tmp / "keys", "lab ssh backend keystore passphrase, not a secret")
        key = store.create(VOLUME)
        the = Pc(paths, host, target.connection, store, tmp / "keys", sampler)
        the.sh(f"truncate -s 16M {HEADER} && mkdir -p -m 0700 /etc/cryptsetup-keys.d && "
               f"cryptsetup luksFormat --batch-mode --type luks2 {' '.join(CHEAP.args())} "
               f"--label ds1@1 --key-file=- --keyfile-size={KEYFILE_BYTES} {HEADER}",
               store.secret(VOLUME, key.key_id))  # fmt: skip
        pub = paths.ssh_key.with_suffix(".pub").read_text()
        for user, sudo in ((ADMIN, True), (NOBODY, False)):
            the.sh(f"useradd -m {user} && install -d -m 700 -o {user} /home/{user}/.ssh && "
                   f"install -m 600 -o {user} /dev/stdin /home/{user}/.ssh/authorized_keys"
                   + (f" && echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{user}"
                      if sudo else ""), pub.encode())  # fmt: skip
        sampler.start()
        yield the
    finally:
        sampler.stop()
        control.down(paths)
        assert control.leftovers(paths) == []


def backend(pc: Pc, connection: Connection | None = None) -> SshBackend:
    return SshBackend(connection or pc.connection, "ds1", pbkdf=CHEAP, device=HEADER,
                      keyfile=KEYFILE, timeout=120)  # fmt: skip


def test_the_inventory_connection_is_the_labs(pc: Pc) -> None:
    assert pc.connection.address == str(pc.host.address.ip)
    # Known by its key in the lab inventory's known_hosts, then the lab's ssh config.
    assert pc.connection.ssh_args == (*ssh_options(pc.paths.inventory / "hosts.yml"),
                                      "-F", str(pc.paths.ssh_config))  # fmt: skip
    assert not pc.connection.become


def test_a_rotation_over_ssh(pc: Pc) -> None:
    b = backend(pc)
    old_id = pc.store.current(VOLUME).key_id  # type: ignore[union-attr]
    old = pc.store.secret(VOLUME, old_id)
    assert b.label_and_slots() == ("ds1@1", [0])
    assert not b.keyfile_present() and not b.keyfile_holds(old)
    b.install_keyfile(old)
    assert pc.sh(f"stat -c '%a %u %g' {KEYFILE}").split() == ["600", "0", "0"]
    result = rotate_key(pc.store, VOLUME, b, default_journal_dir(pc.keys_dir))
    new = pc.store.secret(VOLUME, str(result.new_key))
    assert b.key_opens(new) and not b.key_opens(old)
    assert b.keyfile_holds(new) and not b.keyfile_holds(old)
    assert b.label_and_slots() == ("ds1@1", [1])
    assert pc.sh("ls -A /etc/cryptsetup-keys.d").split() == ["ds1.key"]  # no temp file left
    pc.sampler.stop()
    secrets = [Secret("old key", old), Secret("new key", new),
               Secret("old key (raw)", base64.b64decode(old)),
               Secret("new key (raw)", base64.b64decode(new))]  # fmt: skip
    assert any(b"cryptsetup" in s for s in pc.sampler.snapshots)
    assert [str(leak) for leak in pc.sampler.scan(secrets)] == []


def test_an_admin_becomes_root_with_sudo(pc: Pc) -> None:
    admin = dataclasses.replace(pc.connection, user=ADMIN)
    assert admin.become
    current = pc.store.current(VOLUME)
    assert current is not None
    b = backend(pc, admin)
    assert b.key_opens(pc.store.secret(VOLUME, current.key_id))
    assert b.keyfile_holds(pc.store.secret(VOLUME, current.key_id))  # a 0600 root file
    refused = backend(pc, dataclasses.replace(pc.connection, user=NOBODY))
    with pytest.raises(VolumeError, match=f"sudo -n refused for {NOBODY}"):
        refused.active_slots()


def test_an_unreachable_pc_is_one_clear_error(pc: Pc) -> None:
    gone = dataclasses.replace(pc.connection, host="sgm-a99", address="10.254.1.250")
    with pytest.raises(
        VolumeError, match=re.escape("sgm-a99: unreachable over SSH as root@10.254.1.250")
    ):
        backend(pc, gone).active_slots()


def test_key_file_mode_is_checked_by_stat(pc: Pc) -> None:
    mode = pc.sh(f"stat -c '%f' {KEYFILE}").strip()
    assert stat.S_IMODE(int(mode, 16)) == 0o600
