"""campus_data_volume on a QEMU lab PC: LUKS2 dataset volumes that unlock and mount at boot.

The session's volume VM (tests/lab/volume_vm.py: Sangam's first PC, three restricted
datasets on its 512 MiB data disk; dm-crypt needs a kernel of its own, so no container can
show this), before ``test_volume_lab_rotate`` uses it. The VOL checks fail on it first;
then campus_apt_client, the analysts' groups and campus_data_volume, with the keys made in
a keystore of the test's own, create the volumes; the checks pass; no key is in anything the runs left behind; a second run changes nothing;
and a keystore whose current key the volume does not know makes the role fail loudly,
leaving the volume and its data as they were.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from campus_provision.keys.volumes import VolumeKeystore, volume_id
from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths
from campus_provision.provision.runner import TIMINGS_FILE, RunResult
from campus_provision.verify.runner import Target, run_checks
from tests.lab.conftest import changed_log_lines, failures
from tests.lab.volume_vm import VM, VolumeVm

pytestmark = [pytest.mark.lab, pytest.mark.vm]
CONTROLS = ("CP-VOL-01", "CP-VOL-02", "CP-VOL-03")
ROLE = "campus_data_volume"  # as a tag: the role alone
ROOT = "/srv/datasets"
KEY_DIR = "/etc/cryptsetup-keys.d"
SAMPLE = "sample.bin"


@dataclass
class Lab:
    vm: VolumeVm
    sample_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> LabPaths:
        return self.vm.paths

    @property
    def result(self) -> UpResult:
        return self.vm.result

    @property
    def tmp(self) -> Path:
        return self.vm.runs

    @property
    def keystore(self) -> VolumeKeystore:
        return self.vm.keystore

    @property
    def datasets(self) -> list[dict[str, Any]]:
        return self.vm.datasets

    @property
    def host(self) -> LabHost:
        return self.vm.host

    def ssh(self, command: str, timeout: float = 300) -> CompletedProcess[str]:
        # Root's own SSH: nothing here turns root login off.
        return subprocess.run([*control.ssh_args(self.paths, self.host), command],
                              capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip

    def sh(self, command: str) -> str:
        out = self.ssh(command)
        assert out.returncode == 0, f"{VM}: {command}: {out.stdout}{out.stderr}"
        return out.stdout

    def play(self, *, tags: str | None = None, check: bool = False) -> RunResult:
        return self.vm.play(tags=tags, check=check)

    def statuses(self) -> dict[tuple[str, str], str]:
        target = Target(inventory=self.paths.inventory / "hosts.yml",
                        campus=self.result.plan.campus, spec_sha256="0" * 64, limit=VM,
                        controls=CONTROLS, workers=1)  # fmt: skip
        self.tmp.mkdir(exist_ok=True)
        junit = self.tmp / f"junit-{len(list(self.tmp.glob('junit-*')))}.xml"
        return {(r.host, r.control): r.status for r in run_checks(target, junit).results}

    def key_texts(self) -> list[bytes]:
        """Every key of the keystore as text, raw hex, text hex and text base64."""
        found = []
        for key in self.keystore.keys(volume_id=None):
            text = self.keystore.secret(key.volume_id, key.key_id)
            raw = base64.b64decode(text)
            found += [text, raw.hex().encode(), text.hex().encode(), base64.b64encode(text)]
        return found

    def assert_no_key_left_behind(self) -> None:
        """No key, in any spelling, in the runs' files (log, events, timings) or the inventory."""
        secrets = self.key_texts()
        files = [p for p in (*self.tmp.rglob("*"), *self.paths.inventory.rglob("*")) if p.is_file()]
        leaks = [(str(p), i) for p in files for i, s in enumerate(secrets) if s in p.read_bytes()]
        assert leaks == [], leaks


def _role_seconds(run: RunResult) -> float:
    """The seconds the run spent in campus_data_volume's tasks and handlers."""
    timings = json.loads((run.run_dir / TIMINGS_FILE).read_text(encoding="utf-8"))
    return sum(t["seconds"] for t in timings if t["task"].startswith(f"{ROLE} : "))


@pytest.fixture(scope="module")
def lab(volume_vm_lab: VolumeVm) -> Lab:
    assert not volume_vm_lab.provisioned, "this module starts from the bare volume VM"
    return Lab(volume_vm_lab)


def test_vol_checks_fail_on_the_unprovisioned_vm(lab: Lab) -> None:
    assert [ds["tier"] for ds in lab.datasets] == ["restricted"] * 3
    disk = lab.sh("lsblk -rno NAME /dev/disk/by-id/virtio-campus-data")
    assert len(disk.split()) == 1, disk  # a blank data disk, no partitions
    before = lab.statuses()
    assert before == {(VM, c): "fail" for c in CONTROLS}, before


