"""The loader: YAML quirks become located errors, valid specs load into the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus_provision.errors import SpecError
from campus_provision.spec import load_spec, load_spec_bytes
from tests.conftest import EXAMPLE, line_of, replace_once

F = Path("campus.yml")


def issues(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_spec_bytes(text.encode(), F)
    return err.value.lines()


def test_example_loads_with_both_sites_and_expands_groups() -> None:
    campus = load_spec(EXAMPLE)
    assert list(campus.sites) == ["sangam", "gaepo"]
    names = [w.hostname for w in campus.workstations]
    assert len(names) == len(set(names)) == 91
    a01 = next(w for w in campus.workstations if w.hostname == "sgm-a01")
    assert str(a01.ip) == "10.21.0.11"
    assert a01.tier == "restricted"
    secure = [w for w in campus.workstations if w.group == "sgm-secure"]
    assert {w.tier for w in secure} == {"confidential"}
    assert secure[0].mac == "52:54:00:21:01:11"
    last_b = [w for w in campus.workstations if w.group == "sgm-analysis-b"][-1]
    assert (last_b.hostname, str(last_b.ip)) == ("sgm-b16", "10.21.0.66")


def test_duplicate_key_is_an_error_not_silently_the_last(example_text: str) -> None:
    text = replace_once(
        example_text, "  timezone: Asia/Seoul\n", "  timezone: Asia/Seoul\n  timezone: UTC\n"
    )
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'timezone: UTC')}: campus.timezone: duplicate key "
        f"(first at line {line_of(text, 'timezone: Asia/Seoul')})"
    ]


def test_alias_bomb_is_refused() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    out = issues("\n".join(levels) + "\n")
    # The limit is passed while expanding *a4 inside a5; the line is where a4 is defined.
    assert out == [
        "campus.yml:5: (document): the YAML expands to over a million values through aliases; refusing to load it"
    ]


def test_anchors_and_merge_keys_are_allowed(example_text: str) -> None:
    text = replace_once(
        example_text,
        "  kiosk:\n    title: Citizen kiosk",
        "  kiosk-lite:\n    <<: &kiosk\n      title: Light kiosk\n      packages: [evince]\n  kiosk:\n    title: Citizen kiosk",
    )
    campus = load_spec_bytes(text.encode(), F)
    assert campus.software_profiles["kiosk-lite"].title == "Light kiosk"


def test_top_level_list_and_scalar_are_refused() -> None:
    assert issues("- a\n- b\n") == [
        "campus.yml:1: (document): a campus spec is a mapping of sections (campus:, sites:, ...), not a list"
    ]
    assert issues("hello\n")[0].startswith("campus.yml:1: (document): a campus spec is a mapping")


def test_non_utf8_is_located() -> None:
    with pytest.raises(SpecError) as err:
        load_spec_bytes(b"campus:\n  name: caf\xe9\n", F)
    assert err.value.lines() == ["campus.yml:2: (file): is not UTF-8 text"]


def test_python_tags_are_not_constructed() -> None:
    out = issues("campus: !!python/object/apply:os.system [echo hi]\n")
    assert out[0].startswith(
        "campus.yml:1: campus: not valid YAML: could not determine a constructor"
    )


def test_wrong_type_names_the_input(example_text: str) -> None:
    text = replace_once(example_text, "        count: 24\n", "        count: many\n")
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'count: many')}: sites.sangam.workstation_groups.0.count: "
        "Input should be a valid integer, got 'many'"
    ]


def test_unknown_key_without_a_close_match_lists_allowed_fields(example_text: str) -> None:
    text = replace_once(
        example_text, "  timezone: Asia/Seoul\n", "  timezone: Asia/Seoul\n  colour: blue\n"
    )
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'colour: blue')}: campus.colour: unknown field; allowed here: "
        "name, slug, domain, admin_network, signing_identity, timezone, banner, idle_minutes"
    ]


def test_pattern_errors_explain_the_expected_form(example_text: str) -> None:
    text = replace_once(example_text, "  slug: seoul\n", "  slug: Seoul City\n")
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'slug: Seoul City')}: campus.slug: not a valid value here "
        "(expected lower-case name: letters, digits and '-', starting with a letter), got 'Seoul City'"
    ]


def test_bad_dict_key_is_located_at_the_key(example_text: str) -> None:
    text = replace_once(example_text, "  gaepo:\n    title:", "  Gaepo Park:\n    title:")
    out = issues(text)
    assert out[0].startswith(
        f"campus.yml:{line_of(text, 'Gaepo Park:')}: sites.Gaepo Park: key: not a valid value"
    )


@pytest.mark.parametrize("value", ["true", "167772161", "[10, 21]"])
def test_address_must_be_written_as_dotted_text(example_text: str, value: str) -> None:
    text = replace_once(example_text, "        first_ip: 10.22.0.41", f"        first_ip: {value}")
    out = issues(text)
    assert len(out) == 1
    assert out[0].startswith(
        f"campus.yml:{line_of(text, f'first_ip: {value}')}: sites.gaepo.workstation_groups.1.first_ip: "
    )
    assert "is not an IPv4 address in dotted form" in out[0]


def test_cidr_must_be_written_as_text(example_text: str) -> None:
    text = replace_once(example_text, "cidr: 10.22.10.0/24", "cidr: 5")
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'cidr: 5')}: sites.gaepo.networks.servers.cidr: "
        "5 is not an IPv4 network in CIDR form (e.g. 10.21.0.0/23)"
    ]
