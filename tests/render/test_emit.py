"""The direct hosts.yml writer produces YAML that reads back as exactly its input."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_provision.render.inventory import build_inventory, emit_tree
from campus_provision.spec import load_spec
from tests.conftest import EXAMPLE

names = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["yes", "No", "on", "OFF", "null", "~", "true", "1e3", "0x1f", "010", "1_000",
                     "10.21.0.1", "999.1.1.1", "52:54:00:00:00:01", "12:30", "- a", "a: b", "#x",
                     "'q'", '"d"', "\n", " ", "\t", "\u2028", "\x85", "\ufeff", "a\\b", "*alias", "&anchor", "!tag", "%x", "@x", "`x", "|", ">", "é한"]),
)  # fmt: skip
leaves = st.one_of(st.none(), names)
trees = st.recursive(
    st.dictionaries(names, leaves, max_size=4),
    lambda inner: st.dictionaries(names, st.one_of(leaves, inner), max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(trees)
def test_emit_tree_round_trips_through_yaml(tree: dict[str, Any]) -> None:
    assert yaml.safe_load(emit_tree(tree) if tree else "{}") == tree


def test_example_hosts_round_trip() -> None:
    hosts = build_inventory(load_spec(EXAMPLE)).hosts
    assert yaml.safe_load(emit_tree(hosts)) == hosts
