"""verify is complete or it fails: every (host, control) of a run has a result.

The end-to-end tests run the real runner (pytest, xdist workers, testinfra's ansible
backend) on this machine through a local connection, with checks that crash a worker or
report nothing, and see the missing cells named as errors everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campus_provision.spec import load_spec
from campus_provision.verify.evidence import write_evidence
from campus_provision.verify.results import ControlResult, RunResults
from campus_provision.verify.runner import NO_RESULT, Target, complete_results, run_checks
from tests.conftest import EXAMPLE

CAMPUS = load_spec(EXAMPLE)
HOSTS = ["sgm-a01", "sgm-a02"]
CONTROLS = ["CP-NET-01", "CP-PRN-01", "CP-USB-02"]


def ok(host: str, control: str, status: str = "pass") -> ControlResult:
    return ControlResult(host, control, status, "seen", "$ probe", 0.1)  # type: ignore[arg-type]


def test_a_cell_without_a_result_becomes_an_error_naming_it() -> None:
    out = complete_results(HOSTS, CONTROLS, [ok(h, c) for h in HOSTS for c in CONTROLS[:2]])
    assert len(out) == 6
    missing = [(r.host, r.control) for r in out if r.status == "error"]
    assert missing == [("sgm-a01", "CP-USB-02"), ("sgm-a02", "CP-USB-02")]
    assert all(r.message == NO_RESULT for r in out if r.status == "error")


def test_a_cell_reported_twice_keeps_its_worst_result_and_strays_are_dropped() -> None:
    results = [ok(h, c) for h in HOSTS for c in CONTROLS]
    results += [ok("sgm-a01", "CP-NET-01", "fail"), ok("gp-a01", "CP-NET-01"), ok("", "CP-PRN-01")]
    out = complete_results(HOSTS, CONTROLS, results)
    assert len(out) == 6
    assert {(r.host, r.control): r.status for r in out}[("sgm-a01", "CP-NET-01")] == "fail"


def test_a_run_with_an_empty_cell_has_not_passed() -> None:
    results = [ok(h, c) for h in HOSTS for c in CONTROLS if (h, c) != ("sgm-a02", "CP-PRN-01")]
    run = RunResults("c", "0" * 64, "t0", "t1", {}, HOSTS, CONTROLS, results)
    assert run.missing() == [("sgm-a02", "CP-PRN-01")]
    assert not run.passed()
    whole = RunResults(
        "c", "0" * 64, "t0", "t1", {}, HOSTS, CONTROLS, [*results, ok("sgm-a02", "CP-PRN-01")]
    )
    assert whole.missing() == [] and whole.passed()


CHECKS = """
import os
from campus_provision.checks.conftest import Evidence

def test_CP_NET_01_reports(host, evidence: Evidence) -> None:
    assert evidence.run("true").rc == 0

def test_CP_PRN_01_kills_its_worker(host, evidence: Evidence) -> None:
    evidence.run("true")
    os._exit(3)  # a worker that dies mid-check: xdist reports a crash, never our record
"""


@pytest.fixture
def local_target(tmp_path: Path) -> Target:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "conftest.py").write_text('pytest_plugins = ["campus_provision.checks.conftest"]\n')
    (checks / "test_some.py").write_text(CHECKS)
    inventory = tmp_path / "hosts.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    inventory.write_text(json.dumps({"all": {"hosts": dict.fromkeys(HOSTS, local)}}))
    return Target(
        inventory=inventory,
        campus=CAMPUS,
        spec_sha256="0" * 64,
        limit=",".join(HOSTS),
        controls=tuple(CONTROLS),
        workers=2,
        checks_dir=checks,
    )


@pytest.mark.slow
def test_a_crashed_worker_and_a_check_that_never_ran_fail_the_run(
    local_target: Target, tmp_path: Path
) -> None:
    run = run_checks(local_target, tmp_path / "junit.xml")
    cells = {(r.host, r.control): r for r in run.results}
    assert len(cells) == len(HOSTS) * len(CONTROLS) == len(run.results)
    for host in HOSTS:
        assert cells[(host, "CP-NET-01")].status == "pass"
        # killed mid-check, and a control with no check at all: neither may read as a pass
        for control in ("CP-PRN-01", "CP-USB-02"):
            assert cells[(host, control)].status == "error", cells[(host, control)]
            assert cells[(host, control)].message == NO_RESULT
    assert not run.passed()

    # The evidence says the same: results.json, junit.xml and report.html.
    out = write_evidence(tmp_path / "ev", run, None, Ed25519PrivateKey.generate(), "auditor")
    back = RunResults.from_json((out / "results.json").read_text())
    assert sum(r.status == "error" for r in back.results) == 4
    junit = (out / "junit.xml").read_text()
    assert junit.count("<error ") == 4 and "CP-USB-02[sgm-a02]" in junit
    html = (out / "report.html").read_text()
    assert "FAIL" in html and "no result: the check never reported" in html
