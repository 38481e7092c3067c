"""Bundle benchmark: build the test profile's bundle and the full analyst profile's, side by side.

Both are built from scratch in one run (fresh apt workspace, no cache), from Debian's mirror,
with a throw-away keystore: resolve, download, index, sign. Prints packages, size and time
of each and their ratios, and saves raw JSON in bench/results/. Needs the network (Debian's
package mirror) and apt-utils, gpg.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from campus_provision.bundle.build import build_bundle
from campus_provision.bundle.closure import MIRROR
from campus_provision.keys.signing import init_signing_key, load_signing_key
from campus_provision.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "seoul" / "campus.yml"
# The profile the lab tests use: R and pandas at the example's pinned versions.
TEST_PROFILE = """software_profiles:
  analyst:
    title: Test profile (R and pandas)
    packages:
      - r-base-core=4.2.2.20221110-2
      - python3-pandas=1.5.3+dfsg-2
"""


def small_profile_spec(directory: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    start, end = text.index("software_profiles:\n"), text.index("\n# --- Datasets")
    spec = directory / "campus-test-profile.yml"
    kiosk = "  kiosk:\n    title: Kiosk\n    packages:\n      - python3-pandas=1.5.3+dfsg-2\n"
    spec.write_text(text[:start] + TEST_PROFILE + kiosk + text[end:], encoding="utf-8")
    return spec


def build(spec: Path, out: Path, keys: Path, passphrase: str, mirror: str) -> dict[str, float]:
    campus = load_spec(spec)
    start = time.perf_counter()
    result = build_bundle(
        spec, campus, out, signing_key=load_signing_key(keys, passphrase), keys_dir=keys,
        passphrase=passphrase, profiles=["analyst"], mirror=mirror,
    )  # fmt: skip
    return {
        "seconds": time.perf_counter() - start,
        "packages": len(result.manifest.packages),
        "mib": result.total_bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", default=MIRROR)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        work = Path(tmp)
        passphrase = secrets.token_urlsafe(24)
        init_signing_key(work / "keys", passphrase)
        runs = {
            "test profile (r-base-core, python3-pandas)": build(
                small_profile_spec(work), work / "small", work / "keys", passphrase, args.mirror
            ),
            "full analyst profile (example spec)": build(
                EXAMPLE, work / "full", work / "keys", passphrase, args.mirror
            ),
        }
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"bundle benchmark: built from {args.mirror} on {machine} (+ role packages)")
    for name, r in runs.items():
        print(f"  {name:44} {r['packages']:5.0f} packages {r['mib']:7.1f} MiB "
              f"{r['seconds']:6.1f} s")  # fmt: skip
    small, full = runs.values()
    print(f"the full analyst bundle is {full['mib'] / small['mib']:.1f}x the size and took "
          f"{full['seconds'] / small['seconds']:.1f}x the time of the test profile's")  # fmt: skip
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out / f"bundle-{stamp}.json"
    data = {"date": stamp, "machine": machine, "runs": runs}
    target.write_text(json.dumps(data, indent=2) + "\n")
    print(f"raw results: {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
