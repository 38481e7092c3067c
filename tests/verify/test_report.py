"""report.html: escaped, script-free, self-contained, failures first; and how it looks."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.report import (
    MAX_EVIDENCE_CHARS,
    build_view,
    diff_results,
    render_report,
)
from campus_provision.verify.results import ControlResult, RunResults, Waiver
from tests.verify.conftest import CLEAN_HOST, FAILING_HOST, SCRIPT, make_results

CHROMIUM_TIMEOUT = 90  # seconds; a cold start on a loaded CI machine takes a few


class Page(HTMLParser):
    """The parts of a page the tests look at: tags, ids, links, and text per element id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name == "href" and value:
                self.links.append(value)


@pytest.fixture
def html(run_results: RunResults) -> str:
    return render_report(
        run_results, signer="Compliance office", key_fingerprint="0123456789abcdef"
    )


def test_evidence_is_escaped_never_raw(html: str) -> None:
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


def test_no_javascript_and_nothing_fetched(html: str) -> None:
    page = Page(html)
    assert "script" not in page.tags
    assert not [name for name, _ in page.attrs if name.startswith("on")]  # no onclick=…
    for tag in ("link", "img", "iframe", "object", "embed"):
        assert tag not in page.tags
    assert all(link.startswith("#") for link in page.links), page.links
    assert not re.search(r"url\(|@import|https?://", html)
    assert "default-src 'none'" in html  # and a CSP that would stop them anyway


def test_every_cell_links_to_an_evidence_block_that_exists(
    html: str, run_results: RunResults
) -> None:
    page = Page(html)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    targets = {link[1:] for link in page.links}
    assert targets <= set(page.ids), targets - set(page.ids)
    cells = {t for t in targets if t.startswith("ev-")}
    assert len(cells) == len(run_results.hosts) * len(run_results.controls)


def test_failures_first(html: str) -> None:
    # The Failures section comes before the matrix, and the failing host before the clean
    # one in the matrix, although its name sorts after it.
    assert html.index('id="failures"') < html.index('id="matrix"')
    matrix = html[html.index('id="matrix"') : html.index('id="evidence"')]
    assert matrix.index(FAILING_HOST) < matrix.index(CLEAN_HOST)
    failures = html[html.index('id="failures"') : html.index('id="matrix"')]
    assert failures.index("CP-NET-01") < failures.index("CP-PKG-01")  # fail before error
    assert CLEAN_HOST not in failures
    view = build_view(make_results())
    assert [h.name for h in view.hosts] == [FAILING_HOST, CLEAN_HOST]
    assert [(f.control.id, f.status) for f in view.failures] == [
        ("CP-NET-01", "fail"),
        ("CP-USB-01", "fail"),
        ("CP-PKG-01", "error"),
    ]


def test_header_has_campus_run_spec_tools_verdict_and_counts(html: str) -> None:
    for text in (
        "Seoul Big Data Campus",
        "2026-11-26T11:58:00Z",
        "ab" * 32,
        "ansible-core 2.19.4",
        "pytest 9.2.0",
        "✗ FAIL",
        "Compliance office",
        "0123456789abcdef",
    ):
        assert text in html, text
    counts = html[html.index('class="counts"') : html.index("</ul>", html.index('class="counts"'))]
    text = " ".join(re.sub(r"<[^>]+>", " ", counts).split())
    assert "✗ Fail 2" in text and "! Error 1" in text and "≈ Waived 1" in text
    assert "– Not applicable 1" in text and "✓ Pass 7" in text


def test_status_is_text_as_well_as_colour(html: str) -> None:
    for word in ("FAIL", "ERROR", "WAIVED", "N/A", "PASS"):
        assert re.search(
            rf'class="cell s-[a-z_]+"><a [^>]*><span class="sym">.</span> {word}', html
        )


def test_waivers_show_justification_approver_and_expiry(html: str) -> None:
    for text in (
        "The room&#39;s document scanner needs usb-storage until replaced.",
        "Kim Minji (CISO)",
        "2099-12-31",
        "SEC-1234",
    ):
        assert text in html, text


def test_an_expired_waiver_is_a_failure_that_says_so(html: str) -> None:
    assert "waiver expired on 2026-01-31" in html
    assert "expired: it no longer excuses this failure" in html
    assert "Lee Jisoo (security officer)" in html


def test_a_result_recorded_as_waived_under_an_expired_waiver_counts_as_failed() -> None:
    base = make_results()
    stale = ControlResult(
        host=CLEAN_HOST,
        control="CP-AUD-01",
        status="waived",
        message="auditd is not running",
        evidence="",
        duration=0.0,
        waiver=Waiver("A long enough justification text.", "2020-01-01", "someone", True),
    )
    results = [r for r in base.results if (r.host, r.control) != (CLEAN_HOST, "CP-AUD-01")]
    run = RunResults(**{**base.__dict__, "results": [*results, stale]})
    view = build_view(run)
    (cell,) = [f for f in view.failures if f.host == CLEAN_HOST]
    assert cell.status == "fail"
    assert "recorded as waived, counted here as a failure" in cell.note
    assert view.counts["fail"] == 3


