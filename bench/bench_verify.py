"""Verify benchmark: the same checks on the same 2 lab PCs, over SSH vs testinfra's --force-ansible.

campus-provision verify runs testinfra over plain SSH (ControlPersist connections) with
pytest-xdist; --force-ansible runs every command through an Ansible ad-hoc module call.
Both are measured side by side in one run against one lab; prints the ratio and saves
raw JSON in bench/results/. Needs root (the lab).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from campus_provision.lab import control
from campus_provision.lab.state import LabPaths, state_dir_from_env
from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.runner import Target, run_checks, spec_digest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "seoul" / "campus.yml"


def timed(target: Target) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = run_checks(target, Path(tmp) / "junit.xml")
        return time.perf_counter() - start, len(results.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="cpb")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    paths = LabPaths(state_dir_from_env(), args.prefix)
    control.down(paths)
    up = control.up(EXAMPLE, paths, per_site=1)
    try:
        base = Target(
            inventory=paths.inventory / "hosts.yml", campus=up.plan.campus,
            spec_sha256=spec_digest(EXAMPLE), workers=args.workers,
        )  # fmt: skip
        runs = {
            "ssh_xdist": timed(base),
            "force_ansible_xdist": timed(Target(**{**base.__dict__, "force_ansible": True})),
            "ssh_serial": timed(Target(**{**base.__dict__, "workers": 1})),
            "force_ansible_serial": timed(
                Target(**{**base.__dict__, "workers": 1, "force_ansible": True})
            ),
        }
    finally:
        control.down(paths)
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"verify benchmark: 2 lab PCs x {len(load_catalogue().controls)} controls, on {machine}")
    for name, (seconds, count) in runs.items():
        print(f"  {name:24} {seconds:7.1f} s  ({count} results)")
    ratio = runs["force_ansible_xdist"][0] / runs["ssh_xdist"][0]
    serial = runs["force_ansible_serial"][0] / runs["ssh_xdist"][0]
    print(f"ssh+xdist is {ratio:.1f}x as fast as --force-ansible with the same workers")
    print(f"ssh+xdist is {serial:.1f}x as fast as plain serial --force-ansible (goal: >= 5x)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {"date": stamp, "machine": machine, "runs": {k: v[0] for k, v in runs.items()}}
    target = out / f"verify-{stamp}.json"
    target.write_text(json.dumps(data, indent=2) + "\n")
    print(f"raw results: {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
