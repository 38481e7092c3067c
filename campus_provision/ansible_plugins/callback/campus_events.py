"""campus_events: a provisioning run's plays, tasks and host results as JSON lines.

Ansible loads this file from the ``callback_plugins`` directory that the generated
ansible.cfg names; campus-provision never imports it, so it imports nothing from the
package (only the standard library and Ansible). Each event is one JSON object on one
line of ``$CAMPUS_EVENTS_FILE``, flushed as it is written, so the runner can show
progress while ansible-playbook runs. Before the recap, each play that never started
(Ansible ends a playbook when a play fails on every host) is named with the hosts it
would have run on, so the runner can run it. At the end it writes every task's duration
per host to ``$CAMPUS_TIMINGS_FILE``, slowest first: ansible-core has no
``profile_tasks`` (that lives in ansible.posix, which the air-gapped controller does not
carry).

A result of a ``no_log`` task is never written: its event has no data from the result,
and a failure's message is "output hidden (no_log)". Results of other tasks contribute one
line of their failure message (``msg``, else the last line of stderr), nothing else.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-untyped]

DOCUMENTATION = """
name: campus_events
type: aggregate
short_description: write a run's events as JSON lines for campus-provision
description:
  - Writes plays, task starts, per-host results, the plays that never started and the
    final stats to the file named by the CAMPUS_EVENTS_FILE environment variable, one
    JSON object per line, and per-task durations to CAMPUS_TIMINGS_FILE. Does nothing
    when CAMPUS_EVENTS_FILE is not set.
  - Results of no_log tasks are never written.
requirements:
  - enable in configuration (callbacks_enabled = campus_events)
