"""CP-NET-03 reads the ruleset's meaning: every accept rule of the input chain, in order.

The rulesets are real ``nft -j list ruleset`` output (nft 1.0.6, Debian 12's), each the
campus_egress input chain with one rule added, loaded in a throwaway network namespace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campus_provision.checks.nft import inbound_problems

DATA = Path(__file__).parent / "nft"
ADMIN = "10.21.0.0/24"


def problems(name: str) -> list[str]:
    return inbound_problems(json.loads((DATA / f"{name}.json").read_text()), ADMIN)


@pytest.mark.parametrize("name", ["campus", "one-admin-host", "second-table"])
def test_a_ruleset_that_lets_in_only_admin_ssh_passes(name: str) -> None:
    assert problems(name) == []


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("any-source-ssh", "rule 8 accepts traffic beyond SSH from 10.21.0.0/24"),
        ("wider-source", "rule 8 accepts traffic beyond SSH"),
        ("other-port", "rule 8 accepts traffic beyond SSH"),
        ("ipv6-source", "rule 8 accepts traffic beyond SSH"),
        ("jump", "hands packets to another chain"),
        ("policy-accept", "no input chain with policy drop"),
        ("empty", "no nftables input chain"),
    ],
)
def test_an_accept_rule_that_undoes_the_drop_policy_fails(name: str, why: str) -> None:
    found = problems(name)
    assert found, name
    assert any(why in p for p in found), found


def test_the_admin_ssh_rule_must_name_the_admin_network() -> None:
    """The campus ruleset read against another admin network lets the wrong hosts in."""
    campus = json.loads((DATA / "campus.json").read_text())
    assert inbound_problems(campus, "10.99.0.0/24") != []
