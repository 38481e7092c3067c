"""Run the control checks against hosts with pytest + testinfra over SSH, in parallel.

pytest runs in a process of its own (pytest-xdist workers, one SSH connection per
host and worker, reused through ControlPersist). Each finished check appends a JSON
line to a results file, which this module reads as it grows to show progress, then
turns into ``RunResults``, applying the spec's waivers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from campus_provision import __version__
from campus_provision.errors import VerifyError
from campus_provision.render import build_inventory
from campus_provision.spec.controls import load_catalogue
from campus_provision.spec.model import Campus
from campus_provision.verify.results import STATUSES, ControlResult, RunResults, Status, Waiver

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Target:
    """What to verify: a rendered inventory, the campus it came from, and filters."""

    inventory: Path  # hosts.yml
    campus: Campus
    spec_sha256: str
    limit: str = "workstations"
    controls: tuple[str, ...] = ()
    workers: int = 4
    probe: str | None = None
    force_ansible: bool = False
    checks_dir: Path = CHECKS_DIR  # the catalogue's checks; a test may bring its own


def spec_digest(spec: Path) -> str:
    """SHA-256 of the spec file's bytes (named in the evidence)."""
    return hashlib.sha256(spec.read_bytes()).hexdigest()


def _hosts_for(campus: Campus, pattern: str) -> list[str]:
    """Hosts matching a comma-separated list of host and group names.

    Resolved on the inventory render makes from the same campus (no ansible-inventory
    run: that alone takes seconds, on every verify).
    """
    groups: dict[str, dict[str, Any]] = {}

    def collect(children: dict[str, Any]) -> None:
        for name, group in children.items():
            body = group or {}
            groups.setdefault(name, {}).update(body)
            collect({k: v for k, v in (body.get("children") or {}).items() if v})

    collect(build_inventory(campus).hosts["all"]["children"])
    every = {h for g in groups.values() for h in g.get("hosts") or {}}

    def members(name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in groups:
            return set()
        seen.add(name)
        out = set(groups[name].get("hosts") or {})
        for child in groups[name].get("children") or {}:
            out |= members(child, seen)
        return out

    hosts: set[str] = set()
    for raw in pattern.split(","):
        part = raw.strip()
        if part == "all":
            hosts |= every
        elif part in groups:
            hosts |= members(part, set())
        elif part in every:
            hosts.add(part)
        else:
            raise VerifyError(f"--limit {part}: no such host or group in the inventory")
    return sorted(hosts)


def _control_ids(selected: tuple[str, ...]) -> list[str]:
    known = [c.id for c in load_catalogue().controls]
    for control in selected:
        if control not in known:
            raise VerifyError(f"--controls {control}: not in the catalogue ({', '.join(known)})")
    return [c for c in known if not selected or c in selected]


def tool_versions() -> dict[str, str]:
    """Versions of what produced the evidence."""
    out = {"campus-provision": __version__, "python": sys.version.split()[0]}
    for dist in ("pytest", "pytest-testinfra", "pytest-xdist", "ansible-core"):
        out[dist] = version(dist)
    return out


def run_checks(target: Target, junit: Path, progress: Progress | None = None) -> RunResults:
    """Run every selected check on every selected host; the results, waivers applied."""
    hosts = _hosts_for(target.campus, target.limit)
    if not hosts:
        raise VerifyError(f"--limit {target.limit}: no hosts")
    controls = _control_ids(target.controls)
    total = len(hosts) * len(controls)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="campus-verify-") as tmp:
        results_file = Path(tmp) / "results.jsonl"
        results_file.touch()
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\naddopts =\njunit_family = xunit2\n")
        cmd = [
            sys.executable, "-m", "pytest", str(target.checks_dir), "-c", str(ini),
            "--rootdir", str(target.checks_dir), "-p", "no:cacheprovider", "-q", "--no-header",
            "-o", "console_output_style=classic",
            f"--hosts={','.join('ansible://' + h for h in hosts)}",
            f"--ansible-inventory={target.inventory}",
            "-n", str(max(1, min(target.workers, total))),
            f"--junitxml={junit}",
            "-k", " or ".join(c.replace("-", "_") for c in controls),
        ]  # fmt: skip
        if target.force_ansible:
            cmd.append("--force-ansible")
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["CAMPUS_VERIFY_RESULTS"] = str(results_file)
        if target.probe:
            env["CAMPUS_VERIFY_PROBE"] = target.probe
        log = Path(tmp) / "pytest.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60 * 60
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise VerifyError("verification did not finish within an hour")
                if progress is not None:
                    progress(_count_lines(results_file), total)
                time.sleep(0.2)
        records = [
            json.loads(line) for line in results_file.read_text().splitlines() if line.strip()
        ]
        if progress is not None:
            progress(len(records), total)
        if proc.returncode not in (0, 1) or not records:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise VerifyError(f"the checks did not run (pytest exit {proc.returncode}):\n{tail}")
    finished = dt.datetime.now(dt.UTC)
    results = complete_results(hosts, controls, [_result(r) for r in records])
    results = apply_waivers(target.campus, results, finished.date())
    return RunResults(
        campus=target.campus.campus.name,
        spec_sha256=target.spec_sha256,
        started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="seconds"),
        tool_versions=tool_versions(),
        hosts=hosts,
        controls=controls,
        results=results,
    )


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


