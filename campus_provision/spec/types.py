"""Annotated types shared by the spec models (and reusable for CLI option checks)."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StringConstraints

# Every spec model: a misspelt key is an error, and a loaded spec cannot be changed.
SPEC_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$"),
    Field(description="lower-case name: letters, digits and '-', starting with a letter"),
]
"""An identifier for sites, rooms, profiles, datasets, groups and services."""

Hostname = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    Field(description="a single DNS label (RFC 1123), lower case"),
]

Username = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$"),
    Field(description="a POSIX user name: lower case, at most 32 characters"),
]

Domain = Annotated[
    str,
    StringConstraints(
        max_length=253,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$",
    ),
]

DebianPackageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]
DebianVersion = Annotated[str, StringConstraints(pattern=r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")]

ControlId = Annotated[
    str,
    StringConstraints(pattern=r"^CP-[A-Z]+-[0-9]{2}$"),
    Field(description="a control ID from the catalogue, e.g. CP-NET-01"),
]

Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


def _normalise_mac(value: object) -> object:
    if isinstance(value, str):
        return value.strip().lower().replace("-", ":")
    return value


MacAddress = Annotated[
    str,
    BeforeValidator(_normalise_mac),
    StringConstraints(pattern=r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$"),
]

Tier = Literal["open", "restricted", "confidential"]
ExportPolicy = Literal["forbidden", "allowed"]
Protocol = Literal["tcp", "udp"]

_PORT_RE = re.compile(r"^(?P<port>[0-9]{1,5})/(?P<proto>tcp|udp)$")


def _check_port(value: str) -> str:
    match = _PORT_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"'{value}' is not PORT/tcp or PORT/udp (for example 443/tcp)")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return f"{port}/{match['proto']}"


PortSpec = Annotated[str, AfterValidator(_check_port)]
"""A service port as PORT/PROTO, e.g. ``123/udp``."""

SshPublicKey = Annotated[
    str,
    StringConstraints(
        pattern=(
            r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|sk-ssh-ed25519@openssh\.com)"
            r" [A-Za-z0-9+/=]{16,}( .*)?$"
        )
    ),
    Field(description="one OpenSSH public key line"),
]

DevicePath = Annotated[str, StringConstraints(pattern=r"^/dev/[A-Za-z0-9/_.-]+$")]


def _check_cidr(value: object) -> object:
    # ipaddress says "has host bits set"; say which network was meant.
    if isinstance(value, str):
        try:
            return IPv4Network(value.strip())
        except ValueError as exc:
            if "host bits" in str(exc):
                meant = IPv4Network(value.strip(), strict=False)
                raise ValueError(f"{value} has host bits set; the network is {meant}") from None
            raise ValueError(
                f"'{value}' is not an IPv4 network in CIDR form (e.g. 10.21.0.0/23)"
            ) from None
    if not isinstance(value, IPv4Network):
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form (e.g. 10.21.0.0/23)")
    return value


Cidr = Annotated[IPv4Network, BeforeValidator(_check_cidr)]

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$")


def _fast_ipv4(value: object) -> object:
    # ipaddress parses a dotted quad in ~20 us; a spec can list 10,000 PCs. Build the
    # address from its integer instead; anything unusual goes to pydantic's own check.
    if isinstance(value, str) and _IPV4_RE.fullmatch(value):
        a, b, c, d = (int(part) for part in value.split("."))
        return IPv4Address((a << 24) | (b << 16) | (c << 8) | d)
    if not isinstance(value, str | IPv4Address):
        # pydantic would take 1 (or true) as 0.0.0.1; a spec writes addresses as text.
        raise ValueError(f"{value!r} is not an IPv4 address in dotted form (e.g. 10.21.0.11)")
    return value


IPv4 = Annotated[IPv4Address, BeforeValidator(_fast_ipv4)]
