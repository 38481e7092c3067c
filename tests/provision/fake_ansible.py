"""A stand-in for ansible-playbook that writes canned events the way campus_events does.

``install`` writes ``bin/ansible-playbook``, a script that appends one round's events to
``$CAMPUS_EVENTS_FILE`` (one JSON object per line, flushed), writes
``$CAMPUS_TIMINGS_FILE``, records its argv in ``calls.jsonl`` and exits with the round's
code. The n-th call plays the n-th round (the last one again after that). A ``{"kind":
"wait"}`` record is not written: the script waits there until the test creates ``go``
(at most 20 s), so a test can see what was printed while ansible-playbook still runs.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.provision import runner

SCRIPT = """\
#!{python}
import json, os, sys, time
from pathlib import Path

here = Path(__file__).resolve().parent.parent
calls = here / "calls.jsonl"
n = len(calls.read_text().splitlines()) if calls.exists() else 0
with calls.open("a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
rounds = json.loads((here / "rounds.json").read_text())
this = rounds[min(n, len(rounds) - 1)]
with open(os.environ["CAMPUS_EVENTS_FILE"], "a") as out:
    for record in this["events"]:
        if record.get("kind") == "wait":
            deadline = time.monotonic() + 20
            while not (here / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            continue
        out.write(json.dumps(record) + "\\n")
        out.flush()
timings = [{{"task": "round %d" % n, "path": None, "seconds": n + 1.0, "hosts": {{}}}}]
Path(os.environ["CAMPUS_TIMINGS_FILE"]).write_text(json.dumps(timings))
print("fake ansible-playbook, round", n)
sys.exit(this["rc"])
"""


@dataclass
class Fake:
    """Where the fake lives, and what it was called with."""

    root: Path
    script: Path

    def calls(self) -> list[list[str]]:
        path = self.root / "calls.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def go(self) -> None:
        (self.root / "go").touch()


def install(root: Path, rounds: list[tuple[list[dict[str, Any]], int]]) -> Fake:
    """Write the fake under ``root`` with ``rounds`` of (events, exit code)."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    script = root / "bin" / "ansible-playbook"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    data = [{"events": events, "rc": rc} for events, rc in rounds]
    (root / "rounds.json").write_text(json.dumps(data))
    return Fake(root, script)


def use(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the runner start the fake (on PATH, and found first) in this process."""
    monkeypatch.setenv("PATH", f"{fake.script.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(runner, "ansible_playbook", lambda: str(fake.script))


def play(name: str, hosts: int, t: float = 1000.0) -> list[dict[str, Any]]:
    """A play starting; a play with no host is followed by "no_hosts", as Ansible does."""
    events: list[dict[str, Any]] = [{"kind": "play", "play": name, "hosts": hosts, "time": t}]
    if hosts == 0:
        events.append({"kind": "no_hosts", "time": t})
    return events


def task(name: str, t: float) -> dict[str, Any]:
    return {"kind": "task", "task": name, "time": t}


def result(kind: str, host: str, task: str, t: float, msg: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": kind, "host": host, "task": task, "time": t, "seconds": 0.5}
    if msg is not None:
        record["msg"] = msg
    return record


def stats(host: str, **counts: int) -> dict[str, Any]:
    base = {"ok": 0, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0}
    base.update(counts)
    return {"kind": "stats", "host": host, "counts": base, "time": 2000.0}