def test_provisioning_makes_the_volumes_and_leaves_no_key_behind(lab: Lab) -> None:
    run = lab.play()
    assert run.ok(), failures(run)
    lab.vm.provisioned = True
    (summary,) = run.hosts
    print(
        f"first run: {run.seconds:.0f} s ({ROLE}: {_role_seconds(run):.0f} s), {summary.changed} changed"
    )
    log = run.log.read_text(encoding="utf-8")
    assert "luksFormat /dev/vdb1 (aes-xts-plain64, 512-bit key, argon2id)" in log
    for ds in lab.datasets:
        name, path = ds["id"], f"{ROOT}/{ds['id']}"
        label = lab.sh(f"blkid -s LABEL -o value /dev/disk/by-partlabel/{name}").strip()
        assert label == f"{name}@{ds['version']}"
        mount = lab.sh(f"findmnt -no SOURCE,OPTIONS --mountpoint {path}").split()
        assert mount[0] == f"/dev/mapper/{name}"
        assert {"nodev", "nosuid", "noexec"} <= set(mount[1].split(",")), mount
        acl = lab.sh(f"getfacl -cp --no-effective {path}").split()
        readers = {f"group:{g}:r-x" for g in ds["readers"]}
        assert {a for a in acl if a.startswith("group:")} == {"group::---", *readers}, acl
        assert {"other::---", "default:other::---", "mask::r-x"} <= set(acl), acl
    listing = lab.sh(f"stat -c '%a %U %n' {KEY_DIR} {KEY_DIR}/*").splitlines()
    key_files = sorted(f"600 root {KEY_DIR}/{ds['id']}.key" for ds in lab.datasets)
    assert listing == [f"700 root {KEY_DIR}", *key_files], listing
    crypttab = lab.sh("grep -v '^#' /etc/crypttab").split("\n")
    for ds in lab.datasets:
        (line,) = [ln.split() for ln in crypttab if ln.startswith(f"{ds['id']} ")]
        assert line[1].startswith("UUID=") and line[2:] == [
            f"{KEY_DIR}/{ds['id']}.key",
            "luks,nofail",
        ]
    # Read-only to the readers: a transit-demand analyst reads what root puts there,
    # writes nothing; an analyst in none of its reader groups cannot even list it.
    transit, card = f"{ROOT}/transit-smartcard-trips", f"{ROOT}/card-spending-2025"
    lab.sh(f"useradd -M -G transit-demand cpl-reader && useradd -M cpl-other && "
           f"echo rows > {transit}/rows.csv")  # fmt: skip
    assert lab.sh(f"runuser -u cpl-reader -- cat {transit}/rows.csv") == "rows\n"
    for command in (f"touch {transit}/new", f"sh -c 'echo x >> {transit}/rows.csv'",
                    f"ls {card}", f"runuser -u cpl-other -- ls {transit}"):  # fmt: skip
        user = "" if command.startswith("runuser") else "runuser -u cpl-reader -- "
        assert lab.ssh(f"{user}{command}").returncode != 0, command
    lab.sh(f"head -c 1048576 /dev/urandom > {card}/{SAMPLE}")
    lab.sample_sha256[card] = lab.sh(f"sha256sum {card}/{SAMPLE}").split()[0]
    lab.assert_no_key_left_behind()


def test_the_vol_checks_pass(lab: Lab) -> None:
    # That the volumes unlock and mount at boot, test_volume_lab_rotate proves after its
    # rotations (a reboot under TCG costs minutes, and there the key file is a new one).
    after = lab.statuses()
    assert after == {(VM, c): "pass" for c in CONTROLS}, after


def test_a_second_run_and_a_check_run_change_nothing(lab: Lab) -> None:
    for check in (False, True):
        run = lab.play(tags=ROLE, check=check)
        assert run.ok(), failures(run)
        print(f"{ROLE}: {_role_seconds(run):.0f} s")
        assert {h.host: h.changed for h in run.hosts} == {VM: 0}, changed_log_lines(run)
    lab.assert_no_key_left_behind()


def test_a_key_the_volume_does_not_know_fails_loudly_and_formats_nothing(lab: Lab) -> None:
    card = "card-spending-2025"
    before = lab.sh(f"cryptsetup luksUUID /dev/disk/by-partlabel/{card}; "
                    f"sha256sum {KEY_DIR}/{card}.key {ROOT}/{card}/{SAMPLE}")  # fmt: skip
    # A new current key in the keystore that was never added to the volume (what a
    # rotation would do first): the role must not reformat, nor replace the key file.
    stranger = lab.keystore.create(volume_id(VM, card))
    try:
        run = lab.play(tags=ROLE)
        (host,) = run.hosts
        assert host.failed and host.reason is not None, host
        assert "does not open with the keystore's current key" in host.reason, host.reason
        assert "not reformatted" in host.reason
        assert lab.sh(f"cryptsetup luksUUID /dev/disk/by-partlabel/{card}; "
                      f"sha256sum {KEY_DIR}/{card}.key {ROOT}/{card}/{SAMPLE}") == before  # fmt: skip
        lab.assert_no_key_left_behind()
    finally:
        lab.keystore.remove(stranger.volume_id, stranger.key_id)
