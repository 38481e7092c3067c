"""``volumes create | load | retire`` on a QEMU lab PC, through the real CLI, over SSH.

One VM for the module (lab prefix cpw; Sangam's first PC, given one small dataset so the
test stays short): the PC gets its apt sources and the analysts' groups, then, as an
operator would: ``create`` makes the volume (a new key in the keystore, the role);
``load`` refuses a tampered copy of the dataset, changing nothing, then loads the real
one (root-owned, readable by the reader group, hashed again on the PC) and a second load
sends nothing; published on the lab mirror with a signed manifest, a file the PC lost comes
back with ``load --from-mirror`` (the PC fetches it, nothing else); the VOL checks pass; ``swap --version v2`` refuses a tampered v2, then
makes a v2 volume beside the old, loads it, switches the mount to it and crypto-erases
the old one; with the spec at v2 the role (``create`` again) changes nothing and the VOL
checks still pass; ``retire`` refuses without --yes, then crypto-erases
the volume: the bytes where its LUKS header was are zeros (``cryptsetup isLuks`` fails on
them), the old key opens nothing, crypttab, fstab, key file and partition are gone, and
the keystore forgot the key. Every command leaves a signed record ``report verify``
accepts, and no key or passphrase, in any spelling, is in the CLI's output, the runs, the
journals, the records, the inventory, nor in the process lists sampled all along on this
machine and on the VM.
"""

from __future__ import annotations

import base64
import hashlib
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

from campus_provision.keys.signing import init_signing_key, load_signing_key
from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths, read_record
from campus_provision.provision.runner import run_playbook
from campus_provision.verify.runner import Target, run_checks
from campus_provision.volumes.journal import default_journal_dir
from campus_provision.volumes.mirror import sign_manifest
from tests.lab.conftest import VENV_BIN, lab_paths, require_lab, small_spec
from tests.lab.test_volume_lab import CONTROLS
from tests.lab.volume_vm import GROUPS_TASK, VM, VM_GROUP
from tests.leaks import PsSampler, Secret, keys_dir_secrets, scan_bytes, scan_files

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.vm_short]
PREFIX = "cpw"
DATASET = "card-spending-2025"
VOLUME = f"{VM}/{DATASET}"
DEVICE = f"/dev/disk/by-partlabel/{DATASET}"
MOUNT = f"/srv/datasets/{DATASET}"
KEYFILE = f"/etc/cryptsetup-keys.d/{DATASET}.key"
SIZE_BYTES = 24 * 2**20  # a small volume: room on the 512 MiB data disk for a second one
CLI_SECONDS = 900
VM_PS_SAMPLES = 3600  # the VM's sampler's bound: 3600 × 0.5 s = 30 min (TCG: ps costs)
MIRROR = "sgm-mirror"
MIRROR_DATASETS = "/srv/campus-mirror/datasets"
BOOT_SECONDS = 900.0
FILES = {
    "README.txt": b"card spending, 2025, sample for the lab\n",
    "2025/q1.csv": b"district,amount\n" + b"gangnam,100\n" * 2000,
    "2025/blob.bin": os.urandom(1 << 20),
}
FILES_V2 = {
    "README.txt": b"card spending, 2025, version 2\n",
    "2025/q1.csv": b"district,amount\n" + b"gangnam,101\n" * 2000,
    "2025/q2.csv": b"district,amount\n" + b"mapo,7\n" * 500,
}
# What the PC needs before its volumes: the mirror's apt sources (cryptsetup, fdisk and acl
# come from there) and the analysts' groups (campus_accounts' first task, nothing more).
PREP = [
    {
        "name": "What a PC has before its dataset volumes",
        "hosts": "workstations",
        "gather_facts": False,
        "pre_tasks": [GROUPS_TASK],
        "roles": ["campus_apt_client"],
    }
]