"""

EVENTS_ENV = "CAMPUS_EVENTS_FILE"
TIMINGS_ENV = "CAMPUS_TIMINGS_FILE"
NO_LOG_MESSAGE = "output hidden (no_log)"
MAX_MESSAGE = 300
# Keys of a result that say nothing about why it failed (the repr fallback leaves them out).
_NOISE = frozenset({"changed", "failed", "invocation", "skipped", "unreachable", "warnings"})


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` with all whitespace runs as one space, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _last_line(value: object) -> str:
    lines = [ln for ln in str(value or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def failure_message(result: Mapping[str, Any], no_log: bool = False) -> str:
    """Why a task failed, in one line; "output hidden (no_log)" for a no_log result.

    For a loop, the first failed item's message (the task's own is only "One or more
    items failed"). Otherwise ``msg`` (with the last line of stderr when a command or
    module exited non-zero), else the last line of stderr, else a short repr of the
    result's public keys.
    """
    if no_log or result.get("_ansible_no_log") or "censored" in result:
        return NO_LOG_MESSAGE
    items = result.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
                return failure_message(item)
    text = str(result.get("msg") or "").strip()
    stderr = _last_line(result.get("stderr")) or _last_line(result.get("module_stderr"))
    if not text:
        text = stderr
    elif stderr and stderr not in text and (result.get("rc") or "module_stderr" in result):
        # "non-zero return code" or "MODULE FAILURE" alone does not say what went wrong.
        text = f"{text}: {stderr}"
    if not text:
        public = {k: v for k, v in result.items() if not k.startswith("_") and k not in _NOISE}
        text = repr(public) if public else "failed without a message"
    return one_line(text)


def _task_no_log(task: Any) -> bool:
    # Before templating, no_log may still be an expression; Ansible then censors by the
    # result's _ansible_no_log, which failure_message checks as well.
    value = getattr(task, "no_log", None)
    return isinstance(value, bool) and value


def _task_name(task: Any) -> str:
    return str(task.get_name()).strip() or str(getattr(task, "action", "")) or "(unnamed)"


def _task_key(task: Any) -> str:
    # One task object per task in the playbook; its uuid tells apart same-named tasks.
    return str(getattr(task, "_uuid", "") or id(task))


class CallbackModule(CallbackBase):  # type: ignore[misc]  # CallbackBase is untyped
    """Write events to ``$CAMPUS_EVENTS_FILE`` and timings to ``$CAMPUS_TIMINGS_FILE``."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "campus_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display: Any = None, options: Any = None) -> None:
        super().__init__(display=display, options=options)
        events = os.environ.get(EVENTS_ENV)
        self._out: IO[str] | None = None
        self._timings: Path | None = None
        if events:
            self._out = Path(events).open("a", encoding="utf-8")  # noqa: SIM115  # closed in stats
            self._timings = Path(
                os.environ.get(TIMINGS_ENV) or Path(events).with_name("timings.json")
            )
        self._started: dict[tuple[str, str], float] = {}
        # Hosts out of the run (Ansible leaves them out of later plays), and the last
        # result of each host in the current play: a failure followed by more results
        # was rescued, so only a failure or unreachable as the last result counts.
        self._dropped: set[str] = set()
        self._last: dict[str, str] = {}
        # The playbook's plays in order and how far the run got: Ansible ends the whole
        # playbook when a play fails on every host, and the plays after it never start.
        self._plays: list[Any] = []
        self._reached = -1
        self._inventory: Any = None
        # task key -> {"task", "path", "first", "last", "hosts": {host: seconds}}
        self._tasks: dict[str, dict[str, Any]] = {}

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._out is None:
            return
        record = {"kind": kind, "time": round(time.time(), 3)}
        record.update({k: v for k, v in fields.items() if v is not None})
        self._out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._out.flush()

    def _duration(self, host: str, task: Any) -> float | None:
        """Seconds since ``task`` started on ``host``; records it for timings.json."""
        key = _task_key(task)
        start = self._started.pop((key, host), None)
        if start is None:
            return None
        now = time.monotonic()
        entry = self._tasks.setdefault(
            key,
            {"task": _task_name(task), "path": task.get_path() or None, "first": start,
             "last": now, "hosts": {}},
        )  # fmt: skip
        entry["first"] = min(entry["first"], start)
        entry["last"] = max(entry["last"], now)
        entry["hosts"][host] = round(now - start, 3)
        return round(now - start, 3)

    def _result(self, kind: str, result: Any, msg: str | None = None) -> None:
        host = result.host.get_name()
        self._last[host] = kind
        self._emit(
            kind,
            host=host,
            task=_task_name(result.task),
            msg=msg,
            seconds=self._duration(host, result.task),
        )

    def v2_playbook_on_start(self, playbook: Any) -> None:
        """The playbook is loaded: remember its plays (imported ones included), in order."""
        self._plays = list(playbook.get_plays())
        self._reached = -1

    def _drop_failed(self) -> None:
        self._dropped.update(
            h for h, kind in self._last.items() if kind in ("failed", "unreachable")
        )
        self._last = {}

    def v2_playbook_on_play_start(self, play: Any) -> None:
        """A play begins: its name and how many hosts it runs on.

        Those its pattern matches after ``--limit`` (and ``serial``), less the hosts that
        failed or were unreachable in an earlier play.
        """
        self._drop_failed()
        # Ansible starts a copy of the play (once per serial batch); the copy keeps the uuid.
        uuid = getattr(play, "_uuid", None)
        for index, known in enumerate(self._plays):
            if uuid is not None and getattr(known, "_uuid", None) == uuid:
                self._reached = max(self._reached, index)
        try:
            # The callback API does not hand the inventory over; the play's variable
            # manager holds it. Without it the progress display shows no total.
            self._inventory = play._variable_manager._inventory
            matched = self._inventory.get_hosts(play.hosts)
            hosts: int | None = sum(1 for h in matched if h.get_name() not in self._dropped)
        except Exception:  # a private path; never fail a run over a count
            hosts = None
        self._emit("play", play=str(play.get_name()).strip(), hosts=hosts)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        """A task begins on the play's hosts."""
        self._emit("task", task=_task_name(task))

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        """A handler begins on the hosts that notified it."""
        self._emit("task", task=_task_name(task), handler=True)

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        """A task begins on one host (the start of its duration)."""
        self._started[(_task_key(task), host.get_name())] = time.monotonic()

    def v2_runner_on_ok(self, result: Any) -> None:
        """A host's task succeeded, changed or not."""
        self._result("changed" if result.result.get("changed") else "ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        """A host's task failed (``ignored`` when the task has ``ignore_errors``)."""
        msg = failure_message(result.result, _task_no_log(result.task))
        self._result("ignored" if ignore_errors else "failed", result, msg)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        """A host could not be reached; Ansible drops it from the rest of the run."""
        self._result(
            "unreachable", result, failure_message(result.result, _task_no_log(result.task))
        )

    def v2_runner_on_skipped(self, result: Any) -> None:
        """A host skipped a task (its condition was false, or check mode)."""
        self._result("skipped", result)

    def v2_playbook_on_no_hosts_matched(self) -> None:
        """The play's host pattern (with ``--limit``) matched no host."""
        self._emit("no_hosts")

    def _not_run(self) -> None:
        """One "not_run" event per play that never started, with the hosts it targets.

        Its hosts are those its pattern matches within ``--limit``, less the hosts that
        failed or were unreachable (Ansible would have left those out anyway); ``targets``
        is left out when they cannot be known (a templated pattern, no inventory yet).
        """
        self._drop_failed()
        for play in self._plays[self._reached + 1 :]:
            targets: list[str] | None = None
            pattern = getattr(play, "hosts", None)
            if self._inventory is not None and pattern and "{{" not in str(pattern):
                try:
                    matched = self._inventory.get_hosts(pattern, ignore_restrictions=True)
                    targets = sorted(
                        h.get_name() for h in matched if h.get_name() not in self._dropped
                    )
                except Exception:  # a private path; never fail a run over it
                    targets = None
            self._emit("not_run", play=str(play.get_name()).strip(), targets=targets)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        """The run ended: plays never started, Ansible's recap per host, timings.json."""
        if self._reached >= 0:  # a run that started no play reports no skipped plays
            self._not_run()
        for host in sorted(stats.processed):
            counts = stats.summarize(host)
            self._emit("stats", host=host, counts={k: int(v) for k, v in counts.items()})
        self._write_timings()
        if self._out is not None:
            self._out.close()
            self._out = None

    def _write_timings(self) -> None:
        if self._timings is None:
            return
        rows = [
            {"task": e["task"], "path": e["path"], "seconds": round(e["last"] - e["first"], 3),
             "hosts": dict(sorted(e["hosts"].items(), key=lambda kv: -kv[1]))}
            for e in self._tasks.values()
        ]  # fmt: skip
        rows.sort(key=lambda r: -r["seconds"])
        tmp = self._timings.with_name(f".{self._timings.name}.tmp")
        tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self._timings)
