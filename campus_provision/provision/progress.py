"""A run's progress as plain lines, for output that is a log (a pipe, ``tee``, CI).

A terminal gets a live display that redraws itself; a log cannot, so it gets lines that
read well one after another and later: each play as it starts with its host count, each
failure at once (host, task, message: the message is the callback's one line, never the
module's arguments), each host's counts when the play ends, a line at most once a minute
while a long play runs, and a line when the runner starts the plays Ansible never
started.
"""

from __future__ import annotations

from dataclasses import dataclass

from campus_provision.provision.events import RESULT_KINDS, Event

HEARTBEAT_SECONDS = 60.0


def duration(seconds: float) -> str:
    """``4.2s``, ``3m07s`` or ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


def failure_line(event: Event) -> str:
    """``FAILED host: task: message`` (or ``UNREACHABLE ...``) for a failure event."""
    label = "FAILED" if event.kind == "failed" else "UNREACHABLE"
    return f"{label} {event.host}: {event.task or ''}: {event.msg or ''}"


def resume_line(event: Event) -> str:
    """What a "resume" event means, in one line."""
    play = f"the play '{event.play}'" if event.play else "a play"
    return (
        f"Ansible stopped: {play} failed on every host; running the plays it never "
        f"started, on the {_hosts(len(event.targets or ()))} they target"
    )


def empty_plays_line(plays: tuple[str, ...], limit: str | None) -> str:
    """Which plays matched no host, as information (one line for all of them)."""
    where = f"--limit {limit}" if limit else "the inventory"
    return f"plays with no host in {where}: {', '.join(plays)}"


@dataclass
class _Tally:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, event: Event) -> None:
        if event.kind in ("ok", "changed", "ignored"):
            self.ok += 1  # as in Ansible's recap, ok counts the changed tasks too
        self.changed += event.kind == "changed"
        self.failed += event.kind == "failed"
        self.unreachable += event.kind == "unreachable"
        start = event.time - (event.seconds or 0.0)
        self.first = start if self.first is None else min(self.first, start)
        self.last = event.time if self.last is None else max(self.last, event.time)

    def line(self, host: str) -> str:
        took = (self.last or 0.0) - (self.first or 0.0)
        return (
            f"  {host}: ok {self.ok}, changed {self.changed}, failed {self.failed}, "
            f"unreachable {self.unreachable} ({duration(took)})"
        )


class ProgressLines:
    """Turns events into lines; ``feed`` each event, then ``close`` at the end."""

    def __init__(self, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.heartbeat = heartbeat
        self.play: str | None = None
        self.play_hosts: int | None = None
        self.started = 0.0
        self.said: float | None = None  # when the last line was written (events' clock)
        self.hosts: dict[str, _Tally] = {}
        self.out: set[str] = set()

    def _end_play(self) -> list[str]:
        lines = [self.hosts[h].line(h) for h in sorted(self.hosts)]
        self.play, self.hosts, self.out = None, {}, set()
        return lines

    def feed(self, event: Event) -> list[str]:
        """The lines ``event`` adds to the log (often none)."""
        lines: list[str] = []
        if event.kind == "play":
            lines += self._end_play()
            if event.hosts != 0:  # plays with no host are named once, at the end
                self.play, self.play_hosts, self.started = event.play or "", event.hosts, event.time
                count = "" if event.hosts is None else f": {_hosts(event.hosts)}"
                lines.append(f"play '{self.play}'{count}")
        elif event.kind in RESULT_KINDS and event.host is not None and self.play is not None:
            self.hosts.setdefault(event.host, _Tally()).add(event)
            if event.kind in ("failed", "unreachable"):
                self.out.add(event.host)
                lines.append(failure_line(event))
        elif event.kind == "task" and self.play is not None:
            if self.said is not None and event.time - self.said >= self.heartbeat:
                left = ""
                if self.play_hosts is not None:
                    left = f", {_hosts(self.play_hosts - len(self.out))} still in it"
                lines.append(
                    f"  ... {duration(event.time - self.started)} into play '{self.play}'"
                    f"{left}; now at task '{event.task or ''}'"
                )
        elif event.kind == "resume":
            lines += self._end_play()
            lines.append(resume_line(event))
        elif event.kind == "stats":
            lines += self._end_play()
        if lines or self.said is None:
            self.said = event.time
        return lines

    def close(self) -> list[str]:
        """The lines of a play the run ended in without a recap (stopped, interrupted)."""
        return self._end_play()
