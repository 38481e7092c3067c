"""The outcome of one verification run: host × control → status, with its evidence.

This is what ``results.json`` holds and what the HTML report, the signed manifest and
``report diff`` are built from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "waived", "not_applicable", "error"]
STATUSES: tuple[Status, ...] = ("fail", "error", "waived", "not_applicable", "pass")
"""In the order a report lists them: what needs attention first."""

SCHEMA = "campus-provision/results/v1"


@dataclass(frozen=True)
class Waiver:
    """The waiver that applied to a result (or would have, had it not expired)."""

    justification: str
    expires: str  # ISO date
    approved_by: str
    expired: bool
    ticket: str | None = None


@dataclass(frozen=True)
class ControlResult:
    """One control on one host."""

    host: str
    control: str
    status: Status
    message: str  # one line: why it passed or failed
    evidence: str  # the command(s) run and an excerpt of their output
    duration: float  # seconds
    waiver: Waiver | None = None


@dataclass(frozen=True)
class RunResults:
    """A whole run: which campus, which spec (by hash), when, with what, and the results."""

    campus: str
    spec_sha256: str
    started: str  # ISO 8601, UTC
    finished: str
    tool_versions: dict[str, str]
    hosts: list[str]
    controls: list[str]
    results: list[ControlResult]
    mode: Literal["verify", "audit"] = "verify"
    schema: str = SCHEMA
    notes: list[str] = field(default_factory=list)

    def missing(self) -> list[tuple[str, str]]:
        """The (host, control) cells of this run that have no result, in run order.

        A run is complete only when every selected control has a result on every selected
        host: a crashed pytest worker or a lost report leaves a cell empty, and an empty
        cell proves nothing.
        """
        seen = {(r.host, r.control) for r in self.results}
        return [(h, c) for h in self.hosts for c in self.controls if (h, c) not in seen]

    def passed(self) -> bool:
        """True when the run is complete and every result passed, was waived, or does not apply."""
        return not self.missing() and all(
            r.status in ("pass", "waived", "not_applicable") for r in self.results
        )

    def counts(self) -> dict[str, int]:
        """How many results have each status."""
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            out[r.status] += 1
        return out

    def to_json(self) -> str:
        """Stable, sorted JSON (the bytes that get hashed and signed)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunResults:
        """Read ``results.json`` back."""
        data: dict[str, Any] = json.loads(text)
        results = []
        for r in data.pop("results"):
            waiver = r.pop("waiver", None)
            results.append(ControlResult(**r, waiver=Waiver(**waiver) if waiver else None))
        return cls(**data, results=results)
