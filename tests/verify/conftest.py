"""Fixtures for the evidence and report tests: a run with every status, a key, evidence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campus_provision.verify.evidence import write_evidence
from campus_provision.verify.results import ControlResult, RunResults, Waiver

SCRIPT = "<script>alert(1)</script>"
CLEAN_HOST = "gp-a01"  # sorts first by name, so "failures first" is visible in the order
FAILING_HOST = "sgm-b02"
CONTROLS = ["CP-NET-01", "CP-NET-02", "CP-PKG-01", "CP-VOL-01", "CP-USB-01", "CP-AUD-01"]
SIGNER = "Seoul Big Data Campus compliance office"
CREATED = dt.datetime(2026, 11, 26, 12, 0, 5, tzinfo=dt.UTC)


def _ok(host: str, control: str) -> ControlResult:
    return ControlResult(
        host=host,
        control=control,
        status="pass",
        message="meets the control",
        evidence=f"$ check {control}\nok",
        duration=0.25,
    )


def make_results() -> RunResults:
    """2 hosts x 6 controls: pass, fail, error, waived, expired waiver, not applicable."""
    results = [_ok(CLEAN_HOST, c) for c in CONTROLS if c not in ("CP-USB-01", "CP-AUD-01")]
    results += [
        ControlResult(
            host=CLEAN_HOST,
            control="CP-USB-01",
            status="waived",
            message="usb-storage loads (a scanner needs it)",
            evidence="$ modprobe -n -v usb-storage\ninsmod /lib/modules/usb-storage.ko",
            duration=0.1,
            waiver=Waiver(
                justification="The room's document scanner needs usb-storage until replaced.",
                expires="2099-12-31",
                approved_by="Kim Minji (CISO)",
                expired=False,
                ticket="SEC-1234",
            ),
        ),
        ControlResult(
            host=CLEAN_HOST,
            control="CP-AUD-01",
            status="not_applicable",
            message="no dataset volume on this host",
            evidence="",
            duration=0.0,
        ),
        ControlResult(
            host=FAILING_HOST,
            control="CP-NET-01",
            status="fail",
            message="outbound policy is accept",
            evidence=f"$ nft list chain inet filter output\n  policy accept; {SCRIPT}\n\x1b[31mred\x1b[0m",
            duration=0.5,
        ),
        _ok(FAILING_HOST, "CP-NET-02"),
        ControlResult(
            host=FAILING_HOST,
            control="CP-PKG-01",
            status="error",
            message="apt-get indextargets failed: exit 100",
            evidence="$ apt-get indextargets\nE: could not open lock file",
            duration=1.5,
        ),
        _ok(FAILING_HOST, "CP-VOL-01"),
        ControlResult(
            host=FAILING_HOST,
            control="CP-USB-01",
            status="fail",
            message="usb-storage is not blocked",
            evidence="$ modprobe -n -v usb-storage\ninsmod usb-storage.ko",
            duration=0.1,
            waiver=Waiver(
                justification="Temporary exception for the migration of the room's scanners.",
                expires="2026-01-31",
                approved_by="Lee Jisoo (security officer)",
                expired=True,
            ),
        ),
        _ok(FAILING_HOST, "CP-AUD-01"),
    ]
    return RunResults(
        campus="Seoul Big Data Campus",
        spec_sha256="ab" * 32,
        started="2026-11-26T11:58:00Z",
        finished="2026-11-26T12:00:00Z",
        tool_versions={"campus-provision": "0.1.0", "pytest": "9.2.0", "ansible-core": "2.19.4"},
        hosts=[CLEAN_HOST, FAILING_HOST],
        controls=CONTROLS,
        results=results,
    )


@pytest.fixture
def run_results() -> RunResults:
    return make_results()


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def evidence_dir(tmp_path: Path, run_results: RunResults, signing_key: Ed25519PrivateKey) -> Path:
    """A signed evidence directory for ``run_results`` (JUnit generated)."""
    return write_evidence(
        tmp_path / "evidence" / "20261126T120000Z",
        run_results,
        None,
        signing_key,
        SIGNER,
        created=CREATED,
    )
