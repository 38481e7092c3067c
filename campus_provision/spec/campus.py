"""The ``campus`` section: who runs the campus and how it signs its evidence."""

from __future__ import annotations

from pydantic import BaseModel

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
