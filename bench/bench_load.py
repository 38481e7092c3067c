"""Load benchmark: one large dataset file through ``volumes load``'s code path, and what it
costs the controller in memory.

A directory with one file (2 GiB by default; sparse, or random with ``--random``) and its
SHA256SUMS is checked (:func:`check_source`: every byte hashed here) and loaded
(:func:`load_files`: the file streams into a temp name on the target, is hashed there,
renamed into place, then hashed again) onto a target directory through
:class:`LocalShell`: the PC's shell commands, run on this machine instead of over SSH
(no lab needed; it is a benchmark, not a test). Prints the seconds of each phase and the
controller's peak memory: the RSS high-water mark (VmHWM, ru_maxrss) and the Python heap
peak (tracemalloc), beside the file's size; the children's figure is the stand-in PC's
commands (cat, sha256sum). Asserts nothing; saves raw JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campus_provision.volumes.load import MANIFEST, check_source, load_files  # noqa: E402
from campus_provision.volumes.remote import LocalShell  # noqa: E402

MIB = 1 << 20


def vm_hwm_kib() -> int:
    """This process's RSS high-water mark (KiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def make_source(directory: Path, size: int, random: bool) -> None:
    """``directory`` with ``data.bin`` of ``size`` bytes and its SHA256SUMS."""
    directory.mkdir()
    path = directory / "data.bin"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        if random:
            left = size
            while left:
                block = os.urandom(min(MIB, left))
                digest.update(block)
                fh.write(block)
                left -= len(block)
        else:
            fh.truncate(size)  # sparse: no disk, reads as zeros
            zeros = bytes(MIB)
            for _ in range(size // MIB):
                digest.update(zeros)
            digest.update(bytes(size % MIB))
    (directory / MANIFEST).write_text(f"{digest.hexdigest()}  data.bin\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="the file's size in MiB")
    parser.add_argument("--random", action="store_true", help="random bytes, not sparse")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the source and target go (temp)"
    )
    args = parser.parse_args()
    size = args.mib * MIB

    machine = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-load-") as tmp:
        source, target = Path(tmp) / "src", Path(tmp) / "target"
        make_source(source, size, args.random)
        target.mkdir()
        hwm_before = vm_hwm_kib()
        tracemalloc.start()
        start = time.perf_counter()
        files = check_source(source)
        checked = time.perf_counter()
        loaded = load_files(LocalShell(), str(target), files)
        done = time.perf_counter()
        heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        arrived = (target / "data.bin").stat().st_size  # load_files hashed it there too
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "file_bytes": size,
        "random": args.random,
        "check_source_s": round(checked - start, 3),
        "load_files_s": round(done - checked, 3),
        "bytes_sent": loaded.bytes_sent,
        "bytes_arrived": arrived,
        "controller_vm_hwm_before_kib": hwm_before,
        "controller_vm_hwm_kib": vm_hwm_kib(),
        "controller_ru_maxrss_kib": self_usage.ru_maxrss,
        "controller_python_heap_peak_bytes": heap_peak,
        "children_ru_maxrss_kib": children.ru_maxrss,
    }
    print(f"load benchmark, one {args.mib:,} MiB {'random' if args.random else 'sparse'} file, "
          f"through LocalShell, on {machine}")  # fmt: skip
    mib_s = args.mib / max(done - checked, 1e-9)
    print(f"check_source (hash here)       {checked - start:10.2f} s "
          f"({args.mib / max(checked - start, 1e-9):,.0f} MiB/s)")  # fmt: skip
    print(f"load_files (send, hash twice)  {done - checked:10.2f} s ({mib_s:,.0f} MiB/s)")
    print(f"controller peak RSS (VmHWM)    {vm_hwm_kib() / 1024:10.1f} MiB "
          f"(before the load: {hwm_before / 1024:.1f} MiB)")  # fmt: skip
    print(f"controller Python heap peak    {heap_peak / MIB:10.2f} MiB (tracemalloc)")
    print(f"stand-in PC commands' peak RSS {children.ru_maxrss / 1024:10.1f} MiB "
          "(the largest; a fork starts at the controller's size)")  # fmt: skip
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"load-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
