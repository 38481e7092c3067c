"""Read a campus spec file into a validated ``Campus``, with errors located by line.

Every problem, from a tab in the indentation to a CIDR that overlaps another, comes
back as a ``SpecError`` whose lines read ``FILE:LINE: dotted.field.path: message``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from campus_provision.errors import SpecError, SpecIssue, SpecRuleError
from campus_provision.perf import gc_paused
from campus_provision.spec.model import Campus

# A campus spec of 10,000 explicitly listed PCs is about 1 MiB; anything far larger is
# a mistake (a data file passed by accident), and parsing it would only waste minutes.
MAX_SPEC_BYTES = 8 * 1024 * 1024
# Bounds what aliases may expand to, so an alias bomb fails fast instead of eating memory.
MAX_EXPANDED_NODES = 1_000_000
MAX_REPORTED_ISSUES = 50
# No number in a campus spec needs more characters than this. Longer integers cost
# quadratic time to read (base 60: 1:59:59:...) or cannot be printed in a message
# (over 4,300 digits), so they are refused before PyYAML reads them.
MAX_NUMBER_CHARS = 100

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KEY_LINE_RE = re.compile(
    r"^( *)((?:- +)*)([^\s#'\"{}\[\],&*!|>%@`-][^#:]*?|'[^']*'|\"[^\"]*\") *:(?: |$)"
)
_ITEM_RE = re.compile(r"^( *)- ")
PathKey = tuple[str, ...]


def load_spec(path: Path) -> Campus:
    """Load and validate the spec at ``path``; raise ``SpecError`` on any problem."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _one(path, 1, "(file)", "no such file") from None
    except OSError as exc:
        raise _one(path, 1, "(file)", f"cannot read: {exc.strerror}") from None
    if path.is_dir():
        raise _one(path, 1, "(file)", "is a directory; give the campus spec file (e.g. campus.yml)")
    if size > MAX_SPEC_BYTES:
        raise _one(
            path, 1, "(file)",
            f"is {size / 1e6:.1f} MB, over the {MAX_SPEC_BYTES // 2**20} MiB limit for a campus "
            "spec; is this the right file?",
        )  # fmt: skip
    try:
        data = path.read_bytes()[: MAX_SPEC_BYTES + 1]
    except OSError as exc:
        raise _one(path, 1, "(file)", f"cannot read: {exc.strerror}") from None
    return load_spec_bytes(data, path)


def load_spec_bytes(data: bytes, path: Path) -> Campus:
    """Validate spec ``data`` that was read from ``path`` (used for messages only)."""
    with gc_paused():
        return _load(data, path)


def _load(data: bytes, path: Path) -> Campus:
    if len(data) > MAX_SPEC_BYTES:
        raise _one(
            path, 1, "(file)", f"is over the {MAX_SPEC_BYTES // 2**20} MiB limit for a campus spec"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _one(path, line, "(file)", "is not UTF-8 text") from None
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise _one(
            path, 1, "(document)",
            "the file is empty; a campus spec has the sections campus, sites, services, "
            "software_profiles, datasets, accounts and controls (see 'campus-provision init')",
        )  # fmt: skip
    raw, root_line, lines = _parse(text, path)
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"a single value ({type(raw).__name__})"
        raise _one(
            path, root_line, "(document)",
            f"a campus spec is a mapping of sections (campus:, sites:, ...), not {kind}",
        )  # fmt: skip
    try:
        return Campus.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_validation_issues(exc, lines, path)) from None
    except SpecRuleError as exc:
        raise SpecError(
            [SpecIssue(path, _line_for(p, lines), _dotted(p), m) for p, m in exc.problems]
        ) from None


def _one(path: Path, line: int, field: str, message: str) -> SpecError:
    return SpecError([SpecIssue(path, line, field, message)])


def _parse(text: str, path: Path) -> tuple[object, int, dict[PathKey, int]]:
    """YAML text → (data, line of the document, line of every path)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _one(path, 1, "(document)", "the file holds no YAML document")
        builder = _Builder(loader, path)
        raw = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        # At the end of a file with no final newline, the parser counts one line too many.
        line = max(1, min(line, len(text.splitlines())))
        raise _one(path, line, _guess_field(text, line), _yaml_message(exc, text)) from None
    except yaml.YAMLError as exc:
        raise _one(path, 1, "(document)", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise _one(path, 1, "(document)", "the YAML nests too deeply") from None
    finally:
        loader.dispose()
    if builder.issues:
        raise SpecError(_capped(builder.issues, builder.issue_count))
    return raw, node.start_mark.line + 1, builder.lines


def _yaml_message(exc: yaml.MarkedYAMLError, text: str) -> str:
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    detail = f"{context}: {problem}" if context else problem
    mark = exc.problem_mark
    if mark is not None:
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        if "\t" in line[: mark.column + 1] and (
            "cannot start any token" in problem or "tab" in problem
        ):
            return "a tab character here; YAML indentation must use spaces"
        if not text[mark.index :].strip():
            return f"the file ends too early ({detail}); is it truncated?"
    return f"not valid YAML: {detail}"


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_KINDS = {
    _INT: "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    _TIMESTAMP: "a date",
}


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why PyYAML could not read ``node`` as the type its tag (or its look) says."""
    if not isinstance(node, yaml.ScalarNode):
        return f"a value inside this {node.tag.rsplit(':', 1)[-1]} cannot be read: {exc}"
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    kind = _KINDS.get(node.tag, f"a {node.tag} value")
    # datetime says what is wrong with a date ("month must be in 1..12"); the rest
    # of PyYAML's messages name its internals, so only dates keep theirs.
    reason = f" ({exc})" if node.tag == _TIMESTAMP and isinstance(exc, ValueError) else ""
    return f"{text!r} is not {kind}{reason}"


