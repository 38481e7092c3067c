"""Property tests for render: what loads renders, the same bytes every time, and reads back.

And ``campus-provision render`` of a spec that does not load leaves the output directory
byte for byte as it was.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from campus_provision.cli import app
from campus_provision.errors import SpecError
from campus_provision.render import build_inventory, render_files
from campus_provision.spec import load_spec_bytes
from tests.conftest import EXAMPLE, snapshot
from tests.spec.test_fuzz import BASE, dump, fuzz, load_or_spec_error, mutate

F = Path("campus.yml")

# Text a person may put in titles, names and the banner: Korean, emoji, right-to-left,
# control characters, YAML-looking words, line breaks of every kind.
odd_text = st.text(
    alphabet=st.sampled_from(
        list(
            "서울캠퍼스가나다😀🏫\u202e\u200f\u200f\u202e\x00\x07\t\n\r\x85\u2028\u2029\ufeff\"'\\:#&*!|>%@` -{}[],aZ09"
        )
    ),
    min_size=1,
    max_size=40,
) | st.sampled_from(["yes", "null", "~", "0x10", "1e3", "2027-01-01", "- x", "a: b", "@x", "%"])
TITLE_PATHS = [
    ("campus", "name"), ("campus", "banner"), ("sites", "sangam", "title"),
    ("sites", "gaepo", "address"), ("sites", "sangam", "rooms", "analysis-a", "title"),
    ("sites", "gaepo", "rooms", "lab-1", "floor"), ("datasets", 0, "title"),
    ("datasets", 1, "owner"), ("accounts", "admins", 0, "name"),
    ("accounts", "analysts", 0, "name"),
]  # fmt: skip


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


@st.composite
def valid_specs(draw: st.DrawFn) -> Any:
    """The example with edits that mostly keep it valid: odd text, counts, fewer fields."""
    doc = copy.deepcopy(BASE)
    for path in draw(st.lists(st.sampled_from(TITLE_PATHS), max_size=4, unique=True)):
        _set(doc, path, draw(odd_text))
    for site in doc["sites"].values():
        for group in site["workstation_groups"]:
            if "count" in group and draw(st.booleans()):
                group["count"] = draw(st.integers(min_value=1, max_value=group["count"]))
            if draw(st.integers(0, 9)) == 0:
                group.pop("datasets", None)
    if draw(st.booleans()):
        doc["controls"]["families"] = {
            k: draw(st.booleans()) if k not in ("log", "time") else v
            for k, v in doc["controls"]["families"].items()
        }
    return doc


def check_render(raw: bytes) -> None:
    campus = load_or_spec_error(raw)
    if campus is None:
        return
    files = render_files(campus, F.name)
    # Deterministic: a second load and render of the same bytes gives the same bytes.
    again = load_spec_bytes(raw, F)
    assert render_files(again, F.name) == files
    # Every file is YAML that reads back as exactly what render meant to write.
    inv = build_inventory(campus)
    assert yaml.load(files["hosts.yml"], Loader=yaml.CSafeLoader) == inv.hosts
    for name, variables in inv.group_vars.items():
        assert yaml.load(files[f"group_vars/{name}.yml"], Loader=yaml.CSafeLoader) == variables
    # Every PC is defined once, with its address, in its workstation group.
    wsg = {k: v for k, v in inv.hosts["all"]["children"].items() if k.startswith("wsg_")}
    defined = {h: v["ansible_host"] for g in wsg.values() for h, v in g["hosts"].items()}
    assert defined == {ws.hostname: str(ws.ip) for ws in campus.workstations}
    assert sum(len(g["hosts"]) for g in wsg.values()) == len(campus.workstations)


@fuzz(120)
@given(valid_specs())
def test_valid_specs_render_deterministically_and_read_back(doc: Any) -> None:
    check_render(dump(doc))


@fuzz(100)
@given(st.data())
def test_mutated_specs_render_or_raise_spec_error(data: st.DataObject) -> None:
    check_render(dump(mutate(data.draw(valid_specs()), data.draw, max_steps=2)))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A spec directory with its inventory rendered, and a snapshot of it."""
    root = tmp_path_factory.mktemp("rendered")
    shutil.copy(EXAMPLE, root / "campus.yml")
    result = CliRunner().invoke(app, ["render", str(root / "campus.yml")])
    assert result.exit_code == 0, result.output
    return root, snapshot(root)


@fuzz(60)
@given(st.data())
def test_render_of_a_bad_spec_leaves_the_output_as_it_was(
    rendered: tuple[Path, dict[str, bytes]], data: st.DataObject
) -> None:
    root, before = rendered
    raw = dump(mutate(BASE, data.draw))
    try:
        load_spec_bytes(raw, F)
    except SpecError:
        pass
    else:
        return  # a mutation that still loads would (rightly) change the files
    bad = root.parent / f"{root.name}-bad.yml"
    bad.write_bytes(raw)
    try:
        result = CliRunner().invoke(app, ["render", str(bad), "--out", str(root)])
    finally:
        bad.unlink()
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(root) == before
    assert sorted(p.name for p in root.iterdir()) == [
        ".rendered",
        "campus.yml",
        "group_vars",
        "hosts.yml",
    ]
