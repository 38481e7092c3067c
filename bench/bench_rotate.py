"""Key-rotation benchmark: one volume key rotated on 1 lab VM and on 2, and the LUKS KDF cost.

Two measurements side by side in one run:

- the KDF alone, on this controller: one ``cryptsetup open --test-passphrase`` on a LUKS2
  file made with the role's default keyslot (argon2id, 1 GiB, 2000 ms) and with the lab's
  override (argon2id, 32 MiB, 4 iterations) — what every key test of a rotation costs;
- ``campus-provision volumes rotate-key`` through the real CLI on QEMU lab PCs (prefix
  cpn, 2 Sangam PCs, volumes made by campus_data_volume with the lab's KDF): the wall time
  to rotate one dataset's key on 1 PC, then on 2 (one after the other, as the CLI does).

Prints the results with the machine and saves raw JSON in bench/results/. Needs root (the
lab). ``--kdf-only`` skips the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campus_provision.keys.signing import init_signing_key  # noqa: E402
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore, volume_id  # noqa: E402
from campus_provision.lab import control  # noqa: E402
from campus_provision.lab.state import LabPaths, read_record, state_dir_from_env  # noqa: E402
from campus_provision.provision.runner import run_playbook  # noqa: E402
from campus_provision.volumes.backend import Pbkdf, find_cryptsetup  # noqa: E402
from campus_provision.volumes.fleet import load_fleet  # noqa: E402
from tests.lab.conftest import small_spec  # noqa: E402
from tests.lab.volume_vm import LAB_VARS, PLAY  # noqa: E402

VENV_BIN = Path(sys.executable).parent
ROLE_DEFAULT = Pbkdf()
LAB = Pbkdf(memory_kib=32768, force_iterations=4)
KEY = b"A" * (KEYFILE_BYTES - 2) + b"=="


def kdf_seconds(pbkdf: Pbkdf, repeat: int) -> list[float]:
    """Seconds of each ``open --test-passphrase`` on a LUKS2 file with ``pbkdf``'s keyslot."""
    binary = find_cryptsetup()
    with tempfile.TemporaryDirectory() as tmp:
        header = Path(tmp) / "vol.luks"
        with header.open("wb") as fh:
            fh.truncate(32 << 20)
        subprocess.run(
            [binary, "luksFormat", "--batch-mode", "--type", "luks2", *pbkdf.args(),
             "--key-file=-", f"--keyfile-size={KEYFILE_BYTES}", str(header)],
            input=KEY, capture_output=True, check=True, timeout=600,
        )  # fmt: skip
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(
                [binary, "open", "--test-passphrase", "--key-file=-",
                 f"--keyfile-size={KEYFILE_BYTES}", str(header)],
                input=KEY, capture_output=True, check=True, timeout=600,
            )  # fmt: skip
            times.append(time.perf_counter() - start)
        return times


def rotate_seconds(prefix: str, tmp: Path) -> dict[str, float]:
    """Up a 2-PC QEMU lab, make the volumes, time rotate-key on 1 PC and on 2."""
    paths = LabPaths(state_dir_from_env(), prefix)
    control.down(paths)
    spec = small_spec(tmp)
    try:
        up = control.up(spec, paths, per_site=2, driver="qemu", sites=["sangam"], mirror=True,
                        progress=print)  # fmt: skip
        pcs = [h.name for h in up.plan.hosts if h.role == "workstation"][:2]
        record = read_record(paths) or {}
        fleet = load_fleet(paths.inventory / "hosts.yml", limit=",".join(pcs))
        shared = set.intersection(*({d.id for d in t.datasets} for t in fleet))
        dataset = sorted(shared)[0]
        passphrase = tmp / "passphrase"
        passphrase.write_text("bench rotation keystore passphrase, not a secret\n")
        passphrase.chmod(0o600)
        keys = tmp / "keys"
        store = VolumeKeystore(keys, passphrase.read_text().strip())
        for target in fleet:
            for ds in target.datasets:
                store.create(volume_id(target.host, ds.id))
        init_signing_key(keys, passphrase.read_text().strip())
        env = {**os.environ, "CAMPUS_KEYS_DIR": str(keys),
               "CAMPUS_KEYSTORE_PASSPHRASE_FILE": str(passphrase),
               "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
        os.environ.update(
            {k: env[k] for k in ("CAMPUS_KEYS_DIR", "CAMPUS_KEYSTORE_PASSPHRASE_FILE")}
        )
        playbook = tmp / "volumes.yml"
        playbook.write_text(yaml.safe_dump(PLAY, sort_keys=False))
        extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"],
                 **LAB_VARS}  # fmt: skip
        run = run_playbook(playbook, paths.inventory / "hosts.yml", tmp / "run",
                           limit=",".join(pcs), extra_vars=extra)  # fmt: skip
        if not run.ok():
            raise SystemExit(f"provisioning the volumes failed; see {run.log}")
        results = {}
        for name, limit in (("rotate_1_vm", pcs[0]), ("rotate_2_vms", ",".join(pcs))):
            start = time.perf_counter()
            done = subprocess.run(
                [str(VENV_BIN / "campus-provision"), "volumes", "rotate-key", str(spec), dataset,
                 "--lab", "--prefix", prefix, "--limit", limit, "--out", str(tmp / name)],
                env=env, capture_output=True, text=True, timeout=1800, check=False,
            )  # fmt: skip
            results[name] = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"rotate-key failed:\n{done.stdout}{done.stderr}")
        return results
    finally:
        control.down(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="cpn")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kdf-only", action="store_true", help="Skip the lab measurements.")
    args = parser.parse_args()
    data: dict[str, Any] = {
        "kdf_role_default": kdf_seconds(ROLE_DEFAULT, args.repeat),
        "kdf_lab": kdf_seconds(LAB, args.repeat),
    }
    if not args.kdf_only:
        with tempfile.TemporaryDirectory() as tmp:
            data.update(rotate_seconds(args.prefix, Path(tmp)))
    load = os.getloadavg()[0]
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"rotation benchmark on {machine} (load average {load:.1f} at the end)")
    for name in ("kdf_role_default", "kdf_lab"):
        best = min(data[name])
        print(f"  {name:18} open --test-passphrase: {best:6.2f} s (best of {args.repeat})")
    ratio = min(data["kdf_role_default"]) / min(data["kdf_lab"])
    print(f"  the role's default keyslot costs {ratio:.0f}x the lab's per key test")
    for name in ("rotate_1_vm", "rotate_2_vms"):
        if name in data:
            print(f"  {name:18} {data[name]:6.1f} s  (campus-provision volumes rotate-key)")
    if "rotate_2_vms" in data:
        print(f"  2 VMs take {data['rotate_2_vms'] / data['rotate_1_vm']:.1f}x the time of 1")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out / f"rotate-{stamp}.json"
    target.write_text(json.dumps({"date": stamp, "machine": machine, "load": load, **data},
                                 indent=2) + "\n")  # fmt: skip
    print(f"raw results: {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
