"""The ``controls`` section (family switches, waivers) and the control catalogue."""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib.resources import files
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, Field, StrictBool

from campus_provision.spec.types import (
    SPEC_MODEL_CONFIG,
    ControlId,
    Hostname,
    Text,
    Title,
)

Family = Literal["NET", "PKG", "VOL", "USB", "PRN", "ACC", "AUD", "LOG", "TIME"]
Severity = Literal["low", "medium", "high", "critical"]


class Control(BaseModel):
    """One entry of the control catalogue (``campus_provision/controls.yaml``)."""

    model_config = SPEC_MODEL_CONFIG

    id: ControlId
    title: Title
    family: Family
    severity: Severity
    role: Title
    satre: list[str]
    rationale: Text


class Catalogue(BaseModel):
    """The whole control catalogue."""

    model_config = SPEC_MODEL_CONFIG

    controls: list[Control]

    def ids(self) -> frozenset[str]:
        """Every control ID of the catalogue."""
        return frozenset(c.id for c in self.controls)


@cache
def load_catalogue() -> Catalogue:
    """Read the catalogue shipped with the package (cached)."""
    text = files("campus_provision").joinpath("controls.yaml").read_text(encoding="utf-8")
    return Catalogue.model_validate(yaml.safe_load(text))


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