def test_controls_legend_comes_from_the_catalogue(html: str) -> None:
    legend = html[html.index('id="controls"') :]
    for control in load_catalogue().controls:
        assert f'id="control-{control.id}"' in legend
        assert control.title.replace("'", "&#39;") in legend
    assert "CRITICAL" in legend.upper() and "Raw data must never leave the room" in legend
    assert "(not checked in this run)" in legend  # CP-NET-03 is not in the fixture's run


def _text(fragment: str) -> str:
    """The words of an HTML fragment, tags dropped, as a reader sees them."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split()).replace(" ,", ",")


def test_controls_legend_shows_the_satre_statements_each_control_serves(html: str) -> None:
    catalogue = load_catalogue()
    legend = html[html.index('id="controls"') :]
    rows = dict(re.findall(r'<tr id="control-([A-Z0-9-]+)"[^>]*>(.*?)</tr>', legend, re.S))
    assert "SATRE 2.2.11, 3.1.12" in _text(rows["CP-NET-01"])
    for control in catalogue.controls:
        text = _text(rows[control.id])
        if control.satre:
            assert f"SATRE {', '.join(control.satre)}" in text, (control.id, text)
        else:
            assert "SATRE: none." in text and "time synchronisation" in _text(rows["CP-TIME-01"])
    # Each reference links to its statement's row: importance, paraphrase, the controls.
    statements = legend[legend.index('id="satre"') :]
    assert f"SATRE v{catalogue.satre.version} statements" in statements
    assert f"github.com/sa-tre/satre-specification, {catalogue.satre.path}" in statements
    assert catalogue.satre.commit in statements
    for statement in catalogue.satre.statements:
        row = statements[statements.index(f'<tr id="satre-{statement.id}">') :]
        row = _text(row[: row.index("</tr>")])
        assert statement.importance in row and statement.summary in row.replace("&#39;", "'")
    assert 'href="#satre-2.2.11"' in rows["CP-NET-01"]
    assert 'href="#control-CP-NET-01"' in statements


def test_control_characters_are_shown_not_obeyed(html: str) -> None:
    assert "\x1b" not in html
    assert "\\x1b[31mred\\x1b[0m" in html


def test_long_evidence_is_cut_in_the_page_only(run_results: RunResults) -> None:
    long = ControlResult(
        host=CLEAN_HOST,
        control="CP-AUD-01",
        status="pass",
        message="ok",
        evidence="y\n" * MAX_EVIDENCE_CHARS,
        duration=0.0,
    )
    results = [r for r in run_results.results if (r.host, r.control) != (CLEAN_HOST, "CP-AUD-01")]
    html = render_report(RunResults(**{**run_results.__dict__, "results": [*results, long]}))
    assert "results.json holds the whole text" in html
    assert "not signed (a preview)" in html


def test_a_missing_result_is_shown_and_fails_the_verdict(run_results: RunResults) -> None:
    results = [r for r in run_results.results if (r.host, r.control) != (CLEAN_HOST, "CP-NET-01")]
    view = build_view(RunResults(**{**run_results.__dict__, "results": results}))
    assert view.counts["missing"] == 1
    assert view.verdict == "FAIL"


def test_a_clean_run_passes_and_says_no_failures() -> None:
    base = make_results()
    clean = [r for r in base.results if r.host == CLEAN_HOST]
    run = RunResults(**{**base.__dict__, "hosts": [CLEAN_HOST], "results": clean})
    html = render_report(run)
    assert "✓ PASS" in html
    assert "No failures and no errors" in html


def test_diff_results_compares_effective_status() -> None:
    old = make_results()
    results = [
        ControlResult(**{**r.__dict__, "status": "fail"})
        if (r.host, r.control) == (CLEAN_HOST, "CP-NET-01")
        else r
        for r in old.results
    ]
    drift = diff_results(old, RunResults(**{**old.__dict__, "results": results}))
    assert [(c.host, c.control, c.old, c.new) for c in drift.changes] == [
        (CLEAN_HOST, "CP-NET-01", "pass", "fail")
    ]
    assert not diff_results(old, make_results())


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.fail("chromium is not installed, so report.html cannot be rendered: run make lab-deps")


def _screenshot(page: Path, png: Path, profile: Path, size: tuple[int, int]) -> None:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # root in a container: the sandbox needs user namespaces
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size[0]},{size[1]}",
        page.as_uri(),
    ]
    # Its own session, so that on a timeout every helper process chromium forked goes too.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        _, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish the screenshot in {CHROMIUM_TIMEOUT} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers left behind by a finished run
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]


def test_missing_chromium_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="run make lab-deps"):
        _chromium()


def test_screenshot_of_the_report(tmp_path: Path, evidence_dir: Path) -> None:
    png = tmp_path / "report.png"
    _screenshot(evidence_dir / "report.html", png, tmp_path / "profile", (1400, 1000))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 1000)
    # A blank or unstyled page compresses to a few KB; the rendered matrix is far bigger.
    assert len(data) > 10_000, len(data)