@dataclass
class Lab:
    paths: LabPaths
    result: UpResult
    tmp: Path
    spec: Path
    keys_dir: Path
    env: dict[str, str]
    keystore: VolumeKeystore
    dataset: dict[str, Any]
    sampler: PsSampler
    passphrase: str
    seen_keys: dict[str, bytes] = field(default_factory=dict)
    outputs: int = 0
    records: list[Path] = field(default_factory=list)

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
        for key in self.keystore.keys(None):
            if key.key_id not in self.seen_keys:
                self.seen_keys[key.key_id] = self.keystore.secret(key.volume_id, key.key_id)

    def cli(self, *args: str, out: str | None = None) -> CompletedProcess[str]:
        self.remember_keys()
        argv = [str(VENV_BIN / "campus-provision"), "volumes", *args, "--lab", "--prefix",
                PREFIX, "--keys-dir", str(self.keys_dir)]  # fmt: skip
        if out is not None:
            argv += ["--out", str(self.tmp / out)]
        started = time.monotonic()
        # stdin from /dev/null, as a cron job's: ansible-inventory refuses a non-blocking one.
        done = subprocess.run(argv, env=self.env, cwd=self.tmp, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=CLI_SECONDS,
                              check=False)  # fmt: skip
        self.outputs += 1
        log = self.tmp / "cli-output" / f"{self.outputs:02d}-{args[0]}.txt"
        log.parent.mkdir(exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{done.stdout}\n--- stderr\n{done.stderr}")
        print(f"volumes {args[0]}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
        self.remember_keys()
        return done

    def verify_record(self, name: str, op: str) -> dict[str, Any]:
        directory = self.tmp / name
        done = subprocess.run([str(VENV_BIN / "campus-provision"), "report", "verify",
                               str(directory), "--pubkey", str(self.keys_dir / "signing.pub")],
                              env=self.env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        data = json.loads((directory / "records.json").read_text(encoding="utf-8"))
        (record,) = data["records"]
        assert (record["host"], record["dataset"], record["op"]) == (VM, DATASET, op), record
        assert record["result"] == "ok", record
        self.records.append(directory)
        return dict(record)

    def statuses(self) -> dict[tuple[str, str], str]:
        target = Target(inventory=self.paths.inventory / "hosts.yml",
                        campus=self.result.plan.campus, spec_sha256="0" * 64, limit=VM,
                        controls=CONTROLS, workers=1)  # fmt: skip
        junit = self.tmp / f"junit-{len(list(self.tmp.glob('junit-*')))}.xml"
        return {(r.host, r.control): r.status for r in run_checks(target, junit).results}

    def opens(self, key: bytes, device: str) -> bool:
        out = self.ssh(f"cryptsetup open --test-passphrase --key-file=- {device}", input=key)
        return out.returncode == 0


def _dataset_dir(directory: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))
    (directory / "SHA256SUMS").write_text(sums, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    tmp = tmp_path_factory.mktemp(PREFIX)
    paths = lab_paths(PREFIX)
    control.down(paths)
    started = time.monotonic()
    sampler = PsSampler(interval=0.2)
    # Other labs share this machine's two cores: a TCG boot can take far longer than alone.
    patch = pytest.MonkeyPatch()
    patch.setitem(control.READY_SECONDS, "qemu", BOOT_SECONDS)
    try:
        spec = small_spec(tmp)
        result = control.up(spec, paths, per_site=1, driver="qemu", sites=["sangam"],
                            mirror=True, progress=print)  # fmt: skip
        print(f"lab {PREFIX} up in {time.monotonic() - started:.0f} s")
        record = read_record(paths) or {}
        # One small dataset on this PC (the rendered group_vars edited, as an operator's
        # spec would say): the test stays short and the data disk has room left.
        group_vars = paths.inventory / "group_vars" / f"{VM_GROUP}.yml"
        data = yaml.safe_load(group_vars.read_text(encoding="utf-8"))
        (dataset,) = [d for d in data["campus_host_datasets"] if d["id"] == DATASET]
        dataset["size_bytes"] = SIZE_BYTES
        data["campus_host_datasets"] = [dataset]
        group_vars.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        passphrase = tmp / "keystore-passphrase"
        passphrase.write_text("lab volume-ops keystore passphrase, not a secret")
        passphrase.chmod(0o600)
        keys_dir = tmp / "keys"
        keystore = VolumeKeystore(keys_dir, passphrase.read_text(encoding="utf-8"))
        init_signing_key(keys_dir, passphrase.read_text(encoding="utf-8"))
        # Root logs in (this VM has no admin account: probing for one first would cost
        # each command an SSH login under TCG).
        env = {**os.environ, "CAMPUS_KEYSTORE_PASSPHRASE_FILE": str(passphrase),
               "CAMPUS_ADMIN": "root",
               "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
        env.pop("CAMPUS_KEYSTORE_PASSPHRASE", None)
        playbook = tmp / "prep.yml"
        playbook.write_text(yaml.safe_dump(PREP, sort_keys=False), encoding="utf-8")
        extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"]}
        t0 = time.monotonic()
        run = run_playbook(playbook, paths.inventory / "hosts.yml", tmp / "runs" / "prep",
                           limit=VM, extra_vars=extra)  # fmt: skip
        assert run.ok(), [(h.host, h.failed_task, h.reason) for h in run.hosts]
        print(f"prep (apt sources, groups): {time.monotonic() - t0:.0f} s")
        lab = Lab(paths, result, tmp, spec, keys_dir, env, keystore, dataset, sampler,
                  passphrase.read_text(encoding="utf-8"))  # fmt: skip
        # The VM samples its own process list (an ssh per sample would be far too slow).
        lab.sh("rm -f /root/ps-samples.txt; nohup sh -c 'i=0; while [ $i -lt "
               f"{VM_PS_SAMPLES} ]; do ps -eo args >> /root/ps-samples.txt; sleep 0.5; "
               "i=$((i+1)); done' >/dev/null 2>&1 &")  # fmt: skip
        sampler.start()
        yield lab
    finally:
        sampler.stop()
        patch.undo()
        control.down(paths)
        assert control.leftovers(paths) == []


def test_create_makes_the_volume_with_a_new_key(lab: Lab) -> None:
    assert lab.keystore.keys(VOLUME) == []
    dry = lab.cli("create", str(lab.spec), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would get a new key" in dry.stdout and lab.keystore.keys(VOLUME) == []
    done = lab.cli("create", str(lab.spec), out="rec-create")
    assert done.returncode == 0, done.stdout + done.stderr
    (key,) = lab.keystore.keys(VOLUME)
    record = lab.verify_record("rec-create", "create")
    assert record["new_key"] == key.key_id
    label = lab.sh(f"blkid -s LABEL -o value {DEVICE}").strip()
    assert label == f"{DATASET}@{lab.dataset['version']}"
    assert lab.sh(f"findmnt -no SOURCE --mountpoint {MOUNT}").strip() == f"/dev/mapper/{DATASET}"
    assert lab.opens(lab.keystore.secret(VOLUME, key.key_id), DEVICE)


def test_load_refuses_a_tampered_copy_then_loads_and_verifies(lab: Lab) -> None:
    tampered = _dataset_dir(lab.tmp / "tampered", FILES)
    (tampered / "2025/q1.csv").write_bytes(b"district,amount\ngangnam,999999\n")
    refused = lab.cli("load", str(lab.spec), DATASET, "--from", str(tampered))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "2025/q1.csv: sha256" in refused.stderr and "nothing loaded" in refused.stderr
    assert lab.sh(f"ls -A {MOUNT}").split() == ["lost+found"]

    source = _dataset_dir(lab.tmp / "dataset", FILES)
    done = lab.cli("load", str(lab.spec), DATASET, "--from", str(source), out="rec-load")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 files verified on the PC (3 sent, 0 already there)" in done.stdout
    lab.verify_record("rec-load", "load")
    sums = lab.sh(f"cd {MOUNT} && sha256sum README.txt 2025/q1.csv 2025/blob.bin")
    assert sums == "".join(
        f"{hashlib.sha256(FILES[n]).hexdigest()}  {n}\n"
        for n in ("README.txt", "2025/q1.csv", "2025/blob.bin")
    )
    owners = lab.sh(f"stat -c '%U:%G %a' {MOUNT}/README.txt {MOUNT}/2025/blob.bin").split("\n")
    assert owners[:2] == ["root:root 640", "root:root 640"], owners
    reader = lab.dataset["readers"][0]
    lab.sh(f"id cpw-reader >/dev/null 2>&1 || useradd -M -G {reader} cpw-reader; "
           "id cpw-other >/dev/null 2>&1 || useradd -M cpw-other")  # fmt: skip
    assert (
        lab.sh(f"runuser -u cpw-reader -- cat {MOUNT}/README.txt").encode() == FILES["README.txt"]
    )
    assert lab.ssh(f"runuser -u cpw-reader -- touch {MOUNT}/2025/new").returncode != 0
    assert lab.ssh(f"runuser -u cpw-other -- cat {MOUNT}/README.txt").returncode != 0
    again = lab.cli("load", str(lab.spec), DATASET, "--from", str(source))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(0 sent, 3 already there)" in again.stdout


def test_load_from_the_mirror_fetches_what_the_pc_lost(lab: Lab) -> None:
    # The operator signs the dataset version and publishes it on the site's mirror.
    published = _dataset_dir(lab.tmp / "publish", FILES)
    sign_manifest(published, load_signing_key(lab.keys_dir, lab.passphrase), dataset=DATASET,
                  version=lab.dataset["version"])  # fmt: skip
    where = f"{MIRROR_DATASETS}/{DATASET}/{lab.dataset['version']}"
    tar = subprocess.run(["tar", "-C", str(published), "-cf", "-", "."], capture_output=True,
                         check=True, timeout=60).stdout  # fmt: skip
    mirror = lab.result.plan.host(MIRROR)
    put = subprocess.run([*control.ssh_args(lab.paths, mirror),
                          f"mkdir -p {where} && tar -C {where} --no-same-owner -xf -"],
                         input=tar, capture_output=True, timeout=120, check=False)  # fmt: skip
    assert put.returncode == 0, put.stderr
    lab.sh(f"rm {MOUNT}/2025/q1.csv")
    done = lab.cli("load", str(lab.spec), DATASET, "--from-mirror", out="rec-load-mirror")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"signed by the campus key for {DATASET} version {lab.dataset['version']}" in (
        done.stdout
    )
    assert "3 files verified on the PC (1 sent, 2 already there)" in done.stdout
    record = lab.verify_record("rec-load-mirror", "load")
    assert "1 fetched from the mirror, 2 there" in record["detail"], record
    got = lab.sh(f"sha256sum {MOUNT}/2025/q1.csv").split()[0]
    assert got == hashlib.sha256(FILES["2025/q1.csv"]).hexdigest()
    log = subprocess.run([*control.ssh_args(lab.paths, mirror),
                          "cat /var/log/nginx/campus-mirror.access.log"],
                         capture_output=True, text=True, timeout=60, check=False).stdout  # fmt: skip
    fetched = [line for line in log.splitlines() if f"/datasets/{DATASET}/" in line]
    assert [line.split()[0] for line in fetched] == [str(lab.host.address.ip)] * 4, fetched
    assert sorted(line.split('"')[1].split()[1].rsplit("/", 1)[1] for line in fetched) == [
        "SHA256SUMS", "dataset-manifest.json", "dataset-manifest.json.sig", "q1.csv"
    ]  # fmt: skip


def test_the_vol_checks_pass(lab: Lab) -> None:
    after = lab.statuses()
    assert after == {(VM, c): "pass" for c in CONTROLS}, after


def _place(lab: Lab, device: str) -> tuple[str, int, int]:
    """The disk, start sector and size in sectors of the partition ``device``."""
    name = lab.sh(f"readlink -f {device}").strip().removeprefix("/dev/")
    start, size = (int(lab.sh(f"cat /sys/class/block/{name}/{f}")) for f in ("start", "size"))
    disk = "/dev/" + lab.sh(f"basename $(readlink -f /sys/class/block/{name}/..)").strip()
    return disk, start, size


def _assert_erased_at(lab: Lab, place: tuple[str, int, int], secret: bytes) -> None:
    """The first 16 MiB where a volume was (its LUKS2 headers and keyslots) are zeros: no
    LUKS header is left there, and its key opens nothing."""
    disk, start, size = place
    header = "/root/old-volume-head.img"
    lab.sh(f"dd if={disk} of={header} bs=512 skip={start} count={min(size, 32768)} status=none")
    assert lab.ssh(f"cryptsetup isLuks {header}").returncode != 0
    assert lab.ssh(f"cmp -s -n 16777216 {header} /dev/zero").returncode == 0
    assert not lab.opens(secret, header)
    lab.sh(f"rm -f {header}")


def test_swap_to_v2_loads_switches_and_erases_the_old_volume(lab: Lab) -> None:
    (key,) = lab.keystore.keys(VOLUME)
    secret = lab.keystore.secret(VOLUME, key.key_id)
    old = _place(lab, DEVICE)
    old_uuid = lab.sh(f"cryptsetup luksUUID {DEVICE}").strip()
    tampered = _dataset_dir(lab.tmp / "v2-tampered", FILES_V2)
    (tampered / "README.txt").write_bytes(b"not version 2\n")
    refused = lab.cli("swap", str(lab.spec), DATASET, "--version", "v2", "--from", str(tampered))
    assert refused.returncode == 1 and "README.txt: sha256" in refused.stderr, refused.stderr
    source = _dataset_dir(lab.tmp / "v2", FILES_V2)
    done = lab.cli("swap", str(lab.spec), DATASET, "--version", "v2", "--from", str(source),
                   out="rec-swap")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    record = lab.verify_record("rec-swap", "swap")
    assert record["old_key"] == record["new_key"] == key.key_id
    assert lab.sh(f"blkid -s LABEL -o value {DEVICE}").strip() == f"{DATASET}@v2"
    new_uuid = lab.sh(f"cryptsetup luksUUID {DEVICE}").strip()
    assert new_uuid != old_uuid
    assert lab.sh(f"findmnt -no SOURCE --mountpoint {MOUNT}").strip() == f"/dev/mapper/{DATASET}"
    names = ("README.txt", "2025/q1.csv", "2025/q2.csv")
    assert lab.sh(f"cd {MOUNT} && sha256sum {' '.join(names)}") == "".join(
        f"{hashlib.sha256(FILES_V2[n]).hexdigest()}  {n}\n" for n in names
    )
    assert lab.ssh(f"test -e {MOUNT}/2025/blob.bin").returncode != 0  # v1's only
    (line,) = [ln for ln in lab.sh("cat /etc/crypttab").splitlines() if ln.startswith(DATASET)]
    assert line.split()[1] == f"UUID={new_uuid}"
    assert "cpswap" not in lab.sh("ls /dev/disk/by-partlabel/ /dev/mapper/ /srv/datasets/ -a")
    assert _place(lab, DEVICE)[1] != old[1]  # another partition
    _assert_erased_at(lab, old, secret)
    assert lab.opens(secret, DEVICE)


def test_a_role_run_with_the_spec_at_v2_changes_nothing(lab: Lab) -> None:
    group_vars = lab.paths.inventory / "group_vars" / f"{VM_GROUP}.yml"
    data = yaml.safe_load(group_vars.read_text(encoding="utf-8"))
    data["campus_host_datasets"][0]["version"] = "v2"
    group_vars.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    run_dir = lab.tmp / "runs" / "role-at-v2"
    done = lab.cli("create", str(lab.spec), "--run-dir", str(run_dir), out="rec-create-v2")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert [(h["host"], h["changed"], h["failed"]) for h in summary["hosts"]] == [(VM, 0, 0)]
    after = lab.statuses()
    assert after == {(VM, c): "pass" for c in CONTROLS}, after


def test_retire_crypto_erases_the_volume_and_forgets_it(lab: Lab) -> None:
    refused = lab.cli("retire", str(lab.spec), DATASET)
    assert refused.returncode != 0 and "--yes" in refused.stderr, refused.stderr
    (key,) = lab.keystore.keys(VOLUME)
    secret = lab.keystore.secret(VOLUME, key.key_id)
    place = _place(lab, DEVICE)
    dry = lab.cli("retire", str(lab.spec), DATASET, "--dry-run")
    assert dry.returncode == 0 and "would erase" in dry.stdout, dry.stdout + dry.stderr
    assert lab.opens(secret, DEVICE)

    done = lab.cli("retire", str(lab.spec), DATASET, "--yes", out="rec-retire")
    assert done.returncode == 0, done.stdout + done.stderr
    record = lab.verify_record("rec-retire", "retire")
    assert record["old_key"] == key.key_id and record["new_key"] is None
    _assert_erased_at(lab, place, secret)
    assert lab.ssh(f"test -e {DEVICE}").returncode != 0  # the partition is gone
    assert lab.ssh(f"grep -E '^{DATASET} |{MOUNT} ' /etc/crypttab /etc/fstab").returncode == 1
    assert lab.ssh(f"test -e {KEYFILE} || findmnt {MOUNT} || test -e /dev/mapper/{DATASET}"
                   ).returncode != 0  # fmt: skip
    assert lab.keystore.keys(VOLUME) == []


def test_no_key_is_left_in_any_artefact(lab: Lab) -> None:
    assert lab.seen_keys, "no key was ever made"
    lab.sampler.stop()
    vm_ps = lab.ssh("cat /root/ps-samples.txt", timeout=120).stdout
    assert vm_ps.count(b"\n") > 100, "the VM's process sampler did not run"
    assert b"cryptsetup" in vm_ps, "no cryptsetup process was ever sampled on the VM"
    assert any(b"campus-provision volumes" in snap for snap in lab.sampler.snapshots)
    secrets = keys_dir_secrets(lab.keys_dir, lab.passphrase)
    for key_id, text in lab.seen_keys.items():  # the retired key too
        secrets += [Secret(f"volume key {key_id}", text),
                    Secret(f"volume key {key_id} (raw)", base64.b64decode(text)),
                    Secret(f"volume key {key_id} (text, hex)", text.hex().encode())]  # fmt: skip
    journals = list(default_journal_dir(lab.keys_dir).rglob("*.jsonl"))
    assert journals, "no journal was written"
    # Everything under the test's directory but the sealed keystore itself, and the inventory.
    passphrase_file = Path(lab.env["CAMPUS_KEYSTORE_PASSPHRASE_FILE"])
    roots = [p for p in lab.tmp.iterdir() if p not in (lab.keys_dir, passphrase_file)]
    roots += [default_journal_dir(lab.keys_dir), lab.paths.inventory]
    leaks = scan_files(roots, secrets) + lab.sampler.scan(secrets)
    leaks += scan_bytes(f"{VM}: ps snapshots", vm_ps, secrets)
    assert [str(leak) for leak in leaks] == []
