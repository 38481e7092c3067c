"""The ``datasets`` section: the catalogue of data PCs carry, with sensitivity tiers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ByteSize, StringConstraints

from campus_provision.spec.types import SPEC_MODEL_CONFIG, ExportPolicy, Name, Text, Tier, Title

TIER_RANK: dict[str, int] = {"open": 0, "restricted": 1, "confidential": 2}
DatasetVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]


class Dataset(BaseModel):
    """One dataset of the catalogue.

    ``export`` is the policy for raw records leaving the campus; restricted and
    confidential data may never be exported. ``readers`` are analyst groups.
    """

    model_config = SPEC_MODEL_CONFIG

    id: Name
    title: Title
    owner: Title
    tier: Tier
    version: DatasetVersion
    size: ByteSize
    export: ExportPolicy
    readers: list[Name] = []
    source: Title | None = None
    description: Text | None = None
