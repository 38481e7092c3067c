"""Render benchmark: a campus of 10,000 PCs, loaded, validated, rendered, parsed by Ansible.

Two specs of the same 10,000 PCs are measured side by side in one run: one with
generated groups (count + hostname pattern), one listing every PC with its address and
MAC. Prints seconds per stage (best of N) and ratios; saves raw JSON in bench/results/.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import yaml

from campus_provision.render import build_inventory, render_files, write_tree
from campus_provision.spec import Campus, load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "seoul" / "campus.yml"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def make_spec(pcs: int, explicit: bool) -> dict[str, object]:
    """The example campus, with its PCs replaced by ``pcs`` PCs over both sites."""
    spec = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    per_group = 500
    for s_index, site_name in enumerate(("sangam", "gaepo")):
        site = spec["sites"][site_name]
        site["networks"]["pcs"] = {
            "cidr": f"10.{21 + s_index}.64.0/18",
            "gateway": f"10.{21 + s_index}.64.1",
        }
        room = next(iter(site["rooms"]))
        groups = []
        for g in range(pcs // 2 // per_group):
            base = 0x0A000000 | ((21 + s_index) << 16) | ((64 + g * 2 + 1) << 8)
            group: dict[str, object] = {
                "name": f"{site_name}-bulk-{g:02d}",
                "room": room,
                "profile": "analyst",
                "datasets": ["card-spending-2025"],
            }
            if explicit:
                group["hosts"] = [
                    {
                        "hostname": f"{site_name[:3]}-{g:02d}-{n:03d}",
                        "ip": ".".join(str((base + n) >> s & 255) for s in (24, 16, 8, 0)),
                        "mac": f"52:54:{21 + s_index:02x}:{g:02x}:{n >> 8:02x}:{n & 255:02x}",
                    }
                    for n in range(1, per_group + 1)
                ]
            else:
                group["count"] = per_group
                group["hostname"] = f"{site_name[:3]}-{g:02d}-{{n:03d}}"
                group["first_ip"] = ".".join(str((base + 1) >> s & 255) for s in (24, 16, 8, 0))
            groups.append(group)
        site["workstation_groups"] = groups
    spec["controls"]["waivers"] = []
    return spec


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(spec_path: Path, out: Path, runs: int) -> dict[str, float | int]:
    campus = load_spec(spec_path)
    pcs = len(campus.workstations)
    load_s = best_of(runs, lambda: load_spec(spec_path))
    render_s = best_of(runs, lambda: render_files(campus, spec_path.name))
    files = render_files(campus, spec_path.name)
    write_s = best_of(1, lambda: write_tree(out, files))
    total_s = best_of(runs, lambda: render_files(load_spec(spec_path), spec_path.name))
    # The same work done the obvious way: PyYAML's defaults, plain pydantic, collector on.
    text = spec_path.read_text(encoding="utf-8")
    hosts = build_inventory(campus).hosts

    def naive() -> None:
        model = Campus.model_validate(yaml.load(text, Loader=yaml.SafeLoader))
        yaml.safe_dump(hosts, sort_keys=False)
        assert model is not None  # noqa: S101

    naive_s = best_of(runs, naive)
    cmd = [str(ANSIBLE_INVENTORY), "-i", str(out / "hosts.yml"), "--list"]
    ansible_s = best_of(
        1, lambda: subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    )
    return {
        "pcs": pcs,
        "spec_bytes": spec_path.stat().st_size,
        "hosts_yml_bytes": (out / "hosts.yml").stat().st_size,
        "files": len(files),
        "load_validate_s": load_s,
        "render_s": render_s,
        "write_s": write_s,
        "load_validate_render_s": total_s,
        "naive_load_validate_render_s": naive_s,
        "ansible_inventory_list_s": ansible_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pcs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    machine = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "pcs": args.pcs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("generated", "explicit"):
            spec_path = Path(tmp) / f"{kind}.yml"
            spec_path.write_text(
                yaml.safe_dump(make_spec(args.pcs, kind == "explicit"), sort_keys=False)
            )
            results[kind] = measure(spec_path, Path(tmp) / f"out-{kind}", args.runs)

    gen = cast(dict[str, float], results["generated"])
    exp = cast(dict[str, float], results["explicit"])
    print(f"render benchmark, {args.pcs:,} PCs, on {machine}")
    print(f"{'':28}{'generated groups':>18}{'explicit hosts':>18}{'ratio':>8}")
    for key, label in (
        ("spec_bytes", "spec size (bytes)"),
        ("load_validate_s", "load + validate (s)"),
        ("render_s", "render (s)"),
        ("load_validate_render_s", "load+validate+render (s)"),
        ("naive_load_validate_render_s", "  same, PyYAML+pydantic (s)"),
        ("write_s", "atomic write (s)"),
        ("ansible_inventory_list_s", "ansible-inventory --list (s)"),
    ):
        a, b = gen[key], exp[key]
        fmt = "{:>18,}" if key.endswith("bytes") else "{:>18.3f}"
        print(f"{label:28}{fmt.format(a)}{fmt.format(b)}{b / a if a else 0:>7.1f}x")
    for kind, res in (("generated", gen), ("explicit", exp)):
        speedup = res["naive_load_validate_render_s"] / res["load_validate_render_s"]
        print(f"{kind}: campus-provision's loader+renderer is {speedup:.1f}x the plain PyYAML path")
    ratio = gen["ansible_inventory_list_s"] / gen["load_validate_render_s"]
    print(f"ansible-inventory parsing the output takes {ratio:.1f}x as long as producing it")
    goal = (
        "met"
        if gen["load_validate_render_s"] < 1 and exp["load_validate_render_s"] < 1
        else "MISSED"
    )
    print(f"goal: 10,000 PCs load+validate+render under 1 s: {goal}")

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out_dir / f"render-{stamp}.json"
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
