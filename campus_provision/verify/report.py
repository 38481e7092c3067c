"""``report.html`` (the host x control matrix an auditor reads) and run comparisons.

The page is rendered from ``templates/report/`` with autoescaping on: evidence is command
output from the hosts and may hold anything, ``<script>`` included. It has no JavaScript
and fetches nothing (CSS inline, a Content-Security-Policy that forbids scripts and
external loads), so it reads the same offline, printed, or years later.

Failures come first everywhere: a Failures section at the top, failing hosts at the top
of the matrix. An expired waiver never excuses a failure: a result recorded as "waived"
whose waiver has expired is shown, and counted, as a failure.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from functools import cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from campus_provision import __version__
from campus_provision.paths import templates_dir
from campus_provision.spec.controls import Catalogue, Control, SatreStatement, load_catalogue
from campus_provision.verify.results import STATUSES, ControlResult, RunResults, Status, Waiver

MAX_EVIDENCE_CHARS = 20_000
"""Evidence longer than this is cut in the HTML (results.json keeps all of it)."""

LABELS: dict[str, str] = {
    "pass": "Pass",
    "fail": "Fail",
    "error": "Error",
    "waived": "Waived",
    "not_applicable": "Not applicable",
    "missing": "No result",
}
SHORT: dict[str, str] = {
    "pass": "PASS",
    "fail": "FAIL",
    "error": "ERROR",
    "waived": "WAIVED",
    "not_applicable": "N/A",
    "missing": "NONE",
}
# A symbol beside the word and the colour, so no reader depends on colour alone.
SYMBOLS: dict[str, str] = {
    "pass": "✓",
    "fail": "✗",
    "error": "!",
    "waived": "≈",
    "not_applicable": "–",
    "missing": "?",
}
MEANINGS: dict[str, str] = {
    "fail": "The check ran and the host does not meet the control.",
    "error": "The check could not run to a verdict (host unreachable, command failed).",
    "waived": "The host does not meet the control, under an approved waiver that has not expired.",
    "not_applicable": "The control does not apply to this host (e.g. a family switched "
    "off in the spec, or no dataset volume on it).",
    "pass": "The check ran and the host meets the control.",
}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
ATTENTION = ("fail", "error")


def effective_status(r: ControlResult) -> Status:
    """The status a report shows: an expired waiver excuses nothing, whatever was recorded."""
    if r.status == "waived" and r.waiver is not None and r.waiver.expired:
        return "fail"
    return r.status


# Terminal control codes (colour escapes, NULs) from command output: shown, not obeyed.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible_controls(text: str) -> str:
    """``text`` with control characters other than newline, tab and CR written as ``\\xNN``."""
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def anchor(host: str, control: str) -> str:
    """The HTML id of one host x control evidence block."""
    return "ev-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host}--{control}")


@dataclass(frozen=True)
class SatreRow:
    """A SATRE statement the catalogue's controls serve, with those controls."""

    id: str
    pillar: str
    capability: str
    importance: str
    summary: str  # a paraphrase of the statement, not its text
    controls: list[str]


@dataclass(frozen=True)
class ControlView:
    """A matrix column and a legend row."""

    id: str
    title: str
    family: str
    severity: str
    role: str
    rationale: str
    satre: list[SatreStatement]
    satre_none_reason: str
    known: bool  # in the catalogue
    in_run: bool = True


@dataclass(frozen=True)
class ResultView:
    """One host x control, as the page shows it."""

    host: str
    control: ControlView
    status: str  # effective status, or "missing"
    message: str
    evidence: str
    truncated: bool
    duration: float
    waiver: Waiver | None
    anchor: str
    note: str  # e.g. "waiver expired on 2026-01-31"

    @property
    def tooltip(self) -> str:
        """The cell's hover text: control, status, the one-line reason."""
        text = f"{self.host} · {self.control.id} {self.control.title}: {LABELS[self.status]}"
        if self.message:
            text += f" — {self.message}"
        if self.waiver is not None:
            text += (
                f" — waiver: {self.waiver.justification} (approved by "
                f"{self.waiver.approved_by}, expires {self.waiver.expires})"
            )
        return text


@dataclass(frozen=True)
class HostView:
    """A matrix row: a host with its cells in column order."""

    name: str
    cells: list[ResultView]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def attention(self) -> int:
        """How many of its results need attention (fail or error)."""
        return sum(self.counts.get(s, 0) for s in ATTENTION)


