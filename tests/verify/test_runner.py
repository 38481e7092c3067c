"""The runner's pure parts: waivers (and their expiry), host selection, control selection."""

from __future__ import annotations

import datetime as dt

import pytest

from campus_provision.errors import VerifyError
from campus_provision.spec import load_spec
from campus_provision.verify.results import ControlResult
from campus_provision.verify.runner import _control_ids, _hosts_for, apply_waivers
from tests.conftest import EXAMPLE

CAMPUS = load_spec(EXAMPLE)  # waiver: CP-PRN-01 on sgm-out01 until 2027-06-30


def result(host: str, control: str, status: str = "fail") -> ControlResult:
    return ControlResult(
        host, control, status, "cups.service is active, enabled", "$ systemctl ...", 0.1
    )  # type: ignore[arg-type]


def test_live_waiver_turns_a_failure_into_waived() -> None:
    [r] = apply_waivers(CAMPUS, [result("sgm-out01", "CP-PRN-01")], dt.date(2026, 11, 26))
    assert r.status == "waived"
    assert r.waiver is not None and not r.waiver.expired
    assert r.waiver.approved_by == "Head of data governance"
    assert r.waiver.expires == "2027-06-30"


def test_expired_waiver_excuses_nothing_and_says_so() -> None:
    [r] = apply_waivers(CAMPUS, [result("sgm-out01", "CP-PRN-01")], dt.date(2027, 7, 1))
    assert r.status == "fail"
    assert r.waiver is not None and r.waiver.expired
    assert r.message.endswith("(waiver expired on 2027-06-30)")


def test_waiver_is_for_its_hosts_and_control_only() -> None:
    out = apply_waivers(
        CAMPUS,
        [
            result("sgm-a01", "CP-PRN-01"),
            result("sgm-out01", "CP-NET-01"),
            result("sgm-out01", "CP-PRN-01", "pass"),
        ],
        dt.date(2026, 11, 26),
    )
    assert [r.status for r in out] == ["fail", "fail", "pass"]
    assert all(r.waiver is None for r in out)


def test_hosts_for_groups_hosts_and_nested_service_groups() -> None:
    assert len(_hosts_for(CAMPUS, "workstations")) == 91
    assert _hosts_for(CAMPUS, "room_sangam_secure_room") == [
        "sgm-s01",
        "sgm-s02",
        "sgm-s03",
        "sgm-s04",
    ]
    assert _hosts_for(CAMPUS, "mirrors") == ["gp-mirror", "sgm-mirror"]
    assert _hosts_for(CAMPUS, "sgm-a01, gp-k01") == ["gp-k01", "sgm-a01"]
    with pytest.raises(VerifyError, match="--limit nope: no such host or group"):
        _hosts_for(CAMPUS, "nope")


def test_controls_filter_keeps_catalogue_order_and_rejects_unknown_ids() -> None:
    assert _control_ids(("CP-USB-01", "CP-NET-01")) == ["CP-NET-01", "CP-USB-01"]
    assert len(_control_ids(())) == 22
    with pytest.raises(VerifyError, match="CP-NET-99: not in the catalogue"):
        _control_ids(("CP-NET-99",))
