"""make demo runs twice on one machine: each run clears the evidence its last run wrote.

The demo's recipes run for real, with a stand-in ``campus-provision`` on their BIN that
keeps the CLI's one rule that matters here (``--out DIR`` that exists is refused: evidence
is never overwritten) and fails verify on the bare PCs, as the real checks must.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

STAND_IN = r"""#!/usr/bin/env bash
echo "$*" >> "$DEMO_LOG"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out=$a; prev=$a; done
[ -z "$out" ] && exit 0
if [ -e "$out" ]; then echo "$out: already exists; evidence is never overwritten" >&2; exit 2; fi
mkdir -p "$out"
case "$out" in *-bare) exit 1 ;; esac
exit 0
"""


def _demo(workdir: Path, bin_dir: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-C", str(workdir), "-o", "setup", "-o", "lab-deps",
         f"BIN={bin_dir}", "LAB_STATE=/nonexistent", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DEMO_LOG": str(log)},
    )  # fmt: skip


def test_a_second_make_demo_clears_the_first_ones_evidence(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "campus-provision").write_text(STAND_IN)
    (bin_dir / "campus-provision").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "calls.log"
    first = _demo(work, bin_dir, log)
    assert first.returncode == 0, first.stdout + first.stderr
    outs = sorted(p.name for p in (work / "evidence").iterdir())
    assert "demo" in outs and "demo-vm-volumes" in outs and "demo-volumes-rotate" in outs
    second = _demo(work, bin_dir, log)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "already exists" not in second.stderr
    assert sorted(p.name for p in (work / "evidence").iterdir()) == outs
    # both runs went through every step: verify, provision, volumes, report verify
    calls = log.read_text().splitlines()
    assert sum(c.startswith("volumes rotate-key") for c in calls) == 2
    assert sum(c.startswith("report verify") for c in calls) == 2 * 5
