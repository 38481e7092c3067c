"""The catalogue's SATRE references: each names a statement of its SATRE v2.0 table."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest

from campus_provision.errors import SpecError
from campus_provision.spec.controls import CATALOGUE_FILE, load_catalogue, parse_catalogue

FILE = Path("campus_provision/controls.yaml")
TEXT = files("campus_provision").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
PKG_01_REFS = 'satre: ["2.1.13"]'  # CP-PKG-01's line, the one the bad inputs below change


def refused(text: str) -> list[str]:
    """The lines of the SpecError that parsing ``text`` raises."""
    with pytest.raises(SpecError) as caught:
        parse_catalogue(text, FILE)
    return caught.value.lines()


def pkg_01(refs: str) -> str:
    assert TEXT.count(PKG_01_REFS) == 1
    return TEXT.replace(PKG_01_REFS, refs)


def test_every_referenced_statement_is_in_the_table() -> None:
    catalogue = load_catalogue()
    known = catalogue.satre.by_id()
    for control in catalogue.controls:
        for ref in control.satre:
            assert ref in known, f"{control.id}: {ref}"


def test_the_table_holds_only_statements_a_control_serves() -> None:
    catalogue = load_catalogue()
    served = {ref for c in catalogue.controls for ref in c.satre}
    assert {s.id for s in catalogue.satre.statements} == served


def test_every_control_serves_a_statement_or_says_why_not() -> None:
    catalogue = load_catalogue()
    for control in catalogue.controls:
        assert bool(control.satre) != bool(control.satre_none_reason), control.id
    # Most controls map: only those with no honest match carry a reason.
    reasons = {c.id for c in catalogue.controls if c.satre_none_reason}
    assert reasons == {
        "CP-LOG-01",
        "CP-TIME-01",
        "CP-SYS-01",
        "CP-SYS-02",
        "CP-SYS-03",
        "CP-AUD-02",
    }


def test_the_table_names_its_source_and_uses_the_specs_labels() -> None:
    satre = load_catalogue().satre
    assert satre.version == "2.0"
    assert satre.repository == "github.com/sa-tre/satre-specification"
    assert re.fullmatch(r"[0-9a-f]{40}", satre.commit)
    for statement in satre.statements:
        assert re.fullmatch(r"[1-5]\.[1-8]\.[0-9]{2}", statement.id)
        assert statement.importance in {"Mandatory", "Recommended", "Optional"}
        # The statement's pillar is the one its ID's first number names.
        pillar = {
            "1": "Information governance",
            "2": "Computing technology and Information Security",
            "3": "Data management",
        }[statement.id[0]]
        assert statement.pillar == pillar, statement.id


def test_an_unknown_statement_is_refused_naming_file_and_control() -> None:
    (line,) = refused(pkg_01('satre: ["2.1.13", "2.9.99"]'))
    assert line.startswith(f"{FILE}:")
    assert "controls.3.satre.1" in line
    assert "CP-PKG-01" in line and "2.9.99" in line


def test_a_bad_id_format_is_refused_naming_the_control() -> None:
    # A 1.x-style number (no leading zero, or the old trailing dot) is not a v2.0 ID.
    for bad in ("2.1.1", "2.1.13.", "v2.1.13", "2.1", " "):
        (line,) = refused(pkg_01(f'satre: ["{bad}"]'))
        assert "CP-PKG-01" in line and "controls.3.satre.0" in line, line
        assert "not a SATRE v2.0 statement ID" in line, line
    (line,) = refused(pkg_01("satre: [2.1]"))  # a YAML number, not a string
    assert "CP-PKG-01" in line


def test_a_control_with_no_statement_must_say_why() -> None:
    (line,) = refused(pkg_01("satre: []"))
    assert "CP-PKG-01" in line and "satre_none_reason" in line


def test_statements_and_a_reason_together_are_refused() -> None:
    text = pkg_01(f"{PKG_01_REFS}\n    satre_none_reason: Nothing fits, but it lists one anyway.")
    (line,) = refused(text)
    assert "CP-PKG-01" in line and "satre_none_reason" in line


def test_a_statement_listed_twice_is_refused() -> None:
    (line,) = refused(pkg_01('satre: ["2.1.13", "2.1.13"]'))
    assert "CP-PKG-01" in line and "more than once" in line
    text = TEXT.replace('- id: "2.2.10"', '- id: "2.2.09"', 1)
    lines = refused(text)
    assert any("satre.statements" in ln and "listed twice" in ln for ln in lines), lines
    assert any("CP-NET-03" in ln and "2.2.10" in ln for ln in lines), lines


def test_an_unknown_key_in_the_table_is_refused() -> None:
    text = TEXT.replace(
        "      importance: Optional\n", "      importance: Optional\n      tier: 2\n", 1
    )
    lines = refused(text)
    assert any("satre.statements." in ln and ".tier" in ln for ln in lines), lines
