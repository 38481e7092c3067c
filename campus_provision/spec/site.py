"""The ``sites`` section: networks, rooms and the workstation groups in them."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, StrictInt, model_validator

from campus_provision.spec.types import (
    SPEC_MODEL_CONFIG,
    Cidr,
    DevicePath,
    Hostname,
    IPv4,
    MacAddress,
    Name,
    Title,
)

_PATTERN_RE = re.compile(r"^[a-z0-9-]*\{n(?::0?[1-9]d)?\}[a-z0-9-]*$")
MAX_GROUP_COUNT = 20_000
_LAST_IPV4 = 2**32 - 1


def _check_hostname_pattern(value: str) -> str:
    if not _PATTERN_RE.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a hostname pattern: use lower-case letters, digits and '-' "
            "around one {n} or {n:02d} placeholder (for example 'sgm-a{n:02d}')"
        )
    return value


HostnamePattern = Annotated[str, AfterValidator(_check_hostname_pattern)]


class Network(BaseModel):
    """One IPv4 network of a site (a VLAN with its gateway)."""

    model_config = SPEC_MODEL_CONFIG

    cidr: Cidr
    gateway: IPv4
    vlan: Annotated[StrictInt, Field(ge=1, le=4094)] | None = None


class Room(BaseModel):
    """A room of a site; its PCs sit on one of the site's networks."""

    model_config = SPEC_MODEL_CONFIG

    title: Title
    floor: Title | None = None
    network: Name


class WorkstationHost(BaseModel):
    """One explicitly listed PC."""

    model_config = SPEC_MODEL_CONFIG

    hostname: Hostname
    ip: IPv4
    mac: MacAddress | None = None


class WorkstationGroup(BaseModel):
    """PCs that share a room, a software profile and dataset volumes.

    Either ``count`` PCs named by the ``hostname`` pattern with consecutive
    addresses from ``first_ip``, or an explicit ``hosts`` list.
    """

    model_config = SPEC_MODEL_CONFIG

    name: Name
    room: Name
    profile: Name
    datasets: list[Name] = []
    data_disk: DevicePath = "/dev/sdb"
    count: Annotated[StrictInt, Field(ge=1, le=MAX_GROUP_COUNT)] | None = None
    hostname: HostnamePattern | None = None
    first_ip: IPv4 | None = None
    hosts: Annotated[list[WorkstationHost], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _either_pattern_or_hosts(self) -> Self:
        generated = (self.count, self.hostname, self.first_ip)
        if self.hosts is not None:
            if any(v is not None for v in generated):
                raise ValueError("give either hosts, or count with hostname and first_ip; not both")
            return self
        if self.count is None or self.hostname is None or self.first_ip is None:
            raise ValueError("give count, hostname and first_ip together (or list hosts instead)")
        # Checked here, not with the network rules: expanding such a group would fail.
        if int(self.first_ip) + self.count - 1 > _LAST_IPV4:
            raise ValueError(
                f"{self.count} PCs from {self.first_ip} run past 255.255.255.255, the last "
                "IPv4 address"
            )
        return self


class Site(BaseModel):
    """One campus site (e.g. Sangam or Gaepo)."""

    model_config = SPEC_MODEL_CONFIG

    title: Title
    address: Title | None = None
    networks: Annotated[dict[Name, Network], Field(min_length=1)]
    rooms: Annotated[dict[Name, Room], Field(min_length=1)]
    workstation_groups: list[WorkstationGroup] = []