NO_RESULT = (
    "no result: the check never reported for this host (a pytest worker crashed or its "
    "report was lost); an unseen control is not a pass"
)


def complete_results(
    hosts: list[str], controls: list[str], results: list[ControlResult]
) -> list[ControlResult]:
    """Exactly one result per (host, control) of the run, sorted.

    A cell without a result becomes an *error* naming what is missing, so the exit code,
    the summary, ``results.json`` and the report all say the same thing. A cell reported
    twice (a worker restarted mid-check) keeps its worst result. Results for hosts or
    controls outside the run are dropped: they were not asked for.
    """
    rank = {status: i for i, status in enumerate(STATUSES)}  # fail first: the worst
    cells: dict[tuple[str, str], ControlResult] = {}
    for r in results:
        if r.host not in hosts or r.control not in controls:
            continue
        key = (r.host, r.control)
        if key not in cells or rank[r.status] < rank[cells[key].status]:
            cells[key] = r
    for host in hosts:
        for control in controls:
            cells.setdefault(
                (host, control), ControlResult(host, control, "error", NO_RESULT, "", 0.0)
            )
    return sorted(cells.values(), key=lambda r: (r.host, r.control))


def _result(record: dict[str, object]) -> ControlResult:
    status = str(record["status"])
    if status not in ("pass", "fail", "error", "not_applicable"):
        status = "error"
    message = str(record.get("message", "")).strip()
    return ControlResult(
        host=str(record["host"]),
        control=str(record["control"]),
        status=status,  # type: ignore[arg-type]
        message=message.removeprefix("not applicable: "),
        evidence=str(record.get("evidence", "")),
        duration=round(float(str(record.get("duration", 0))), 3),
    )


def apply_waivers(
    campus: Campus, results: list[ControlResult], today: dt.date
) -> list[ControlResult]:
    """A failure a live waiver covers becomes ``waived``; an expired waiver excuses nothing."""
    out = []
    for r in results:
        waiver = next(
            (w for w in campus.controls.waivers if w.control == r.control and r.host in w.hosts),
            None,
        )
        if waiver is None or r.status != "fail":
            out.append(r)
            continue
        expired = waiver.expires < today
        record = Waiver(
            justification=waiver.justification,
            expires=waiver.expires.isoformat(),
            approved_by=waiver.approved_by,
            expired=expired,
            ticket=waiver.ticket,
        )
        status: Status = "fail" if expired else "waived"
        message = r.message + (
            f" (waiver expired on {waiver.expires.isoformat()})" if expired else ""
        )
        out.append(
            ControlResult(r.host, r.control, status, message, r.evidence, r.duration, record)
        )
    return out
