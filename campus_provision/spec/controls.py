"""The ``controls`` section (family switches, waivers) and the control catalogue.

The catalogue (``campus_provision/controls.yaml``) also holds the table of SATRE
statements its controls serve; every reference a control makes must name a statement of
that table, so a typo or an ID of another SATRE version is an error when it is loaded.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import AfterValidator, BaseModel, Field, StrictBool, ValidationError, model_validator

from campus_provision.errors import SpecError, SpecIssue, SpecRuleError
from campus_provision.spec.types import (
    SPEC_MODEL_CONFIG,
    ControlId,
    Hostname,
    Text,
    Title,
)

CATALOGUE_FILE = "controls.yaml"

Family = Literal["NET", "PKG", "VOL", "USB", "PRN", "ACC", "AUD", "LOG", "TIME", "SYS"]
Severity = Literal["low", "medium", "high", "critical"]
Importance = Literal["Mandatory", "Recommended", "Optional"]

# SATRE v2.0 numbers a statement pillar.capability.statement, the statement in two
# digits (2.2.11, 2.1.01); 1.x wrote "2.1.1." or 2.1.1, which must not pass for v2.0.
_SATRE_ID = re.compile(r"[1-9][0-9]*\.[1-9][0-9]*\.[0-9]{2}")


def _check_satre_id(value: str) -> str:
    if _SATRE_ID.fullmatch(value) is None:
        raise ValueError(
            f"'{value}' is not a SATRE v2.0 statement ID: pillar.capability.statement, "
            "the statement in two digits (e.g. 2.2.11 or 2.1.01)"
        )
    return value


SatreId = Annotated[
    str,
    AfterValidator(_check_satre_id),
    Field(description="a SATRE v2.0 statement ID, e.g. 2.2.11"),
]


class SatreStatement(BaseModel):
    """One SATRE statement a control serves, paraphrased (the spec's text is not copied)."""

    model_config = SPEC_MODEL_CONFIG

    id: SatreId
    pillar: Title
    capability: Title
    importance: Importance
    summary: Text


class SatreTable(BaseModel):
    """The SATRE statements the catalogue refers to, and where they were read."""

    model_config = SPEC_MODEL_CONFIG

    version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+(?:\.[0-9]+)?$")]
    repository: Title
    path: Title
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
    statements: Annotated[list[SatreStatement], Field(min_length=1)]

    def by_id(self) -> dict[str, SatreStatement]:
        """The statements by their ID."""
        return {s.id: s for s in self.statements}


class Control(BaseModel):
    """One entry of the control catalogue (``campus_provision/controls.yaml``).

    ``satre`` lists the SATRE statements the control's check directly proves; a control
    no statement fits has none and says why in ``satre_none_reason``.
    """

    model_config = SPEC_MODEL_CONFIG

    id: ControlId
    title: Title
    family: Family
    severity: Severity
    role: Title
    satre: list[SatreId]
    satre_none_reason: Text | None = None
    rationale: Text

    @model_validator(mode="after")
    def _satre_or_reason(self) -> Self:
        if self.satre and self.satre_none_reason is not None:
            raise ValueError(
                "has SATRE statements and a satre_none_reason: keep the statements and drop "
                "the reason, or empty satre"
            )
        if not self.satre and self.satre_none_reason is None:
            raise ValueError(
                "serves no SATRE statement: list the ones its check proves in satre, or say "
                "in satre_none_reason why none fits"
            )
        twice = sorted({s for s in self.satre if self.satre.count(s) > 1})
        if twice:
            raise ValueError(f"lists SATRE {', '.join(twice)} more than once")
        return self


class Catalogue(BaseModel):
    """The whole control catalogue, with the SATRE statements its controls serve."""

    model_config = SPEC_MODEL_CONFIG

    satre: SatreTable
    controls: list[Control]

    @model_validator(mode="after")
    def _satre_refs_exist(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        known: set[str] = set()
        for i, statement in enumerate(self.satre.statements):
            if statement.id in known:
                problems.append(
                    (("satre", "statements", i, "id"), f"statement {statement.id} is listed twice")
                )
            known.add(statement.id)
        problems += [
            (
                ("controls", i, "satre", j),
                f"no statement {ref} in the catalogue's SATRE {self.satre.version} table "
                "(satre.statements)",
            )
            for i, control in enumerate(self.controls)
            for j, ref in enumerate(control.satre)
            if ref not in known
        ]
        if problems:
            raise SpecRuleError(problems)
        return self

    def ids(self) -> frozenset[str]:
        """Every control ID of the catalogue."""
        return frozenset(c.id for c in self.controls)

    def statements(self, control: Control) -> list[SatreStatement]:
        """The SATRE statements ``control`` serves, in its order."""
        known = self.satre.by_id()
        return [known[ref] for ref in control.satre]


@cache
def load_catalogue() -> Catalogue:
    """Read the catalogue shipped with the package (cached).

    Raises SpecError, one line per problem naming the file, line, field and control.
    """
    resource = files("campus_provision").joinpath(CATALOGUE_FILE)
    return parse_catalogue(resource.read_text(encoding="utf-8"), Path(str(resource)))


def parse_catalogue(text: str, file: Path) -> Catalogue:
    """The catalogue in ``text`` (read from ``file``), validated.

    Raises SpecError: each issue carries ``file``, the line, the field path and, for a
    problem inside a control, that control's ID.
    """
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise SpecError([SpecIssue(file, line, "(document)", f"not valid YAML: {exc}")]) from None
    problems: list[tuple[tuple[str | int, ...], str]]
    try:
        return Catalogue.model_validate(data)
    except SpecRuleError as exc:
        problems = exc.problems
    except ValidationError as exc:
        problems = [
            (tuple(e["loc"]), str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors(include_url=False)
        ]
    lines = _line_numbers(root)
    raise SpecError(
        [
            SpecIssue(file, _line_of(loc, lines), _dotted(loc), _about(data, loc, message))
            for loc, message in problems
        ]
    )


def _line_numbers(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """The 1-based line of every mapping value and sequence item, by its path."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                walk(value, (*path, str(key.value)))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, str(i)))

    if node is not None:
        walk(node, ())
    return lines


def _line_of(loc: tuple[str | int, ...], lines: dict[tuple[str, ...], int]) -> int:
    key = tuple(str(p) for p in loc)
    while key and key not in lines:
        key = key[:-1]
    return lines.get(key, 1)


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(document)"


def _about(data: object, loc: tuple[str | int, ...], message: str) -> str:
    """``message``, led by the ID of the control it is about (when it is about one)."""
    if (
        len(loc) >= 2
        and loc[0] == "controls"
        and isinstance(loc[1], int)
        and isinstance(data, dict)
    ):
        controls = data.get("controls")
        if isinstance(controls, list) and loc[1] < len(controls):
            entry = controls[loc[1]]
            cid = entry.get("id") if isinstance(entry, dict) else None
            return f"{cid if isinstance(cid, str) else f'control #{loc[1] + 1}'}: {message}"
    return message


class FamilySwitches(BaseModel):
    """Which control families the roles apply and verify checks; all on by default."""

    model_config = SPEC_MODEL_CONFIG

    net: StrictBool = True
    pkg: StrictBool = True
    vol: StrictBool = True
    usb: StrictBool = True
    prn: StrictBool = True
    acc: StrictBool = True
    aud: StrictBool = True
    log: StrictBool = True
    time: StrictBool = True
    sys: StrictBool = True


class Waiver(BaseModel):
    """A failure of one control on named hosts that is accepted until ``expires``.

    An expired waiver no longer excuses a failure; the report says it expired.
    """

    model_config = SPEC_MODEL_CONFIG

    control: ControlId
    hosts: Annotated[list[Hostname], Field(min_length=1)]
    justification: Annotated[str, Field(min_length=20, max_length=2000)]
    expires: dt.date
    approved_by: Title
    ticket: Title | None = None


class Controls(BaseModel):
    """Control family switches and waivers."""

    model_config = SPEC_MODEL_CONFIG

    families: FamilySwitches = FamilySwitches()
    waivers: list[Waiver] = []
    notes: Text | None = None
