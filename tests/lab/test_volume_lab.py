"""campus_data_volume on a QEMU lab PC: LUKS2 dataset volumes that unlock and mount at boot.

One VM for the whole module (Sangam's first PC: three restricted datasets on its 512 MiB
data disk; dm-crypt needs a kernel of its own, so no container can show this). The VOL
checks fail on it first; then campus_apt_client, the analysts' groups and
campus_data_volume, with the keys made in a keystore of the test's own, create the volumes;
a file written to one survives a reboot; the checks pass; no key is in anything the runs
left behind; a second run changes nothing; and a keystore whose current key the volume does
not know makes the role fail loudly, leaving the volume and its data as they were.

The lab's overrides: argon2id with 32 MiB and a fixed time cost of 4 (no benchmark), so a
volume is made in seconds under TCG in a 768 MiB VM, and partitions shrunk to fit the data
disk (the datasets are 220 GiB on paper).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml

from campus_provision.keys.volumes import VolumeKeystore, volume_id
from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths, read_record
from campus_provision.provision.runner import TIMINGS_FILE, RunResult, run_playbook
from campus_provision.verify.runner import Target, run_checks
from tests.lab.conftest import lab_paths, require_lab, small_spec

pytestmark = [pytest.mark.lab, pytest.mark.vm]
VM = "sgm-a01"
VM_GROUP = "wsg_sgm_analysis_a"  # its workstation group in the rendered inventory
CONTROLS = ("CP-VOL-01", "CP-VOL-02", "CP-VOL-03")
ROLE = "campus_data_volume"  # as a tag: the role alone
ROOT = "/srv/datasets"
KEY_DIR = "/etc/cryptsetup-keys.d"
SAMPLE = "sample.bin"
BOOT_SECONDS = 300
LAB_VARS = {
    "campus_data_volume_pbkdf_memory": 32768,
    "campus_data_volume_pbkdf_force_iterations": 4,
    "campus_data_volume_shrink_to_fit": True,
}
PLAY = [
    {
        "name": "campus_data_volume under test",
        "hosts": "workstations",
        "gather_facts": False,
        # The analysts' groups as campus_accounts' first task makes them (the rest of that
        # role, root login off included, is its own lab test's business).
        "pre_tasks": [
            {
                "name": "Create a group per analyst group of the spec",
                "ansible.builtin.group": {"name": "{{ item }}", "state": "present"},
                "loop": "{{ campus_analyst_groups | list }}",
            }
        ],
        "roles": ["campus_apt_client", "campus_data_volume"],
    }
]


@dataclass
class Lab:
    paths: LabPaths
    result: UpResult
    tmp: Path
    extra: dict[str, Any]
    keystore: VolumeKeystore
    datasets: list[dict[str, Any]]
    sample_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> LabHost:
        return self.result.plan.host(VM)

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
        playbook = self.tmp / "volumes-under-test.yml"
        playbook.write_text(yaml.safe_dump(PLAY, sort_keys=False), encoding="utf-8")
        run = run_playbook(
            playbook, self.paths.inventory / "hosts.yml",
            self.tmp / f"run-{len(list(self.tmp.glob('run-*')))}",
            limit=VM, tags=tags, check=check, diff=check, extra_vars=self.extra,
        )  # fmt: skip
        print(f"playbook{' --check' if check else ''} (tags {tags}): {run.seconds:.0f} s")
        return run

    def statuses(self) -> dict[tuple[str, str], str]:
        target = Target(inventory=self.paths.inventory / "hosts.yml",
                        campus=self.result.plan.campus, spec_sha256="0" * 64, limit=VM,
                        controls=CONTROLS, workers=1)  # fmt: skip
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


def _failure(run: RunResult) -> list[tuple[str, str | None, str | None]]:
    return [(h.host, h.failed_task, h.reason) for h in run.hosts if h.failed or h.unreachable]


def _changed_tasks(run: RunResult) -> list[str]:
    task, found = "", []
    for line in run.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif line.startswith("changed:"):
            found.append(f"{task}: {line}")
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    tmp = tmp_path_factory.mktemp("cpj")
    paths = lab_paths("cpj")
    control.down(paths)
    started = time.monotonic()
    saved = {k: os.environ.get(k) for k in ("CAMPUS_KEYS_DIR", "CAMPUS_KEYSTORE_PASSPHRASE_FILE")}
    try:
        result = control.up(small_spec(tmp), paths, per_site=1, driver="qemu",
                            sites=["sangam"], mirror=True, progress=print)  # fmt: skip
        print(f"lab cpj up in {time.monotonic() - started:.0f} s")
        record = read_record(paths) or {}
        group_vars = paths.inventory / "group_vars" / f"{VM_GROUP}.yml"
        datasets = yaml.safe_load(group_vars.read_text(encoding="utf-8"))["campus_host_datasets"]
        # A keystore of the test's own, found by the lookup through the environment that
        # ansible-playbook inherits, as an operator's run finds theirs.
        passphrase = tmp / "keystore-passphrase"
        passphrase.write_text("lab volume keystore passphrase, not a secret", encoding="utf-8")
        passphrase.chmod(0o600)
        keystore = VolumeKeystore(tmp / "keys", passphrase.read_text(encoding="utf-8"))
        for ds in datasets:
            keystore.create(volume_id(VM, ds["id"]))
        os.environ["CAMPUS_KEYS_DIR"] = str(tmp / "keys")
        os.environ["CAMPUS_KEYSTORE_PASSPHRASE_FILE"] = str(passphrase)
        runs = tmp / "runs"
        runs.mkdir()
        extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"],
                 **LAB_VARS}  # fmt: skip
        yield Lab(paths, result, runs, extra, keystore, datasets)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        control.down(paths)
        assert control.leftovers(paths) == []


def test_vol_checks_fail_on_the_unprovisioned_vm(lab: Lab) -> None:
    assert [ds["tier"] for ds in lab.datasets] == ["restricted"] * 3
    disk = lab.sh("lsblk -rno NAME /dev/disk/by-id/virtio-campus-data")
    assert len(disk.split()) == 1, disk  # a blank data disk, no partitions
    before = lab.statuses()
    assert before == {(VM, c): "fail" for c in CONTROLS}, before


def test_provisioning_makes_the_volumes_and_leaves_no_key_behind(lab: Lab) -> None:
    run = lab.play()
    assert run.ok(), _failure(run)
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


def test_the_volumes_unlock_and_mount_at_boot(lab: Lab) -> None:
    boot = lab.sh("cat /proc/sys/kernel/random/boot_id")
    lab.sh("nohup sh -c 'sleep 1; systemctl reboot' >/dev/null 2>&1 &")
    started = time.monotonic()
    while True:
        assert time.monotonic() - started < BOOT_SECONDS, "the VM did not come back"
        time.sleep(5)
        try:
            again = lab.ssh("cat /proc/sys/kernel/random/boot_id", timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if again.returncode == 0 and again.stdout != boot:
            break
    print(f"reboot: {time.monotonic() - started:.0f} s")
    for path, digest in lab.sample_sha256.items():
        assert lab.sh(f"sha256sum {path}/{SAMPLE}").split()[0] == digest
    mounted = lab.sh(f"findmnt -rno TARGET | grep '^{ROOT}/' | sort").split()
    assert mounted == sorted(f"{ROOT}/{ds['id']}" for ds in lab.datasets), mounted
    after = lab.statuses()
    assert after == {(VM, c): "pass" for c in CONTROLS}, after


def test_a_second_run_and_a_check_run_change_nothing(lab: Lab) -> None:
    for check in (False, True):
        run = lab.play(tags=ROLE, check=check)
        assert run.ok(), _failure(run)
        print(f"{ROLE}: {_role_seconds(run):.0f} s")
        assert {h.host: h.changed for h in run.hosts} == {VM: 0}, _changed_tasks(run)
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
