"""``volumes status | rotate-key | resume`` on a QEMU lab PC, through the real CLI, over SSH.

The session's volume VM (tests/lab/volume_vm.py: Sangam's first PC and its three
restricted datasets), as ``test_volume_lab`` left it: its volumes made by
campus_data_volume (with the lab's cheap KDF) from the test's own keystore, or made here
when this module runs alone. A sample file goes on one, and then, as an operator would, the
CLI: status shows the volumes; rotate-key gives one a new key (the old one no longer opens
it, the new one does, the key file holds it, the data is as it was) and leaves a signed
record that ``report verify`` accepts; a rotation SIGKILLed after its new key is rolled
back by ``resume``, and one SIGKILLed after each later step in turn (rotate-key, then each
resume) is taken up by each resume and finished by the last, losing nothing on the way;
switched off and on, the PC keeps its host key and every volume unlocks and mounts, the
rotated one with its new key file.
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


def _run_until_killed(lab: Lab, args: tuple[str, ...], step: str, before: set[Path]) -> None:
    """Run the CLI with ``args`` and SIGKILL it (and its ssh) once ``step`` is journaled done."""
    journal_dir = default_journal_dir(lab.keys_dir)
    lab.remember_keys()
    child = subprocess.Popen(lab.cli_argv(*args), env=lab.env, cwd=lab.tmp,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    started = time.monotonic()
    try:
        while not _journal_has(journal_dir, step, before):
            assert child.poll() is None, f"{args[0]} ended before step {step} was done"
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
    print(f"{args[0]} killed after {step} at {time.monotonic() - started:.1f} s")
    lab.remember_keys()  # the new key, if made: it may leave the keystore on rollback


def _assert_unfinished_and_whole(lab: Lab, step: str, *, ask_the_cli: bool) -> None:
    """After a kill: the rotation is unfinished, and a key the keystore holds still opens
    the volume, whose data is as it was (nothing is lost between steps)."""
    assert unfinished(default_journal_dir(lab.keys_dir), VOLUME), step
    if ask_the_cli:
        stuck = lab.cli("status", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX,
                        "--limit", VM)  # fmt: skip
        assert stuck.returncode == 1 and "unfinished" in stuck.stdout, stuck.stdout
    held = [lab.keystore.secret(VOLUME, k.key_id) for k in lab.keystore.keys(VOLUME)]
    assert any(lab.opens(secret) for secret in held), f"after a kill after {step}"
    assert lab.sh(f"sha256sum {SAMPLE}").split()[0] == lab.sample_sha256, step


def _resume_args(lab: Lab, name: str) -> tuple[str, ...]:
    return ("resume", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX, "--limit", VM,
            "--out", str(lab.tmp / f"records-{name}"))  # fmt: skip


def _resume(lab: Lab, name: str) -> CompletedProcess[str]:
    return lab.cli(*_resume_args(lab, f"resume-{name}"))


def _rotate_args(lab: Lab, name: str) -> tuple[str, ...]:
    return ("rotate-key", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX, "--limit", VM,
            "--out", str(lab.tmp / f"records-killed-{name}"))  # fmt: skip


def test_a_rotation_killed_after_its_new_key_is_rolled_back_by_resume(lab: Lab) -> None:
    old_id, _ = lab.current()
    before = set(volume_dir(default_journal_dir(lab.keys_dir), VOLUME).glob("op-*.jsonl"))
    _run_until_killed(lab, _rotate_args(lab, "new-key"), "new-key", before)
    _assert_unfinished_and_whole(lab, "new-key", ask_the_cli=True)
    done = _resume(lab, "new-key")
    assert done.returncode == 0, done.stdout + done.stderr
    # Nobody saw the new key open the volume: resume undoes it, back to the old key.
    assert "rolled back" in done.stdout, done.stdout
    assert lab.current()[0] == old_id
    lab.assert_sound("after a kill after new-key and resume")
    assert unfinished(default_journal_dir(lab.keys_dir), VOLUME) == []


def test_a_rotation_killed_after_each_later_step_is_finished_by_resume(lab: Lab) -> None:
    """One rotation, SIGKILLed after each journaled step in turn: rotate-key after add-slot,
    then each resume after the step that follows; every resume takes up where the kill left
    it, and the last one completes the rotation."""
    old_id, _ = lab.current()
    before = set(volume_dir(default_journal_dir(lab.keys_dir), VOLUME).glob("op-*.jsonl"))
    later = KILLED_STEPS[KILLED_STEPS.index("add-slot") :]
    for i, step in enumerate(later):
        args = _rotate_args(lab, step) if i == 0 else _resume_args(lab, f"killed-{step}")
        _run_until_killed(lab, args, step, before)
        _assert_unfinished_and_whole(lab, step, ask_the_cli=False)
    done = _resume(lab, "last")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout, done.stdout
    assert lab.current()[0] != old_id
    lab.assert_sound("after kills after each step and a last resume")
    # Nothing is left to resume: the CLI says so in its own words.
    assert unfinished(default_journal_dir(lab.keys_dir), VOLUME) == []
    again = lab.cli("resume", str(lab.spec), DATASET, "--lab", "--prefix", PREFIX,
                    "--limit", VM)  # fmt: skip
    assert again.returncode == 0 and "nothing to resume" in again.stdout, again.stdout


def test_switched_off_and_on_the_volumes_unlock_and_mount(lab: Lab) -> None:
    """The PC powered off and on again (the lab's stop and start, as an operator would):
    it boots from its own disk, keeps its SSH host key, and unlocks its volumes."""
    boot = lab.sh("cat /proc/sys/kernel/random/boot_id")
    started = time.monotonic()
    for verb in ("stop", "start"):
        done = subprocess.run([str(VENV_BIN / "campus-provision"), "lab", verb, VM,
                               "--prefix", PREFIX], env=lab.env, capture_output=True,
                              text=True, timeout=3 * BOOT_SECONDS, check=False)  # fmt: skip
        lab.save_output((f"lab-{verb}",), done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
    print(f"off and on: {time.monotonic() - started:.0f} s")
    # The host key is the one the lab's known_hosts holds (ssh checks it strictly).
    assert lab.sh("cat /proc/sys/kernel/random/boot_id") != boot
    # Every volume campus_data_volume made unlocks and mounts at boot, the rotated one
    # with its new key file.
    mounted = lab.sh("findmnt -rno TARGET,SOURCE | grep '^/srv/datasets/' | sort").split("\n")
    assert mounted[:-1] == sorted(f"/srv/datasets/{ds['id']} /dev/mapper/{ds['id']}"
                                  for ds in lab.datasets), mounted  # fmt: skip
    lab.assert_sound("after a power cycle")


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
    assert len(lab.seen_keys) >= 3 + 1 + 2, sorted(lab.seen_keys)
    roots = [lab.tmp / "cli-output", default_journal_dir(lab.keys_dir), lab.runs,
             lab.paths.inventory, *lab.tmp.glob("records-*")]  # fmt: skip
    assert any(r.name.startswith("records-") for r in roots)
    leaks = scan_files(roots, secrets) + lab.sampler.scan(secrets)
    leaks += scan_bytes(f"{VM}: ps snapshots", vm_ps, secrets)
    assert [str(leak) for leak in leaks] == []
