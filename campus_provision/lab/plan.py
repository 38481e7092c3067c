"""What a lab is made of: which hosts of the spec, at which lab addresses.

The lab plays the campus: every service host of the spec, and the first N PCs of each
site. Each spec network gets a /24 of the lab range, with the same host numbers where
they fit, so ``sgm-a01`` at 10.21.0.11 becomes 10.254.1.11. The slice is a real
``Campus`` (validated by the same rules) and is rendered by the normal render path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Literal

from campus_provision.errors import LabError
from campus_provision.spec.model import Campus

Driver = Literal["nspawn", "qemu"]

LAB_RANGE = IPv4Network("10.254.0.0/16")
ADMIN_SUBNET = IPv4Network("10.254.0.0/24")  # the controller's side: its source address
ROUTER_ADMIN = IPv4Interface("10.254.0.1/24")
OUTSIDE_HOST = IPv4Address("10.255.0.80")  # the internet stand-in
UPLINK = IPv4Network("10.255.255.0/30")  # campus router .1 <-> outside .2
OUTSIDE_PORTS = (22, 53, 80, 443)
OUTSIDE_UDP_PORTS = (53, 123, 443)  # echoed back: NET-01 proves UDP egress closed too
VM_DATA_DISK = "/dev/disk/by-id/virtio-campus-data"
# Service kinds a campus role runs on the lab's service hosts (campus_mirror,
# campus_log_server, campus_time_server). The others (a DNS resolver, a licence server)
# are not the project's to install: the lab stands in for them with plain listeners.
ROLE_SERVED_KINDS = frozenset({"mirror", "log", "ntp"})


@dataclass(frozen=True)
class LabNetwork:
    """A spec network as the lab builds it: a /24 on the campus bridge."""

    site: str
    name: str
    cidr: IPv4Network
    gateway: IPv4Address


@dataclass(frozen=True)
class LabHost:
    """One host the lab starts."""

    name: str
    role: Literal["workstation", "service"]
    driver: Driver
    index: int
    address: IPv4Interface
    gateway: IPv4Address
    mac: str


@dataclass(frozen=True)
class LabPlan:
    """Everything ``lab up`` builds; its fingerprint tells whether a running lab matches."""

    campus: Campus
    hosts: tuple[LabHost, ...]
    networks: tuple[LabNetwork, ...]

    def host(self, name: str) -> LabHost:
        """The lab host called ``name``."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(
            f"no host '{name}' in this lab (hosts: {', '.join(h.name for h in self.hosts)})"
        )

    def fingerprint(self) -> str:
        """A short hash of hosts, drivers and addresses."""
        data = [(h.name, h.role, h.driver, str(h.address), h.mac) for h in self.hosts]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Standin:
    """Listeners standing in for a service host's services that no campus role runs."""

    host: str
    services: tuple[str, ...]
    tcp: tuple[int, ...]
    udp: tuple[int, ...]


def standins(campus: Campus) -> list[Standin]:
    """The stand-ins the lab runs: per service host, the ports of its unmanaged services.

    A port that a role-run service on the same host also uses is left to that role.
    """
    served: dict[str, set[tuple[int, str]]] = {}
    wanted: dict[str, dict[str, set[tuple[int, str]]]] = {}
    for svc in campus.services:
        ports = {(int(p.split("/")[0]), p.split("/")[1]) for p in svc.ports}
        if svc.kind in ROLE_SERVED_KINDS:
            served.setdefault(svc.hostname, set()).update(ports)
        else:
            wanted.setdefault(svc.hostname, {}).setdefault(svc.name, set()).update(ports)
    out = []
    for host, by_service in wanted.items():
        ports = set().union(*by_service.values()) - served.get(host, set())
        if ports:
            out.append(
                Standin(
                    host,
                    tuple(sorted(by_service)),
                    tuple(sorted(p for p, proto in ports if proto == "tcp")),
                    tuple(sorted(p for p, proto in ports if proto == "udp")),
                )
            )
    return out


def mac_for(index: int) -> str:
    """Fixed, locally administered MAC per host index (no stale neighbour entries)."""
    return f"02:cb:00:00:{index >> 8:02x}:{index & 255:02x}"