def _control_view(cid: str, catalogue: Catalogue, by_id: dict[str, Control]) -> ControlView:
    c = by_id.get(cid)
    if c is None:
        return ControlView(
            id=cid,
            title="(not in the control catalogue)",
            family="?",
            severity="?",
            role="?",
            rationale="",
            satre=[],
            satre_none_reason="",
            known=False,
        )
    return ControlView(
        id=c.id,
        title=c.title,
        family=c.family,
        severity=c.severity,
        role=c.role,
        rationale=c.rationale,
        satre=catalogue.statements(c),
        satre_none_reason=c.satre_none_reason or "",
        known=True,
    )


def _satre_rows(catalogue: Catalogue) -> list[SatreRow]:
    """The statements the catalogue's controls serve, by ID, each with its controls."""
    served: dict[str, list[str]] = {}
    for c in catalogue.controls:
        for ref in c.satre:
            served.setdefault(ref, []).append(c.id)
    return [
        SatreRow(s.id, s.pillar, s.capability, s.importance, s.summary, served[s.id])
        for s in sorted(catalogue.satre.statements, key=lambda s: _id_key(s.id))
        if s.id in served
    ]


def _id_key(satre_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in satre_id.split("."))


def _result_view(r: ControlResult | None, host: str, control: ControlView) -> ResultView:
    if r is None:
        return ResultView(
            host=host,
            control=control,
            status="missing",
            message="no result recorded for this host and control",
            evidence="",
            truncated=False,
            duration=0.0,
            waiver=None,
            anchor=anchor(host, control.id),
            note="",
        )
    status = effective_status(r)
    note = ""
    if r.waiver is not None and r.waiver.expired:
        note = f"waiver expired on {r.waiver.expires}"
        if r.status == "waived":
            note += "; recorded as waived, counted here as a failure"
    evidence = visible_controls(r.evidence)
    truncated = len(evidence) > MAX_EVIDENCE_CHARS
    if truncated:
        evidence = evidence[:MAX_EVIDENCE_CHARS]
    return ResultView(
        host=host,
        control=control,
        status=status,
        message=r.message,
        evidence=evidence,
        truncated=truncated,
        duration=r.duration,
        waiver=r.waiver,
        anchor=anchor(host, control.id),
        note=note,
    )


@dataclass(frozen=True)
class ReportView:
    """Everything the template needs, prepared (sorted, counted) in Python."""

    results: RunResults
    controls: list[ControlView]
    families: list[tuple[str, int]]  # (family, number of columns), in column order
    hosts: list[HostView]
    failures: list[ResultView]
    waivers: list[ResultView]
    counts: dict[str, int]
    verdict: str
    duration: str
    signer: str | None
    key_fingerprint: str | None
    created: str | None
    legend: list[ControlView]
    satre_version: str
    satre_source: str  # repository, file and commit the statements were read from
    satre_rows: list[SatreRow]


