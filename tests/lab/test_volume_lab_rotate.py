"""``volumes status | rotate-key | resume`` on a QEMU lab PC, through the real CLI, over SSH.

The session's volume VM (tests/lab/volume_vm.py: Sangam's first PC and its three
restricted datasets), as ``test_volume_lab`` left it: its volumes made by
campus_data_volume (with the lab's cheap KDF) from the test's own keystore, or made here
when this module runs alone. A sample file goes on one, and then, as an operator would, the
CLI: status shows the volumes; rotate-key gives one a new key (the old one no longer opens
it, the new one does, the key file holds it, the data is as it was) and leaves a signed
record that ``report verify`` accepts; a rotation SIGKILLed after each journaled step in
turn is finished by ``resume``; after a reboot the volume still unlocks and mounts.
Meanwhile the process lists of the controller and the VM are sampled, and at the end no
key, in any spelling, is in them, in the CLI's output, the journals, the records or the
inventory. The CLI logs in as root (``CAMPUS_ADMIN=root``: this VM has no admin account,
and probing for one first would cost each command an SSH login under TCG).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths
from campus_provision.volumes.journal import default_journal_dir, volume_dir
from campus_provision.volumes.lifecycle import unfinished
from campus_provision.volumes.rotate import STEPS
from tests.lab.conftest import VENV_BIN
from tests.lab.volume_vm import BOOT_SECONDS, PREFIX, VM, VolumeVm
from tests.leaks import PsSampler, Secret, keys_dir_secrets, scan_bytes, scan_files

pytestmark = [pytest.mark.lab, pytest.mark.vm]
DATASET = "card-spending-2025"
VOLUME = f"{VM}/{DATASET}"
DEVICE = f"/dev/disk/by-partlabel/{DATASET}"
KEYFILE = f"/etc/cryptsetup-keys.d/{DATASET}.key"
SAMPLE = f"/srv/datasets/{DATASET}/sample.bin"
CLI_SECONDS = 600
KILL_WAIT_SECONDS = 300
KILLED_STEPS = [s for s in STEPS if s != "done"]
VM_PS_SAMPLES = 6000  # the VM's sampler's bound: 6000 × 0.2 s = 20 min


@dataclass
class Lab:
    paths: LabPaths
    result: UpResult
    tmp: Path
    spec: Path
    keys_dir: Path
    env: dict[str, str]
    keystore: VolumeKeystore
    datasets: list[dict[str, Any]]
    sampler: PsSampler
    runs: Path  # the provisioning runs' directories
    sample_sha256: str = ""
    seen_keys: dict[str, bytes] = field(default_factory=dict)
    outputs: int = 0

    @property
    def host(self) -> LabHost:
        return self.result.plan.host(VM)

    def ssh(
        self, command: str, *, input: bytes | None = None, timeout: float = 300
    ) -> CompletedProcess[bytes]:
        return subprocess.run([*control.ssh_args(self.paths, self.host), command], input=input,
                              capture_output=True, timeout=timeout, check=False)  # fmt: skip

    def sh(self, command: str) -> str:
        out = self.ssh(command)
        assert out.returncode == 0, f"{VM}: {command}: {out.stdout!r}{out.stderr!r}"
        return out.stdout.decode()

    def remember_keys(self) -> None:
        """Keep every key the keystore holds now (retired ones are scanned for too)."""
        for key in self.keystore.keys(None):
            if key.key_id not in self.seen_keys:
                self.seen_keys[key.key_id] = self.keystore.secret(key.volume_id, key.key_id)

    def cli_argv(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "campus-provision"), "volumes", *args]

    def cli(self, *args: str, timeout: float = CLI_SECONDS) -> CompletedProcess[str]:
        self.remember_keys()
        started = time.monotonic()
        done = subprocess.run(self.cli_argv(*args), env=self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        self.save_output(args, done.stdout, done.stderr)
        print(f"volumes {args[0]}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
        self.remember_keys()
        return done

    def save_output(self, args: tuple[str, ...], stdout: str, stderr: str) -> None:
        self.outputs += 1
        path = self.tmp / "cli-output" / f"{self.outputs:02d}-{args[0]}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"$ {' '.join(args)}\n{stdout}\n--- stderr\n{stderr}", encoding="utf-8")

    def opens(self, key: bytes) -> bool:
        out = self.ssh(f"cryptsetup open --test-passphrase --key-file=- {DEVICE}", input=key)
        assert out.returncode in (0, 2), out.stderr
        return out.returncode == 0

    def keyfile_holds(self, key: bytes) -> bool:
        return self.ssh(f"cmp -s - {KEYFILE}", input=key).returncode == 0

    def slots(self) -> list[int]:
        dump = json.loads(self.sh(f"cryptsetup luksDump --dump-json-metadata {DEVICE}"))
        return sorted(int(s) for s in dump["keyslots"])

    def current(self) -> tuple[str, bytes]:
        key = self.keystore.current(VOLUME)
        assert key is not None
        return key.key_id, self.keystore.secret(VOLUME, key.key_id)

    def assert_sound(self, why: str) -> None:
        """One key in the keystore; it opens the volume, alone; the key file holds it."""
        keys = [k.key_id for k in self.keystore.keys(VOLUME)]
        assert len(keys) == 1, (why, keys)
        _, secret = self.current()
        assert self.opens(secret), why
        assert self.keyfile_holds(secret), why
        # One slot, which the current key opens: no other key opens the volume.
        assert len(self.slots()) == 1, (why, self.slots())
        assert self.sh(f"sha256sum {SAMPLE}").split()[0] == self.sample_sha256, why


@pytest.fixture(scope="module")
def lab(volume_vm_lab: VolumeVm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    vm = volume_vm_lab
    tmp = tmp_path_factory.mktemp("rotate")
    sampler = PsSampler(interval=0.2)
    try:
        t0 = time.monotonic()
        vm.ensure_provisioned()
        print(f"volumes ready in {time.monotonic() - t0:.0f} s")
        env = {**os.environ, "CAMPUS_KEYS_DIR": str(vm.keys_dir),
               "CAMPUS_KEYSTORE_PASSPHRASE_FILE": str(vm.passphrase_file),
               "CAMPUS_ADMIN": "root",
               "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
        env.pop("CAMPUS_KEYSTORE_PASSPHRASE", None)
        lab = Lab(vm.paths, vm.result, tmp, vm.spec, vm.keys_dir, env, vm.keystore,
                  vm.datasets, sampler, vm.runs)  # fmt: skip
        lab.sh(f"head -c 1048576 /dev/urandom > {SAMPLE}")
        lab.sample_sha256 = lab.sh(f"sha256sum {SAMPLE}").split()[0]
        # The VM samples its own process list (an ssh per sample would be too slow).
        lab.sh("rm -f /root/ps-samples.txt; nohup sh -c 'i=0; while [ $i -lt "
               f"{VM_PS_SAMPLES} ]; do ps -eo args >> /root/ps-samples.txt; sleep 0.2; "
               "i=$((i+1)); done' >/dev/null 2>&1 &")  # fmt: skip
        sampler.start()
        lab.remember_keys()
        yield lab
    finally:
        sampler.stop()


def test_status_shows_the_volumes(lab: Lab) -> None:
    done = lab.cli("status", str(lab.spec), "--lab", "--prefix", PREFIX, "--limit", VM)
    assert done.returncode == 0, done.stdout + done.stderr
    key_id, _ = lab.current()
    lines = [ln for ln in done.stdout.splitlines() if DATASET in ln]
    assert len(lines) == 1, done.stdout
    assert f"{DATASET}@2025.09" in lines[0] and key_id in lines[0], lines[0]
    assert " ok " in lines[0] and " yes " in lines[0], lines[0]
    for ds in lab.datasets:
        assert f"{ds['id']}@{ds['version']}" in done.stdout


def test_rotate_key_replaces_the_key_and_keeps_the_data(lab: Lab) -> None:
    old_id, old = lab.current()
    out = lab.tmp / "records-rotate"
    done = lab.cli("rotate-key", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX,
                   "--limit", VM, "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    new_id, new = lab.current()
    assert new_id != old_id
    assert "rotated" in done.stdout and new_id in done.stdout
    assert not lab.opens(old)
    assert lab.opens(new)
    assert lab.keyfile_holds(new) and not lab.keyfile_holds(old)
    lab.assert_sound("after rotate-key")
    assert lab.sh(f"findmnt -no SOURCE /srv/datasets/{DATASET}").strip() == f"/dev/mapper/{DATASET}"
    # The signed record: report verify accepts it; the page names host, dataset, both ids.
    verified = subprocess.run(
        [str(VENV_BIN / "campus-provision"), "report", "verify", str(out),
         "--pubkey", str(lab.keys_dir / "signing.pub")],
        env=lab.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lab.save_output(("report-verify",), verified.stdout, verified.stderr)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    for text in (VM, DATASET, old_id, new_id, "ok"):
        assert text in html, text
    records = json.loads((out / "records.json").read_text(encoding="utf-8"))
    (record,) = records["records"]
    assert (record["host"], record["dataset"], record["old_key"], record["new_key"],
            record["result"]) == (VM, DATASET, old_id, new_id, "ok")  # fmt: skip


def _journal_has(journal_dir: Path, step: str, before: set[Path]) -> bool:
    for path in volume_dir(journal_dir, VOLUME).glob("op-*.jsonl"):
        if path in before:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("step") == step and record.get("state") == "done":
                    return True
    return False


@pytest.mark.parametrize("step", KILLED_STEPS)
def test_a_rotation_killed_after_each_step_is_finished_by_resume(lab: Lab, step: str) -> None:
    journal_dir = default_journal_dir(lab.keys_dir)
    before = set(volume_dir(journal_dir, VOLUME).glob("op-*.jsonl"))
    lab.remember_keys()
    args = ("rotate-key", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX, "--limit", VM,
            "--out", str(lab.tmp / f"records-killed-{step}"))  # fmt: skip
    child = subprocess.Popen(lab.cli_argv(*args), env=lab.env, cwd=lab.tmp,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    started = time.monotonic()
    try:
        while not _journal_has(journal_dir, step, before):
            assert child.poll() is None, f"the rotation ended before step {step} was done"
            assert time.monotonic() - started < KILL_WAIT_SECONDS, f"no {step} after a while"
            time.sleep(0.02)
        # The whole session: the CLI and the ssh it may be waiting on, as a crash would.
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate(timeout=60)
        lab.save_output(args, stdout.decode(), stderr.decode())
    print(f"killed after {step} at {time.monotonic() - started:.1f} s")
    lab.remember_keys()  # the new key, if made: it may leave the keystore on rollback
    stuck = lab.cli("status", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX, "--limit", VM)
    assert stuck.returncode == 1 and "unfinished" in stuck.stdout, stuck.stdout
    done = lab.cli("resume", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX,
                   "--limit", VM, "--out", str(lab.tmp / f"records-resume-{step}"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout or "rolled back" in done.stdout, done.stdout
    lab.assert_sound(f"after a kill after {step} and resume")
    # Nothing is left to resume: every journal of the volume is finished (what resume and
    # status read); the CLI says so in its own words once, after the last step.
    assert unfinished(journal_dir, VOLUME) == []
    if step == KILLED_STEPS[-1]:
        again = lab.cli("resume", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX,
                        "--limit", VM)  # fmt: skip
        assert again.returncode == 0 and "nothing to resume" in again.stdout, again.stdout


def test_after_a_reboot_the_volume_unlocks_and_mounts(lab: Lab) -> None:
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
        if again.returncode == 0 and again.stdout.decode() != boot:
            break
    print(f"reboot: {time.monotonic() - started:.0f} s")
    assert lab.sh(f"findmnt -no SOURCE /srv/datasets/{DATASET}").strip() == f"/dev/mapper/{DATASET}"
    lab.assert_sound("after a reboot")


def test_no_key_anywhere(lab: Lab) -> None:
    lab.remember_keys()
    lab.cli("status", str(lab.spec), "--lab", "--prefix", PREFIX, "--limit", VM)
    lab.sampler.stop()
    vm_ps = lab.ssh("cat /root/ps-samples.txt", timeout=120).stdout
    assert vm_ps.count(b"\n") > 100, "the VM's process sampler did not run"
    assert b"cryptsetup" in vm_ps, "no cryptsetup process was ever sampled on the VM"
    assert any(b"campus-provision volumes" in snap for snap in lab.sampler.snapshots)
    passphrase = Path(lab.env["CAMPUS_KEYSTORE_PASSPHRASE_FILE"]).read_text(encoding="utf-8")
    secrets = keys_dir_secrets(lab.keys_dir, passphrase)
    for key_id, text in lab.seen_keys.items():  # retired and rolled-back keys too
        secrets += [Secret(f"volume key {key_id}", text),
                    Secret(f"volume key {key_id} (raw)", base64.b64decode(text)),
                    Secret(f"volume key {key_id} (text, hex)", text.hex().encode())]  # fmt: skip
    assert len(lab.seen_keys) >= 3 + 1 + 6, sorted(lab.seen_keys)
    roots = [lab.tmp / "cli-output", default_journal_dir(lab.keys_dir), lab.runs,
             lab.paths.inventory, *lab.tmp.glob("records-*")]  # fmt: skip
    assert any(r.name.startswith("records-") for r in roots)
    leaks = scan_files(roots, secrets) + lab.sampler.scan(secrets)
    leaks += scan_bytes(f"{VM}: ps snapshots", vm_ps, secrets)
    assert [str(leak) for leak in leaks] == []
