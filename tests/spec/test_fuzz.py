"""Property tests: any input either loads or raises SpecError, never anything else."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campus_provision.errors import SpecError
from campus_provision.render import render_files
from campus_provision.spec import load_spec_bytes
from tests.conftest import EXAMPLE

F = Path("campus.yml")
BASE: Any = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000),
    st.sampled_from(["10.21.0.0/23", "10.21.0.11", "52:54:00:00:00:01", "80/tcp", "2027-01-01",
                     "CP-NET-01", "restricted", "forbidden", "sgm-a01", "{n:02d}", "sangam", "x" * 300]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(BASE)


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def _mutate(data: Any, draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in ALL_PATHS if p]
        path = draw(st.sampled_from(paths))
        try:
            parent = _get(doc, path[:-1])
            key = path[-1]
            parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "delete", "rename", "duplicate", "extra"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=20))] = parent.pop(key)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=20))] = draw(values)
    return doc


def _load_or_spec_error(raw: bytes) -> None:
    try:
        campus = load_spec_bytes(raw, F)
    except SpecError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.line >= 1
            assert str(issue).startswith("campus.yml:")
            assert "\n" not in str(issue)
        return
    # What loads must render, and render the same twice.
    assert render_files(campus, "campus.yml") == render_files(campus, "campus.yml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_specs_load_or_raise_spec_error(data: st.DataObject) -> None:
    doc = _mutate(BASE, data.draw)
    _load_or_spec_error(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode())


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_random_text_loads_or_raises_spec_error(text: str) -> None:
    _load_or_spec_error(text.encode("utf-8", errors="surrogatepass"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_load_or_raise_spec_error(raw: bytes) -> None:
    _load_or_spec_error(raw)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=len(EXAMPLE.read_bytes())))
def test_every_truncation_loads_or_raises_spec_error(cut: int) -> None:
    _load_or_spec_error(EXAMPLE.read_bytes()[:cut])
