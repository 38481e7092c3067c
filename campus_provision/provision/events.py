"""The events of a provisioning run, as the campus_events callback writes them.

The callback (``campus_provision/ansible_plugins/callback/campus_events.py``) appends one
JSON object per line to ``events.jsonl`` in the run directory; this module turns a line
into an ``Event`` and reads the file as it grows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

# What ``Event.kind`` can be. "failed" is a failure that counts; "ignored" one under
# ignore_errors; "not_run" names a play Ansible never started (it ends a playbook when a
# play fails on every host); "stats" carries Ansible's recap for one host at the end of the
# run. "resume" is the runner's own, never in events.jsonl: it starts ansible-playbook again
# for the plays that never started.
KINDS = frozenset(
    {"play", "task", "ok", "changed", "failed", "ignored", "unreachable", "skipped",
     "no_hosts", "not_run", "stats", "resume"}
)  # fmt: skip
RESULT_KINDS = frozenset({"ok", "changed", "failed", "ignored", "unreachable", "skipped"})

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run.

    ``kind`` is one of ``KINDS``. ``host`` is set on results and stats; ``task`` on task
    starts and results; ``msg`` on failures and unreachable hosts only (one line, or
    "output hidden (no_log)"). ``play`` and ``hosts`` (how many hosts the play targets,
    None when unknown) are set on "play". A "not_run" event has ``play`` and ``targets``,
    the hosts that play would have run on (None when unknown); a "resume" event has the
    ``play`` that failed on every host and the ``targets`` the runner runs the rest on.
    ``seconds`` is how long the task took on the host; ``counts`` is Ansible's recap on
    "stats" (ok, changed, failures, unreachable, skipped, rescued, ignored); ``time`` is
    when the callback wrote it (Unix time).
    """

    kind: str
    host: str | None = None
    task: str | None = None
    msg: str | None = None
    play: str | None = None
    hosts: int | None = None
    seconds: float | None = None
    counts: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    handler: bool = False
    targets: tuple[str, ...] | None = None
    time: float = 0.0


def _str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return None if value is None else str(value)


def parse_event(line: str) -> Event | None:
    """The event on one line of events.jsonl; None for a blank or unreadable line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        return None
    hosts = record.get("hosts")
    seconds = record.get("seconds")
    counts = record.get("counts")
    targets = record.get("targets")
    return Event(
        kind=str(record["kind"]),
        host=_str(record, "host"),
        task=_str(record, "task"),
        msg=_str(record, "msg"),
        play=_str(record, "play"),
        hosts=hosts if isinstance(hosts, int) else None,
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
        counts=(
            MappingProxyType({str(k): int(v) for k, v in counts.items()})
            if isinstance(counts, dict)
            else _EMPTY
        ),
        handler=record.get("handler") is True,
        targets=tuple(str(t) for t in targets) if isinstance(targets, list) else None,
        time=float(record.get("time") or 0.0),
    )


class EventTail:
    """Reads events.jsonl as the callback appends to it, whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[Event]:
        """The events written since the last call (a line still being written waits)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        events = []
        for raw in lines:
            event = parse_event(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events