class _Builder:
    """Node tree → Python data in one pass, recording what error messages need.

    Records the line of every path, flags duplicate keys (PyYAML would keep the last
    silently), and bounds what aliases expand to, so an alias bomb fails fast.
    """

    def __init__(self, loader: yaml.SafeLoader, file: Path) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[PathKey, int] = {}
        self.issues: list[SpecIssue] = []
        self.issue_count = 0
        self.expanded = 0
        self.memo: dict[int, tuple[object, int]] = {}

    def _count(self, n: int, node: yaml.Node) -> None:
        self.expanded += n
        if self.expanded > MAX_EXPANDED_NODES:
            raise _one(
                self.file, node.start_mark.line + 1, "(document)",
                "the YAML expands to over a million values through aliases; refusing to load it",
            )  # fmt: skip

    def build(self, node: yaml.Node, path: PathKey) -> object:
        hit = self.memo.get(id(node))
        if hit is not None:  # an alias: the same object again, counted at its full size
            self._count(hit[1], node)
            return hit[0]
        self.lines.setdefault(path, node.start_mark.line + 1)
        start = self.expanded
        self._count(1, node)
        value: object
        if isinstance(node, yaml.ScalarNode):
            return node.value if node.tag == _STR else self._scalar(node, path)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            mapping: dict[object, object] = {}
            self.memo[id(node)] = (mapping, 1)
            self._mapping(node, path, mapping)
            value = mapping
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            items: list[object] = []
            self.memo[id(node)] = (items, 1)
            items.extend(self.build(item, (*path, str(i))) for i, item in enumerate(node.value))
            value = items
        else:  # other tags (!!set, !!omap, !!binary...): PyYAML's safe constructors
            value = self._construct(node, path, deep=True)
        self.memo[id(node)] = (value, self.expanded - start)
        return value

    def _issue(self, line: int, field: str, message: str) -> None:
        # 8 MiB of "a: 1" lines is 1.6 million duplicate keys: keep the first few only.
        self.issue_count += 1
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(SpecIssue(self.file, line, field, message))

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> object:
        if node.tag == _INT and len(node.value) > MAX_NUMBER_CHARS:
            shown = node.value[:20] + "..."
            self._issue(
                node.start_mark.line + 1, _dotted(path),
                f"the number {shown} has {len(node.value)} characters; "
                f"a campus spec needs at most {MAX_NUMBER_CHARS}",
            )  # fmt: skip
            return node.value
        return self._construct(node, path)

    def _construct(self, node: yaml.Node, path: PathKey, deep: bool = False) -> object:
        """PyYAML's safe constructor for ``node``; a value it cannot read is an issue.

        Its constructors raise plain ValueError, KeyError or AttributeError for a
        date that does not exist (2027-02-30) or an explicit tag on text that is not
        of that type (!!int abc, !!bool maybe); those become located issues, and the
        text stands in for the value so that the rest of the file is still checked.
        """
        try:
            return self.loader.construct_object(node, deep=deep)
        except (ValueError, LookupError, AttributeError, TypeError, OverflowError) as exc:
            self._issue(node.start_mark.line + 1, _dotted(path), _unreadable(node, exc))
            return node.value if isinstance(node, yaml.ScalarNode) else None

    def _mapping(self, node: yaml.MappingNode, path: PathKey, out: dict[object, object]) -> None:
        seen: dict[object, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                key = (
                    key_node.value
                    if key_node.tag == _STR
                    else self._scalar(key_node, (*path, key_node.value))
                )
            else:
                self._issue(line, _dotted(path), "a key must be a plain value")
                continue
            if key in seen:
                self._issue(
                    line, _dotted((*path, str(key))), f"duplicate key (first at line {seen[key]})"
                )
                continue
            seen[key] = line
            self.lines[(*path, str(key))] = line
            out[key] = self.build(value_node, (*path, str(key)))
        # "<<: *defaults": keys of the merged mappings, unless this mapping sets them itself.
        for merge_node in merges:
            merged = self.build(merge_node, path)
            sources = merged if isinstance(merged, list) else [merged]
            for source in sources:
                if not isinstance(source, dict):
                    line = merge_node.start_mark.line + 1
                    self._issue(line, _dotted(path), "<< needs a mapping")
                    continue
                for k, v in source.items():
                    out.setdefault(k, v)


def _line_for(loc: tuple[str | int, ...], lines: dict[PathKey, int]) -> int:
    key = tuple(str(p) for p in loc)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return lines.get((), 1)


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(document)"


def _validation_issues(
    exc: ValidationError, lines: dict[PathKey, int], path: Path
) -> list[SpecIssue]:
    errors = exc.errors(include_url=False)
    # The missing fields of each model, by its location (a dict: a spec with aliases can
    # have a million unknown keys to compare with them).
    missing: dict[tuple[str | int, ...], list[str]] = {}
    for err in errors:
        if err["type"] == "missing" and err["loc"]:
            missing.setdefault(tuple(err["loc"][:-1]), []).append(str(err["loc"][-1]))
    unknown = Counter(tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden")
    # A misspelt required key shows up twice: unknown here, missing there. Say it once.
    # (Only for a few unknown keys in a mapping, not thousands: difflib is slow.)
    folded: set[tuple[str | int, ...]] = set()
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc:
            siblings = missing.get(loc[:-1])
            if not siblings or unknown[loc[:-1]] > MAX_REPORTED_ISSUES:
                continue
            close = difflib.get_close_matches(str(loc[-1]), siblings, n=1)
            if close:
                folded.add((*loc[:-1], close[0]))
    # A few lines of YAML can hold a million wrong values through aliases; wording each
    # takes far longer than the check. Word the first ones and count the rest.
    issues: list[SpecIssue] = []
    for err in errors:
        if err["type"] == "missing" and tuple(err["loc"]) in folded:
            continue
        loc = tuple(p for p in err["loc"] if p != "[key]")
        is_key = "[key]" in err["loc"]
        message = _message(err, loc, is_key)
        issues.append(SpecIssue(path, _line_for(loc, lines), _dotted(loc), message))
        if len(issues) == MAX_REPORTED_ISSUES:
            break
    return _capped(issues, len(errors) - len(folded))


def _capped(issues: list[SpecIssue], total: int) -> list[SpecIssue]:
    """The first issues, the last of them counting the ``total`` found but not listed."""
    if total <= MAX_REPORTED_ISSUES:
        return issues
    last = issues[MAX_REPORTED_ISSUES - 1]
    rest = total - MAX_REPORTED_ISSUES
    message = f"one more problem here and {rest:,} elsewhere are not listed; fix these first"
    return [
        *issues[: MAX_REPORTED_ISSUES - 1],
        SpecIssue(last.file, last.line, last.field, message),
    ]


def _message(err: Any, loc: tuple[str | int, ...], is_key: bool) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        hint = ""
        if allowed:
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (
                f"; did you mean '{close[0]}'?"
                if close
                else f"; allowed here: {', '.join(allowed)}"
            )
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        msg = "not a valid value here"
        field = _field_description(loc)
        if field:
            msg += f" (expected {field})"
    if is_key:
        msg = f"key: {msg}"
    value = err.get("input")
    if isinstance(value, str | int | float | bool) and kind not in {
        "value_error",
        "assertion_error",
    }:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg += f", got {shown}"
    return msg


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The spec model class that sits at ``loc``, following field annotations."""
    current: Any = Campus
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    for _ in range(10):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp
    return tp


def _allowed_fields(loc: tuple[str | int, ...]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _field_description(loc: tuple[str | int, ...]) -> str | None:
    if not loc:
        return None
    model = _model_at(loc[:-1])
    if model is None:
        return None
    field = model.model_fields.get(str(loc[-1]))
    if field is None:
        return None
    if field.description:
        return field.description
    for meta in typing.get_args(field.annotation):
        description = getattr(meta, "description", None)
        if description:
            return str(description)
    return None


def _guess_field(text: str, error_line: int) -> str:
    """The dotted path of the mapping a YAML syntax error sits in, read off indentation.

    The parser gives up at the error, so there is no node tree; the indentation of the
    lines before it is the best map of where the reader is.
    """
    stack: list[tuple[int, str, bool]] = []  # (indent, key or index, is_index)
    for number, original in enumerate(_lines_upto(text, error_line), start=1):
        raw = original
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        item = _ITEM_RE.match(raw)
        while item:
            while stack and (
                stack[-1][0] > indent or (stack[-1][0] == indent and not stack[-1][2])
            ):
                stack.pop()
            if stack and stack[-1][0] == indent and stack[-1][2]:
                last = stack.pop()
                stack.append((indent, str(int(last[1]) + 1), True))
            else:
                stack.append((indent, "0", True))
            indent = item.end()
            raw = " " * indent + raw[item.end() :]
            item = _ITEM_RE.match(raw)
        match = _KEY_LINE_RE.match(raw)
        if match is None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(3).strip("'\""), False))
        if number == error_line:
            break
    return ".".join(part for _, part, _ in stack) or "(document)"


def _lines_upto(text: str, last: int) -> Iterator[str]:
    for number, line in enumerate(text.splitlines(), start=1):
        if number > last:
            return
        yield line
