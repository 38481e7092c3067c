"""A host's identity in the lab: the files that make a generic image into one host.

Containers get these files in their overlay's upper directory; VMs get them on a small
seed disk that a unit in the image copies onto ``/`` at boot, before networking and sshd.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface


@dataclass(frozen=True)
class HostSeed:
    """Who a lab host is: name, MAC, address on the lab LAN, and who may log in."""

    hostname: str
    mac: str
    address: IPv4Interface  # e.g. 10.254.1.11/24
    gateway: IPv4Address
    authorized_keys: str  # OpenSSH public key lines for root
    machine_id: str  # 32 hex digits
