"""The ``campus`` section: who runs the campus and how it signs its evidence."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from campus_provision.spec.types import SPEC_MODEL_CONFIG, Cidr, Domain, Name, Text, Title


class CampusInfo(BaseModel):
    """Campus-wide identity, the admin network and the evidence signer."""

    model_config = SPEC_MODEL_CONFIG

    name: Title
    slug: Name
    domain: Domain
    admin_network: Cidr
    signing_identity: Title
    timezone: Title = "UTC"
    banner: Text | None = None
    # A public seat left logged in is an open door: shells end after this many idle minutes.
    idle_minutes: Annotated[StrictInt, Field(ge=1, le=240)] = 15
