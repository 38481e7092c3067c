"""Each kind of bad input gets one line naming file, line and field; exit 2; no writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import line_of, replace_once, snapshot

Mutation = Callable[[str], tuple[str, int, str]]


def misspelt_key(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, "  admin_network: 10.20.0.0/24", "  admin_netwrok: 10.20.0.0/24")
    return (
        bad,
        line_of(bad, "admin_netwrok"),
        "campus.admin_netwrok: unknown field; did you mean 'admin_network'?",
    )


def duplicate_hostname(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, "{hostname: sgm-s02, ip", "{hostname: sgm-s01, ip")
    line = line_of(bad, "{hostname: sgm-s01, ip: 10.21.1.12")
    return (
        bad,
        line,
        "sites.sangam.workstation_groups.2.hosts.1.hostname: hostname 'sgm-s01' is used twice",
    )


def duplicate_generated_hostnames(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, 'hostname: "sgm-b{n:02d}"', 'hostname: "sgm-a{n:02d}"')
    line = line_of(bad, 'hostname: "sgm-a{n:02d}"', after="name: sgm-analysis-b")
    return bad, line, "sites.sangam.workstation_groups.1.hostname: hostname 'sgm-a01' is used twice"


def overlapping_cidrs(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, "cidr: 10.22.10.0/24", "cidr: 10.22.0.0/16")
    return (
        bad,
        line_of(bad, "cidr: 10.22.0.0/16"),
        "sites.gaepo.networks.servers.cidr: 10.22.0.0/16 overlaps 10.22.0.0/23 (sites.gaepo.networks.pcs.cidr)",
    )


def ip_outside_network(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, "ip: 10.21.1.13,", "ip: 10.30.1.13,")
    return (
        bad,
        line_of(bad, "ip: 10.30.1.13"),
        "sites.sangam.workstation_groups.2.hosts.2.ip: 10.30.1.13 is outside network 10.21.0.0/23",
    )


def missing_profile(text: str) -> tuple[str, int, str]:
    bad = replace_once(
        text,
        "        room: kiosk-corner\n        profile: kiosk",
        "        room: kiosk-corner\n        profile: kiosks",
    )
    return (
        bad,
        line_of(bad, "profile: kiosks"),
        "sites.gaepo.workstation_groups.2.profile: no software profile 'kiosks'",
    )


def exportable_confidential(text: str) -> tuple[str, int, str]:
    block = '    tier: confidential\n    version: "2024.1"\n    size: 90GiB\n    export: forbidden'
    bad = replace_once(text, block, block.replace("export: forbidden", "export: allowed"))
    line = line_of(bad, "export: allowed", after="id: health-insurance-claims")
    return bad, line, "datasets.9.export: a confidential dataset can never be exported"


def waiver_without_expiry(text: str) -> tuple[str, int, str]:
    bad = replace_once(text, "GOV-2026-114\n      expires: 2027-06-30\n", "GOV-2026-114\n")
    return (
        bad,
        line_of(bad, "- control: CP-PRN-01"),
        "controls.waivers.0.expires: required field is missing",
    )


def tab_indented(text: str) -> tuple[str, int, str]:
    old = "    title: Sangam-dong IT complex (Mapo-gu)"
    bad = replace_once(text, old, "\t" + old.lstrip())
    return (
        bad,
        line_of(bad, "\ttitle: Sangam"),
        "sites.sangam: a tab character here; YAML indentation must use spaces",
    )


def truncated(text: str) -> tuple[str, int, str]:
    cut = text.index("{hostname: sgm-s02, ip: 10.21.1.12") + len(
        "{hostname: sgm-s02, ip: 10.21.1.12"
    )
    bad = text[:cut]
    return (
        bad,
        line_of(bad, "sgm-s02"),
        "sites.sangam.workstation_groups.2.hosts.1: the file ends too early",
    )


def empty(_: str) -> tuple[str, int, str]:
    return "", 1, "(document): the file is empty"


def comments_only(_: str) -> tuple[str, int, str]:
    return "# nothing here yet\n\n", 1, "(document): the file is empty"


CASES: dict[str, Mutation] = {
    "misspelt-key": misspelt_key,
    "duplicate-hostname": duplicate_hostname,
    "duplicate-generated-hostnames": duplicate_generated_hostnames,
    "overlapping-cidrs": overlapping_cidrs,
    "ip-outside-network": ip_outside_network,
    "missing-profile": missing_profile,
    "exportable-confidential": exportable_confidential,
    "waiver-without-expiry": waiver_without_expiry,
    "tab-indented": tab_indented,
    "truncated": truncated,
    "empty": empty,
    "comments-only": comments_only,
}


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_located_line_and_exit_2(
    case: str, command: str, example_text: str, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    text, line, expected = CASES[case](example_text)
    spec = tmp_path / "campus.yml"
    spec.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    args = [command, spec] + (["--out", out] if command == "render" else [])
    before = snapshot(tmp_path)

    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{spec}:{line}: {expected}"), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert snapshot(tmp_path) == before


def test_fifty_megabyte_file_is_refused_without_reading_it(
    tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = tmp_path / "campus.yml"
    with spec.open("wb") as fh:
        fh.truncate(50 * 1000 * 1000)
    result = run_cli("render", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"{spec}:1: (file): is 50.0 MB, over the 8 MiB limit for a campus spec; is this the right file?"
    )
    assert not (tmp_path / "out").exists()


def test_bad_input_leaves_existing_inventory_untouched(
    example_text: str, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = tmp_path / "campus.yml"
    spec.write_text(example_text, encoding="utf-8")
    assert run_cli("render", spec).exit_code == 0
    before = snapshot(tmp_path)
    spec.write_text(overlapping_cidrs(example_text)[0], encoding="utf-8")
    before["campus.yml"] = spec.read_bytes()

    result = run_cli("render", spec)

    assert result.exit_code == 2
    assert snapshot(tmp_path) == before


def test_missing_file_and_directory(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    missing = tmp_path / "nope.yml"
    result = run_cli("validate", missing)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{missing}:1: (file): no such file"
    result = run_cli("validate", tmp_path)
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_several_problems_each_get_their_own_line(
    example_text: str, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    text = missing_profile(overlapping_cidrs(example_text)[0])[0]
    text = replace_once(
        text, "GOV-2026-114\n      expires: 2027-06-30", "GOV-2026-114\n      expires: someday"
    )
    spec = tmp_path / "campus.yml"
    spec.write_text(text, encoding="utf-8")
    result = run_cli("validate", spec)
    assert result.exit_code == 2
    # Type errors stop the cross-field rules, so only the field error is reported.
    assert result.stderr.splitlines() == [
        f"{spec}:{line_of(text, 'expires: someday')}: controls.waivers.0.expires: "
        "Input should be a valid date or datetime, input is too short, got 'someday'"
    ]