def _duration(started: str, finished: str) -> str:
    try:
        a = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
        b = dt.datetime.fromisoformat(finished.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int((b - a).total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def build_view(
    results: RunResults,
    catalogue: Catalogue | None = None,
    *,
    signer: str | None = None,
    key_fingerprint: str | None = None,
    created: str | None = None,
) -> ReportView:
    """Sort and count ``results`` for the page: failing hosts and failures first."""
    catalogue = catalogue or load_catalogue()
    cat = {c.id: c for c in catalogue.controls}
    control_ids = list(dict.fromkeys([*results.controls, *(r.control for r in results.results)]))
    controls = [_control_view(cid, catalogue, cat) for cid in control_ids]
    host_names = list(dict.fromkeys([*results.hosts, *(r.host for r in results.results)]))
    by_key = {(r.host, r.control): r for r in results.results}

    hosts = []
    for h in host_names:
        cells = [_result_view(by_key.get((h, c.id)), h, c) for c in controls]
        counts: dict[str, int] = {}
        for cell in cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        hosts.append(HostView(h, cells, counts))
    # Hosts needing attention first (most failures first), then the rest, by name.
    hosts.sort(key=lambda h: (h.attention == 0, -h.counts.get("fail", 0), -h.attention, h.name))

    cells = [cell for hv in hosts for cell in hv.cells]
    severity = {c.id: SEVERITY_ORDER.get(c.severity, 9) for c in controls}
    failures = sorted(
        (c for c in cells if c.status in ATTENTION),
        key=lambda c: (c.status != "fail", severity[c.control.id]),
    )
    waivers = [c for c in cells if c.waiver is not None]
    counts = dict.fromkeys(STATUSES, 0)
    for cell in cells:
        if cell.status in counts:
            counts[cell.status] += 1
    missing = sum(c.status == "missing" for c in cells)
    if missing:
        counts["missing"] = missing
    verdict = "FAIL" if counts["fail"] or counts["error"] or missing else "PASS"

    families: list[tuple[str, int]] = []
    for c in controls:
        if families and families[-1][0] == c.family:
            families[-1] = (c.family, families[-1][1] + 1)
        else:
            families.append((c.family, 1))
    in_run = {c.id for c in controls}
    legend = [
        replace(_control_view(c.id, catalogue, cat), in_run=c.id in in_run)
        for c in catalogue.controls
    ]
    legend += [c for c in controls if not c.known]
    return ReportView(
        results=results,
        controls=controls,
        families=families,
        hosts=hosts,
        failures=failures,
        waivers=waivers,
        counts=counts,
        verdict=verdict,
        duration=_duration(results.started, results.finished),
        signer=signer,
        key_fingerprint=key_fingerprint,
        created=created,
        legend=legend,
        satre_version=catalogue.satre.version,
        satre_source=(
            f"{catalogue.satre.repository}, {catalogue.satre.path} "
            f"at commit {catalogue.satre.commit}"
        ),
        satre_rows=_satre_rows(catalogue),
    )


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir() / "report"),
        # Everything that reaches the page from results is escaped, whatever the file name.
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(LABELS=LABELS, SHORT=SHORT, SYMBOLS=SYMBOLS, MEANINGS=MEANINGS)
    return env


def render_report(
    results: RunResults,
    catalogue: Catalogue | None = None,
    *,
    signer: str | None = None,
    key_fingerprint: str | None = None,
    created: str | None = None,
) -> str:
    """The self-contained ``report.html`` for ``results`` (no JavaScript, nothing fetched)."""
    view = build_view(
        results, catalogue, signer=signer, key_fingerprint=key_fingerprint, created=created
    )
    return (
        _environment()
        .get_template("report.html.j2")
        .render(v=view, version=__version__, statuses=[*STATUSES, "missing"])
    )


@dataclass(frozen=True)
class Change:
    """One host x control whose status differs between two runs."""

    host: str
    control: str
    old: str  # effective status, or "missing"
    new: str


@dataclass(frozen=True)
class Drift:
    """What changed from one run to another (``report diff``)."""

    changes: list[Change]
    hosts_added: list[str]
    hosts_removed: list[str]
    controls_added: list[str]
    controls_removed: list[str]

    def __bool__(self) -> bool:
        return bool(
            self.changes
            or self.hosts_added
            or self.hosts_removed
            or self.controls_added
            or self.controls_removed
        )


def diff_results(old: RunResults, new: RunResults) -> Drift:
    """Compare two runs by effective status per host x control.

    Hosts or controls present in only one run are listed as added/removed and not also
    as per-cell changes; cells of hosts and controls in both runs are compared, a cell
    absent from one run counting as "missing".
    """
    old_hosts = set(old.hosts) | {r.host for r in old.results}
    new_hosts = set(new.hosts) | {r.host for r in new.results}
    old_controls = set(old.controls) | {r.control for r in old.results}
    new_controls = set(new.controls) | {r.control for r in new.results}
    before = {(r.host, r.control): effective_status(r) for r in old.results}
    after = {(r.host, r.control): effective_status(r) for r in new.results}
    new_order = {h: i for i, h in enumerate(new.hosts)}
    control_order = {c: i for i, c in enumerate(new.controls)}
    changes = [
        Change(h, c, before.get((h, c), "missing"), after.get((h, c), "missing"))
        for h in sorted(old_hosts & new_hosts, key=lambda h: (new_order.get(h, 1 << 30), h))
        for c in sorted(
            old_controls & new_controls, key=lambda c: (control_order.get(c, 1 << 30), c)
        )
        if before.get((h, c), "missing") != after.get((h, c), "missing")
    ]
    return Drift(
        changes=changes,
        hosts_added=sorted(new_hosts - old_hosts),
        hosts_removed=sorted(old_hosts - new_hosts),
        controls_added=sorted(new_controls - old_controls),
        controls_removed=sorted(old_controls - new_controls),
    )