def build_plan(
    campus: Campus, per_site: int, driver: Driver = "nspawn", sites: list[str] | None = None
) -> LabPlan:
    """The lab for ``campus``: all service hosts, the first ``per_site`` PCs of each site."""
    if per_site < 0:
        raise LabError("--per-site must be 0 or more")
    for wanted in sites or []:
        if wanted not in campus.sites:
            raise LabError(f"no site '{wanted}' in the spec (sites: {', '.join(campus.sites)})")
    networks: dict[tuple[str, str], LabNetwork] = {}
    for site_name, site in campus.sites.items():
        for net_name, net in site.networks.items():
            k = len(networks) + 1
            if k > 250:
                raise LabError(
                    "the spec has more than 250 networks; the lab range has room for 250"
                )
            cidr = IPv4Network(f"10.254.{k}.0/24")
            networks[(site_name, net_name)] = LabNetwork(
                site_name, net_name, cidr, cidr.network_address + 1
            )
            del net

    used: set[IPv4Address] = set()

    def lab_address(site_name: str, net_name: str, spec_ip: IPv4Address) -> IPv4Interface:
        lab_net = networks[(site_name, net_name)]
        spec_net = campus.sites[site_name].networks[net_name].cidr
        offset = int(spec_ip) - int(spec_net.network_address)
        candidate = lab_net.cidr.network_address + offset if 2 <= offset <= 254 else None
        if candidate is None or candidate in used:
            candidate = next(
                (a for a in lab_net.cidr.hosts() if int(a) & 255 >= 10 and a not in used), None
            )
            if candidate is None:
                raise LabError(f"network {site_name}/{net_name} has no free lab address left")
        used.add(candidate)
        return IPv4Interface(f"{candidate}/{lab_net.cidr.prefixlen}")

    hosts: list[LabHost] = []
    service_ips: dict[str, IPv4Interface] = {}
    for svc in campus.services:
        if svc.hostname in service_ips:
            continue
        net_name = next(
            n for n, net in campus.sites[svc.site].networks.items() if svc.ip in net.cidr
        )
        address = lab_address(svc.site, net_name, svc.ip)
        service_ips[svc.hostname] = address
        gateway = networks[(svc.site, net_name)].gateway
        index = len(hosts) + 1
        hosts.append(
            LabHost(svc.hostname, "service", "nspawn", index, address, gateway, mac_for(index))
        )

    chosen: dict[str, tuple[IPv4Interface, str]] = {}
    for site_name, site in campus.sites.items():
        if sites is not None and site_name not in sites:
            continue
        pcs = [w for w in campus.workstations if w.site == site_name][:per_site]
        for ws in pcs:
            net_name = site.rooms[ws.room].network
            address = lab_address(site_name, net_name, ws.ip)
            gateway = networks[(site_name, net_name)].gateway
            index = len(hosts) + 1
            mac = mac_for(index)
            hosts.append(LabHost(ws.hostname, "workstation", driver, index, address, gateway, mac))
            chosen[ws.hostname] = (address, mac)

    lab_campus = _slice(campus, networks, service_ips, chosen, driver)
    return LabPlan(campus=lab_campus, hosts=tuple(hosts), networks=tuple(networks.values()))


def _slice(
    campus: Campus,
    networks: dict[tuple[str, str], LabNetwork],
    service_ips: dict[str, IPv4Interface],
    chosen: dict[str, tuple[IPv4Interface, str]],
    driver: Driver,
) -> Campus:
    data: dict[str, Any] = campus.model_dump(mode="json", exclude_defaults=False)
    data["campus"]["admin_network"] = str(ADMIN_SUBNET)
    for site_name, site in data["sites"].items():
        for net_name, net in site["networks"].items():
            lab_net = networks[(site_name, net_name)]
            net["cidr"] = str(lab_net.cidr)
            net["gateway"] = str(lab_net.gateway)
        groups = []
        for group in site["workstation_groups"]:
            members = [
                w for w in campus.workstations if w.group == group["name"] and w.hostname in chosen
            ]
            if not members:
                continue
            for key in ("count", "hostname", "first_ip"):
                group.pop(key, None)
            if driver == "qemu":  # the VM's dataset disk, by the serial the lab gives it
                group["data_disk"] = VM_DATA_DISK
            group["hosts"] = [
                {
                    "hostname": w.hostname,
                    "ip": str(chosen[w.hostname][0].ip),
                    "mac": chosen[w.hostname][1],
                }
                for w in members
            ]
            groups.append(group)
        site["workstation_groups"] = groups
    for svc in data["services"]:
        svc["ip"] = str(service_ips[svc["hostname"]].ip)
    present = set(chosen) | set(service_ips)
    waivers = []
    for waiver in data["controls"]["waivers"]:
        waiver["hosts"] = [h for h in waiver["hosts"] if h in present]
        if waiver["hosts"]:
            waivers.append(waiver)
    data["controls"]["waivers"] = waivers
    return Campus.model_validate(data)
