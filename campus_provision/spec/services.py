"""The ``services`` section: the campus hosts PCs may reach (the egress allowlist)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from campus_provision.spec.types import SPEC_MODEL_CONFIG, Hostname, IPv4, Name, PortSpec, Title

ServiceKind = Literal["mirror", "log", "ntp", "dns", "licence", "other"]


class Service(BaseModel):
    """A campus service; PCs may open connections to exactly these host:port pairs.

    ``scope: site`` services are reachable from their own site's PCs; ``campus``
    services from every site's.
    """

    model_config = SPEC_MODEL_CONFIG

    name: Name
    kind: ServiceKind
    site: Name
    hostname: Hostname
    ip: IPv4
    ports: Annotated[list[PortSpec], Field(min_length=1)]
    scope: Literal["site", "campus"] = "site"
    title: Title | None = None
