"""Property tests: any input either loads or raises SpecError, never anything else.

Every SpecError line reads ``FILE:LINE: field: message`` with LINE inside the file. The
examples are derandomized and the database is off, so CI runs the same inputs each time.
The bounds on slow inputs are on this process's CPU time, not the wall clock: a loaded
machine (lab VMs beside the tests) must not fail them, a quadratic loader still does.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from campus_provision.errors import SpecError
from campus_provision.render import render_files
from campus_provision.spec import Campus, load_spec_bytes
from campus_provision.spec.loader import MAX_REPORTED_ISSUES
from tests.conftest import EXAMPLE

F = Path("specs/campus.yml")
EXAMPLE_BYTES = EXAMPLE.read_bytes()
BASE: Any = yaml.safe_load(EXAMPLE_BYTES)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_ISSUE_RE = re.compile(r"specs/campus\.yml:([1-9][0-9]*): [^\n]*: [^\n]+")


def fuzz(n: int) -> settings:
    """Bounded and reproducible: ``n`` derandomized examples, no example database."""
    return settings(
        max_examples=n, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip


def load_or_spec_error(raw: bytes) -> Campus | None:
    """Load ``raw``; a SpecError must be well formed. Anything else fails the test."""
    try:
        return load_spec_bytes(raw, F)
    except SpecError as exc:
        assert exc.issues
        assert len(exc.issues) <= MAX_REPORTED_ISSUES
        last_line = len(raw.decode("utf-8", errors="replace").splitlines()) + 1
        for issue, line in zip(exc.issues, exc.lines(), strict=True):
            assert str(issue) == line
            match = _ISSUE_RE.fullmatch(line)
            assert match, line
            assert 1 <= issue.line <= last_line, line
            assert int(match[1]) == issue.line
        assert str(exc).split("\n") == exc.lines()
        return None


def dump(doc: Any) -> bytes:
    return yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, sort_keys=False).encode()


# --- random bytes and YAML-ish text -------------------------------------------------

BOMS = [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf"]
TOKENS = [
    "campus:", "sites:", "sangam:", "count:", "hosts:", " ", "  ", "    ", "\t", "\n", "\r\n",
    "\r", "- ", "? ", ": ", ":", ",", "[", "]", "{", "}", "#", "# c", "---", "...", "%YAML 1.1",
    "%TAG ! tag:x,2000:", "&a ", "*a", "&b ", "*b", "<<: *a", "<<: [*a, *b]", "<<: 1", "!!int ",
    "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!map ", "!!seq ",
    "!!python/object:os.system ", "!x ", "|", ">", "|-", '"', "'", '"\\u0000"', '"\\x85"',
    "'it''s'", "2027-13-45", "2027-02-30", "2001-12-14t21:59:43.10-05:00", "1:59:59", "0x1F",
    "0o17", "0b101", "-1", "1e400", ".inf", ".nan", "~", "null", "yes", "off", "10.21.0.0/23",
    "10.21.0.11", "255.255.255.255", "{n:02d}", "9" * 5000, "0x" + "f" * 4000, "1" + ":59" * 60,
    "서울 캠퍼스", "한국어:", "😀", "\u202ertl\u202d", "\u2028", "\u0085", "\x00", "\x07", "\ufeff",
    "\ufffe", "\ud7ff", "x" * 3000,
]  # fmt: skip
yamlish = st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=60).map("".join)


@fuzz(250)
@given(st.sampled_from(BOMS), st.binary(max_size=400))
@example(b"", b"\xff\xfe\x00")
@example(b"\xef\xbb\xbf", b"campus: \xc3\x28\n")
def test_random_bytes_load_or_raise_spec_error(bom: bytes, raw: bytes) -> None:
    load_or_spec_error(bom + raw)


@fuzz(300)
@given(st.sampled_from(BOMS[:2]), yamlish)
@example(b"", "a: 2027-13-45\n")  # PyYAML: ValueError (month must be in 1..12)
@example(b"", "- 2027-02-30\n")  # ValueError (day is out of range for month)
@example(b"", "2027-13-45: x\n")  # the same in a key
@example(b"", "a: !!int abc\n")  # ValueError (invalid literal for int())
@example(b"", "a: !!float abc\n")  # ValueError
@example(b"", "a: !!bool abc\n")  # KeyError 'abc'
@example(b"", "a: !!int\n")  # IndexError (an empty value)
@example(b"", "a: !!timestamp abc\n")  # AttributeError
@example(b"", "a: !!set {2027-13-45}\n")  # ValueError from a deep construct
@example(b"", "a: " + "1" * 5000 + "\n")  # ValueError: over 4,300 digits
@example(b"", "count: 0x" + "f" * 4000 + "\n")  # loads, then repr() in the message failed
@example(b"", "a: &x !!int abc\nb: *x\n")
def test_yamlish_text_loads_or_raises_spec_error(bom: bytes, text: str) -> None:
    load_or_spec_error(bom + text.encode("utf-8", errors="surrogatepass"))


plain = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.dates(), st.binary(max_size=20),
    st.text(max_size=30), st.text(alphabet="가나다라서울😀\u202e\x00\t\n\r ", max_size=30),
)  # fmt: skip
documents = st.recursive(
    plain,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=20,
)


@fuzz(200)
@given(documents, st.sampled_from([None, True, False]))
def test_random_documents_load_or_raise_spec_error(doc: Any, flow: bool | None) -> None:
    """Any YAML document (lists, scalars, nested mappings) at the top or as a section."""
    raw = yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, default_flow_style=flow).encode()
    load_or_spec_error(raw)
    load_or_spec_error(dump({"campus": doc, "sites": doc, "accounts": doc}))


@fuzz(60)
@given(
    st.sampled_from(["[", "{a: ", "- ", "a:\n", "&x [", "? "]),
    st.integers(min_value=1, max_value=20_000),
)
def test_deep_nesting_loads_or_raises_spec_error(opener: str, depth: int) -> None:
    if opener == "a:\n":
        text = "".join(" " * i + "a:\n" for i in range(min(depth, 3000)))
    else:
        text = opener * depth + "x"
    load_or_spec_error(text.encode())


@fuzz(60)
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=2, max_value=12))
def test_alias_bombs_are_refused_fast(levels: int, width: int) -> None:
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    start = time.process_time()
    load_or_spec_error(("\n".join(lines) + "\n").encode())
    assert time.process_time() - start < 20


@fuzz(80)
@given(st.integers(min_value=0, max_value=len(EXAMPLE_BYTES)), st.sampled_from(["", "\t", "x"]))
def test_every_truncation_loads_or_raises_spec_error(cut: int, tail: str) -> None:
    load_or_spec_error(EXAMPLE_BYTES[:cut] + tail.encode())


# --- mutated copies of the example spec ---------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in _paths(BASE) if p]
_VALUES_AT = {"hostname", "ip", "first_ip", "cidr", "gateway", "mac", "name", "id", "username"}
SAME_KIND = [p for p in ALL_PATHS if p[-1] in _VALUES_AT]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, -(2**63), 2**64, 10**9, 20_000, 20_001, 4095, 65536]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="가나다서울캠퍼스😀\u202e\u200f\x00\t\n-a1", min_size=1, max_size=20),
    st.text(min_size=1000, max_size=3000),
    st.sampled_from([
        "10.21.0.0/23", "10.21.0.0/24", "10.20.0.0/24", "0.0.0.0/0", "10.21.0.11/32",
        "10.21.0.1/23", "10.21.0.11", "255.255.255.250", "10.21.0.011", "::1", "52:54:00:00:00:01",
        "80/tcp", "0/udp", "70000/tcp", "2027-01-01", "2027-13-45", "CP-NET-01", "CP-NOPE-99",
        "restricted", "forbidden", "allowed", "sgm-a01", "sgm-mirror", "{n:02d}", "x{n}",
        "sangam", "gaepo", "analysis-a", "analyst", "root", "admin", "1 TiB", "-5 B", "x" * 300,
    ]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(data: Any, draw: st.DrawFn, max_steps: int = 4) -> Any:
    """``data`` with a few random edits, each at a path of the example spec."""
    doc = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=1, max_value=max_steps))):
        path = draw(st.sampled_from(ALL_PATHS))
        try:
            parent = _get(doc, path[:-1])
            key = path[-1]
            parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(
            st.sampled_from(
                ["replace", "delete", "rename", "duplicate", "extra", "empty", "copy", "swap"]
            )
        )
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=20) | st.sampled_from(["서울", "😀", "Sites"]))] = (
                parent.pop(key)
            )
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=20))] = draw(values)
        elif action == "empty":
            parent[key] = draw(st.sampled_from([[], {}, "", None]))
        elif action in ("copy", "swap"):
            # Another field's value of the same kind: a clashing hostname, IP, MAC or
            # CIDR, or (swap) two of them traded.
            other = draw(st.sampled_from(SAME_KIND))
            try:
                other_parent = _get(doc, other[:-1])
                other_value = other_parent[other[-1]]
            except (KeyError, IndexError, TypeError):
                continue
            if action == "swap":
                other_parent[other[-1]] = parent[key]
            parent[key] = copy.deepcopy(other_value)
    return doc


@fuzz(250)
@given(st.data())
def test_mutated_specs_load_or_raise_spec_error(data: st.DataObject) -> None:
    doc = mutate(BASE, data.draw)
    campus = load_or_spec_error(dump(doc))
    if campus is not None:
        # What loads must render, and render the same twice.
        assert render_files(campus, "campus.yml") == render_files(campus, "campus.yml")


@fuzz(60)
@given(st.data())
def test_mutated_spec_text_loads_or_raises_spec_error(data: st.DataObject) -> None:
    """Edits to the text itself: repeated lines (duplicate keys), tabs, lines cut short."""
    lines = EXAMPLE_BYTES.decode().splitlines(keepends=True)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
        edit = data.draw(st.sampled_from(["repeat", "tab", "cut", "drop", "junk"]))
        if edit == "repeat":
            lines.insert(i, lines[i])
        elif edit == "tab":
            lines[i] = lines[i].replace("  ", "\t", 1)
        elif edit == "cut":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))] + "\n"
        elif edit == "drop":
            del lines[i]
        else:
            lines.insert(i, data.draw(yamlish) + "\n")
    load_or_spec_error("".join(lines).encode("utf-8", errors="surrogatepass"))


# --- the bugs the fuzzing found, as plain regression tests --------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 2027-13-45\n", "a: '2027-13-45' is not a date (month must be in 1..12)"),
        ("a: !!bool maybe\n", "a: 'maybe' is not true or false"),
        ("a: !!timestamp abc\n", "a: 'abc' is not a date"),
        ("a: " + "1" * 5000 + "\n", "a: the number 11111111111111111111... has 5000 characters"),
    ],
)
def test_unreadable_scalars_are_located_spec_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec_bytes(text.encode(), F)
    assert exc.value.lines()[0].startswith(f"{F}:1: {message}")


def test_a_huge_hex_count_is_refused_not_a_crash(example_text: str) -> None:
    text = example_text.replace("count: 24", "count: 0x" + "f" * 4000, 1)
    with pytest.raises(SpecError, match=r"count: the number 0xf+\.\.\. has 4002 characters"):
        load_spec_bytes(text.encode(), F)


def test_a_long_base_60_number_is_refused_in_linear_time() -> None:
    # 1:59:59:... is an integer in YAML 1.1; PyYAML reads it in quadratic time
    # (7.5 s for these 300 KB, hours for 8 MiB).
    start = time.process_time()
    with pytest.raises(SpecError, match="has 300001 characters"):
        load_spec_bytes(b"a: 1" + b":59" * 100_000 + b"\n", F)
    assert time.process_time() - start < 2


def test_a_group_running_past_the_last_ipv4_address_is_located(example_text: str) -> None:
    text = example_text.replace("first_ip: 10.21.0.11", "first_ip: 255.255.255.250", 1)
    with pytest.raises(SpecError) as exc:
        load_spec_bytes(text.encode(), F)
    group = (
        text[: text.rindex("- name:", 0, text.index("first_ip: 255.255.255.250"))].count("\n") + 1
    )
    assert exc.value.lines() == [
        f"{F}:{group}: sites.sangam.workstation_groups.0: 24 PCs from 255.255.255.250 run past "
        "255.255.255.255, the last IPv4 address"
    ]


def test_many_big_groups_are_refused_before_they_are_expanded() -> None:
    # 50 groups of 20,000 PCs in a 19 KB spec: was 1,000,000 PCs built, 30 s and 550 MiB.
    doc = copy.deepcopy(BASE)
    groups = doc["sites"]["sangam"]["workstation_groups"]
    for i in range(50):
        groups.append({**groups[0], "name": f"big{i}", "count": 20_000, "hostname": f"b{i}-{{n}}"})
    start = time.process_time()
    with pytest.raises(SpecError) as exc:
        load_spec_bytes(dump(doc), F)
    assert time.process_time() - start < 5
    (line,) = exc.value.lines()
    assert re.fullmatch(
        r"specs/campus\.yml:[0-9]+: sites\.sangam\.workstation_groups\.9\.count: this group "
        r"brings the campus to 100,[0-9]{3} PCs, over the limit of 100,000",
        line,
    ), line


def test_a_million_wrong_values_through_aliases_are_counted_not_listed() -> None:
    # 4 KB, 987,036 validation errors: was 47 s and 1.8 GiB to word every one.
    n = 990
    text = "x: &a [" + ",".join(["A"] * n) + "]\ny: &d {readers: *a}\n"
    text += "datasets: [" + ",".join(["*d"] * n) + "]\n"
    start = time.process_time()
    with pytest.raises(SpecError) as exc:
        load_spec_bytes(text.encode(), F)
    assert time.process_time() - start < 20
    assert len(exc.value.issues) == MAX_REPORTED_ISSUES
    assert "one more problem here and 986,986 elsewhere are not listed" in str(exc.value)


def test_many_unknown_keys_do_not_each_get_a_spelling_hint() -> None:
    # 990 unknown keys in each of 990 aliased mappings: difflib ran a million times.
    n = 990
    text = "x: &a {" + ",".join(f"k{i}: 1" for i in range(n)) + "}\n"
    text += "datasets: [" + ",".join(["*a"] * n) + "]\n"
    start = time.process_time()
    with pytest.raises(SpecError):
        load_spec_bytes(text.encode(), F)
    assert time.process_time() - start < 20
