"""One QEMU PC shared by the VM modules of a test session: the kernel's, then the volumes'.

Booting a VM under TCG and provisioning it cost minutes, so ``test_kernel_vm_lab`` (the
driver, USB-01 and AUD-01, with the reboot campus_usb needs), ``test_volume_lab`` (the role
makes LUKS2 dataset volumes) and ``test_volume_lab_rotate`` (the CLI rotates their keys)
share one, in that order, which is pytest's file order: the kernel module sees the bare VM
and leaves campus_usb, campus_hardening and auditd in place and the data disk blank; the
volume module proves the VOL checks fail and then makes the volumes; the rotate module
takes them as they were left (provisioning them itself when it runs alone).

The lab's overrides: argon2id with 32 MiB and a fixed time cost of 4 (no benchmark), so a
volume is made in seconds under TCG in a 768 MiB VM, and partitions shrunk to fit the data
disk (the datasets are 220 GiB on paper). The keystore (and its evidence-signing key) is
the test's own; the Ansible lookup finds it through the environment ansible-playbook
inherits, as an operator's run finds theirs, set only while a play runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from campus_provision.keys.signing import init_signing_key
from campus_provision.keys.volumes import VolumeKeystore, volume_id
from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths, read_record
from campus_provision.provision.runner import RunResult, run_playbook
from tests.lab.conftest import lab_paths, require_lab, small_spec

PREFIX = "cpj"
VM = "sgm-a01"
VM_GROUP = "wsg_sgm_analysis_a"  # its workstation group in the rendered inventory
BOOT_SECONDS = 300
PASSPHRASE = "lab volume keystore passphrase, not a secret"  # noqa: S105 - test only
LAB_VARS = {
    "campus_data_volume_pbkdf_memory": 32768,
    "campus_data_volume_pbkdf_force_iterations": 4,
    "campus_data_volume_shrink_to_fit": True,
}
# The analysts' groups as campus_accounts' first task makes them (the rest of that role,
# root login off included, is its own lab test's business), in one command: under TCG
# each module run costs seconds.
GROUPS_TASK = {
    "name": "Create a group per analyst group of the spec",
    "ansible.builtin.command": {
        "argv": "{{ ['sh', '-c', 'for g; do getent group \"$g\" >/dev/null || "
        "{ groupadd \"$g\" && echo added; }; done', 'groups'] + (campus_analyst_groups | list) }}"
    },
    "register": "groups_made",
    "changed_when": "'added' in groups_made.stdout",
}
PLAY = [
    {
        "name": "campus_data_volume under test",
        "hosts": "workstations",
        "gather_facts": False,
        "pre_tasks": [GROUPS_TASK],
        "roles": ["campus_apt_client", "campus_data_volume"],
    }
]


@dataclass
class VolumeVm:
    paths: LabPaths
    result: UpResult
    tmp: Path
    spec: Path
    keys_dir: Path
    passphrase_file: Path
    keystore: VolumeKeystore
    datasets: list[dict[str, Any]]
    extra: dict[str, Any]
    provisioned: bool = False  # the volumes made
    kernel_roles: bool = False  # test_kernel_vm_lab's roles applied

    @property
    def host(self) -> LabHost:
        return self.result.plan.host(VM)

    @property
    def runs(self) -> Path:
        """Where every play's run directory goes (scanned for keys by both modules)."""
        return self.tmp / "runs"

    @contextlib.contextmanager
    def keystore_env(self) -> Iterator[None]:
        """The keystore in this process's environment, for ansible-playbook's lookup."""
        names = {"CAMPUS_KEYS_DIR": str(self.keys_dir),
                 "CAMPUS_KEYSTORE_PASSPHRASE_FILE": str(self.passphrase_file)}  # fmt: skip
        saved = {k: os.environ.get(k) for k in names}
        os.environ.update(names)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def play(self, *, tags: str | None = None, check: bool = False) -> RunResult:
        playbook = self.tmp / "volumes-under-test.yml"
        playbook.write_text(yaml.safe_dump(PLAY, sort_keys=False), encoding="utf-8")
        self.runs.mkdir(exist_ok=True)
        with self.keystore_env():
            run = run_playbook(
                playbook, self.paths.inventory / "hosts.yml",
                self.runs / f"run-{len(list(self.runs.glob('run-*')))}",
                limit=VM, tags=tags, check=check, diff=check, extra_vars=self.extra,
            )  # fmt: skip
        print(f"playbook{' --check' if check else ''} (tags {tags}): {run.seconds:.0f} s")
        return run

    def ensure_provisioned(self) -> None:
        """The volumes made, by the play, unless an earlier module made them already."""
        if self.provisioned:
            return
        run = self.play()
        assert run.ok(), [(h.host, h.failed_task, h.reason) for h in run.hosts]
        self.provisioned = True


def volume_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolumeVm]:
    """The shared VM (Sangam's first PC, its three restricted datasets, a USB stick), up
    and bare."""
    require_lab()
    tmp = tmp_path_factory.mktemp(PREFIX)
    paths = lab_paths(PREFIX)
    control.down(paths)
    started = time.monotonic()
    # Other labs share this machine's two cores: a TCG boot can take far longer than alone.
    ready = control.READY_SECONDS["qemu"]
    control.READY_SECONDS["qemu"] = max(ready, BOOT_SECONDS * 3)
    try:
        spec = small_spec(tmp)
        result = control.up(spec, paths, per_site=1, driver="qemu", sites=["sangam"],
                            mirror=True, progress=print)  # fmt: skip
        print(f"lab {PREFIX} up in {time.monotonic() - started:.0f} s")
        record = read_record(paths) or {}
        group_vars = paths.inventory / "group_vars" / f"{VM_GROUP}.yml"
        datasets = yaml.safe_load(group_vars.read_text(encoding="utf-8"))["campus_host_datasets"]
        passphrase = tmp / "keystore-passphrase"
        passphrase.write_text(PASSPHRASE, encoding="utf-8")
        passphrase.chmod(0o600)
        keys_dir = tmp / "keys"
        keystore = VolumeKeystore(keys_dir, PASSPHRASE)
        for ds in datasets:
            keystore.create(volume_id(VM, ds["id"]))
        init_signing_key(keys_dir, PASSPHRASE)
        extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"],
                 **LAB_VARS}  # fmt: skip
        yield VolumeVm(paths, result, tmp, spec, keys_dir, passphrase, keystore, datasets, extra)
    finally:
        control.READY_SECONDS["qemu"] = ready
        control.down(paths)
        assert control.leftovers(paths) == []
