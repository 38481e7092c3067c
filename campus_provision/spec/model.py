"""The root ``Campus`` model and the cross-field rules that tie its sections together."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from campus_provision.errors import SpecRuleError
from campus_provision.spec.accounts import GENERIC_USERNAMES, Accounts
from campus_provision.spec.campus import CampusInfo
from campus_provision.spec.controls import Controls, load_catalogue
from campus_provision.spec.datasets import TIER_RANK, Dataset
from campus_provision.spec.services import Service
from campus_provision.spec.site import Site, WorkstationGroup
from campus_provision.spec.software import SoftwareProfile
from campus_provision.spec.types import SPEC_MODEL_CONFIG, Name, Tier

Path = tuple[str | int, ...]
# Groups of up to 20,000 PCs each are allowed, but not without end: a 20-line spec must
# not make the loader build millions of PCs (about 0.5 KiB each) to check them.
MAX_CAMPUS_PCS = 100_000


@dataclass(frozen=True, slots=True)
class Workstation:
    """One PC as the spec describes it, after groups are expanded."""

    hostname: str
    ip: IPv4Address
    mac: str | None
    site: str
    room: str
    group: str
    profile: str
    datasets: tuple[str, ...]
    tier: Tier
    data_disk: str
    # Where in the spec this PC's hostname and address are set, for error messages.
    origin: Path
    ip_origin: Path


class Campus(BaseModel):
    """A whole campus spec: both sites, their PCs, services, software, data, people."""

    model_config = SPEC_MODEL_CONFIG

    campus: CampusInfo
    sites: Annotated[dict[Name, Site], Field(min_length=1)]
    services: list[Service] = []
    software_profiles: Annotated[dict[Name, SoftwareProfile], Field(min_length=1)]
    datasets: list[Dataset] = []
    accounts: Accounts
    controls: Controls = Controls()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        problems = _Rules(self).run()
        if problems:
            raise SpecRuleError(problems)
        return self

    @cached_property
    def workstations(self) -> tuple[Workstation, ...]:
        """Every PC of every site, in spec order."""
        return tuple(_expand_all(self))

    @cached_property
    def dataset_by_id(self) -> dict[str, Dataset]:
        """The catalogue by dataset id."""
        return {d.id: d for d in self.datasets}

    def services_for_site(self, site: str) -> list[Service]:
        """The services a PC of ``site`` may reach: its site's and campus-wide ones."""
        return [s for s in self.services if s.site == site or s.scope == "campus"]


def _group_tier(campus: Campus, group: WorkstationGroup) -> Tier:
    tier: Tier = "open"
    for ds_id in group.datasets:
        ds = campus.dataset_by_id.get(ds_id)
        if ds is not None and TIER_RANK[ds.tier] > TIER_RANK[tier]:
            tier = ds.tier
    return tier


def _expand_group(
    campus: Campus, site_name: str, index: int, group: WorkstationGroup
) -> list[Workstation]:
    base: Path = ("sites", site_name, "workstation_groups", index)
    tier = _group_tier(campus, group)
    datasets = tuple(group.datasets)

    def pc(
        hostname: str, ip: IPv4Address, mac: str | None, origin: Path, ip_origin: Path
    ) -> Workstation:
        return Workstation(
            hostname=hostname, ip=ip, mac=mac, site=site_name, room=group.room, group=group.name,
            profile=group.profile, datasets=datasets, tier=tier, data_disk=group.data_disk,
            origin=origin, ip_origin=ip_origin,
        )  # fmt: skip

    if group.hosts is not None:
        return [
            pc(h.hostname, h.ip, h.mac, (*base, "hosts", j, "hostname"), (*base, "hosts", j, "ip"))
            for j, h in enumerate(group.hosts)
        ]
    if group.count is None or group.hostname is None or group.first_ip is None:
        raise ValueError(f"group '{group.name}' has neither hosts nor a pattern")  # validated
    first = int(group.first_ip)
    pattern = group.hostname
    return [
        pc(
            pattern.format(n=n),
            IPv4Address(first + n - 1),
            None,
            (*base, "hostname"),
            (*base, "first_ip"),
        )
        for n in range(1, group.count + 1)
    ]


def _expand_all(campus: Campus) -> list[Workstation]:
    out: list[Workstation] = []
    for site_name, site in campus.sites.items():
        for i, group in enumerate(site.workstation_groups):
            out.extend(_expand_group(campus, site_name, i, group))
    return out


def ansible_group(*parts: str) -> str:
    """The Ansible group render makes from spec names ('-' is not valid in group names)."""
    return "_".join(p.replace("-", "_") for p in parts)


class _Rules:
    """Cross-field rules; each problem is reported at the field that must change."""

    def __init__(self, campus: Campus) -> None:
        self.c = campus
        self.problems: list[tuple[Path, str]] = []
        self.too_many_pcs = False

    def add(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    def run(self) -> list[tuple[Path, str]]:
        self.size()
        self.networks()
        self.references()
        if not self.problems:
            # Host-level rules need valid groups (rooms, address ranges) to mean anything.
            self.hosts()
        self.group_names()
        self.services()
        self.datasets()
        self.accounts()
        self.password_policy()
        self.controls()
        return self.problems

    @staticmethod
    def _where(path: Path) -> str:
        return ".".join(str(p) for p in path)

    def size(self) -> None:
        total = 0
        for site_name, site in self.c.sites.items():
            for i, group in enumerate(site.workstation_groups):
                total += len(group.hosts) if group.hosts is not None else group.count or 0
                if total > MAX_CAMPUS_PCS:
                    field = "hosts" if group.hosts is not None else "count"
                    self.add(
                        ("sites", site_name, "workstation_groups", i, field),
                        f"this group brings the campus to {total:,} PCs, over the limit of "
                        f"{MAX_CAMPUS_PCS:,}",
                    )
                    self.too_many_pcs = True
                    return

    def group_names(self) -> None:
        """Rooms of different sites must not render to one inventory group.

        Site ``sangam`` with room ``analysis-a`` and site ``sangam-analysis`` with room
        ``a`` would both be ``room_sangam_analysis_a``: one site's PCs would get the other's
        services and analysts.
        """
        seen: dict[str, tuple[str, str]] = {}
        for site_name, site in self.c.sites.items():
            for room in site.rooms:
                name = ansible_group("room", site_name, room)
                if name in seen:
                    other_site, other_room = seen[name]
                    self.add(
                        ("sites", site_name, "rooms", room),
                        f"renders to the inventory group {name}, as room '{other_room}' of "
                        f"site '{other_site}' does; rename one of them",
                    )
                else:
                    seen[name] = (site_name, room)

    def networks(self) -> None:
        seen: list[tuple[IPv4Network, Path]] = [
            (self.c.campus.admin_network, ("campus", "admin_network"))
        ]
        for site_name, site in self.c.sites.items():
            for net_name, net in site.networks.items():
                path: Path = ("sites", site_name, "networks", net_name)
                for other, other_path in seen:
                    if net.cidr.overlaps(other):
                        self.add(
                            (*path, "cidr"),
                            f"{net.cidr} overlaps {other} ({self._where(other_path)})",
                        )
                seen.append((net.cidr, (*path, "cidr")))
                usable = net.cidr.num_addresses > 2
                if net.gateway not in net.cidr or (
                    usable and net.gateway in (net.cidr.network_address, net.cidr.broadcast_address)
                ):
                    self.add(
                        (*path, "gateway"), f"{net.gateway} is not a host address of {net.cidr}"
                    )

    def references(self) -> None:
        profiles = self.c.software_profiles
        datasets = self.c.dataset_by_id
        group_names: dict[str, Path] = {}
        for site_name, site in self.c.sites.items():
            for room_name, room in site.rooms.items():
                if room.network not in site.networks:
                    self.add(
                        ("sites", site_name, "rooms", room_name, "network"),
                        f"no network '{room.network}' in site '{site_name}'"
                        f" (known: {', '.join(site.networks)})",
                    )
            for i, group in enumerate(site.workstation_groups):
                path: Path = ("sites", site_name, "workstation_groups", i)
                if group.name in group_names:
                    self.add(
                        (*path, "name"),
                        f"workstation group '{group.name}' is already defined at "
                        f"{self._where(group_names[group.name])}",
                    )
                group_names[group.name] = path
                if group.room not in site.rooms:
                    self.add(
                        (*path, "room"),
                        f"no room '{group.room}' in site '{site_name}' "
                        f"(known: {', '.join(site.rooms)})",
                    )
                if group.profile not in profiles:
                    self.add(
                        (*path, "profile"),
                        f"no software profile '{group.profile}' (known: {', '.join(profiles)})",
                    )
                for j, ds in enumerate(group.datasets):
                    if ds not in datasets:
                        self.add((*path, "datasets", j), f"no dataset '{ds}' in the catalogue")
                if len(set(group.datasets)) != len(group.datasets):
                    self.add((*path, "datasets"), "a dataset is listed twice")

    def hosts(self) -> None:
        self.address_ranges()
        self.unique_hosts()

    def address_ranges(self) -> None:
        # One range check per generated group instead of one per PC: groups can be big.
        for site_name, site in self.c.sites.items():
            for i, group in enumerate(site.workstation_groups):
                net = site.networks[site.rooms[group.room].network]
                path: Path = ("sites", site_name, "workstation_groups", i)
                if group.first_ip is not None and group.count is not None:
                    last = IPv4Address(int(group.first_ip) + group.count - 1)
                    if group.first_ip not in net.cidr or last not in net.cidr:
                        self.add(
                            (*path, "first_ip"),
                            f"{group.count} PCs from {group.first_ip} (up to {last}) do not fit in "
                            f"network {net.cidr} of room '{group.room}'",
                        )
                        continue
                    if int(group.first_ip) <= int(net.gateway) <= int(last):
                        self.add(
                            (*path, "first_ip"),
                            f"the range {group.first_ip}-{last} includes the gateway {net.gateway}",
                        )
                    if len(group.hostname.format(n=group.count)) > 63:  # type: ignore[union-attr]
                        self.add((*path, "hostname"), "generated hostnames exceed 63 characters")
                for j, h in enumerate(group.hosts or []):
                    if h.ip not in net.cidr:
                        self.add(
                            (*path, "hosts", j, "ip"),
                            f"{h.ip} is outside network {net.cidr} of room '{group.room}'",
                        )
                    elif h.ip in (
                        net.gateway,
                        net.cidr.network_address,
                        net.cidr.broadcast_address,
                    ):
                        self.add((*path, "hosts", j, "ip"), f"{h.ip} is not a usable host address")

    def unique_hosts(self) -> None:
        names: dict[str, Path] = {}
        ips: dict[int, Path] = {}
        macs: dict[str, Path] = {}
        service_hosts = {s.hostname for s in self.c.services}
        service_ips = {int(s.ip) for s in self.c.services}
        # A clash inside a generated group repeats for each of its PCs: report it once
        # per spec field, with how many PCs clash.
        clashes: dict[Path, tuple[str, int]] = {}

        def clash(origin: Path, message: str) -> None:
            first, count = clashes.get(origin, (message, 0))
            clashes[origin] = (first, count + 1)

        for ws in self.c.workstations:
            if ws.hostname in names or ws.hostname in service_hosts:
                where = names.get(ws.hostname)
                clash(
                    ws.origin,
                    f"hostname '{ws.hostname}' is used twice"
                    + (f" (first at {self._where(where)})" if where else " (also a service host)"),
                )
            else:
                names[ws.hostname] = ws.origin
            ip = int(ws.ip)
            if ip in ips or ip in service_ips:
                where = ips.get(ip)
                clash(
                    ws.ip_origin,
                    f"address {ws.ip} of '{ws.hostname}' is used twice"
                    + (
                        f" (first at {self._where(where)})"
                        if where
                        else " (also a service address)"
                    ),
                )
            else:
                ips[ip] = ws.ip_origin
            if ws.mac is not None:
                if ws.mac in macs:
                    self.add(
                        (*ws.origin[:-1], "mac"),
                        f"MAC {ws.mac} is used twice (first at {self._where(macs[ws.mac])})",
                    )
                else:
                    macs[ws.mac] = (*ws.origin[:-1], "mac")
        for origin, (message, count) in clashes.items():
            self.add(origin, message + (f"; {count} PCs of this group clash" if count > 1 else ""))

    def services(self) -> None:
        names: set[str] = set()
        host_ip: dict[str, tuple[IPv4Address, Path]] = {}
        for i, svc in enumerate(self.c.services):
            path: Path = ("services", i)
            if svc.name in names:
                self.add((*path, "name"), f"service '{svc.name}' is defined twice")
            names.add(svc.name)
            site = self.c.sites.get(svc.site)
            if site is None:
                self.add(
                    (*path, "site"), f"no site '{svc.site}' (known: {', '.join(self.c.sites)})"
                )
            elif not any(svc.ip in n.cidr for n in site.networks.values()):
                self.add(
                    (*path, "ip"),
                    f"{svc.ip} is outside every network of site '{svc.site}'",
                )
            if len(set(svc.ports)) != len(svc.ports):
                self.add((*path, "ports"), "a port is listed twice")
            known = host_ip.get(svc.hostname)
            if known is not None and known[0] != svc.ip:
                self.add(
                    (*path, "ip"),
                    f"host '{svc.hostname}' has address {known[0]} at {self._where(known[1])}",
                )
            host_ip.setdefault(svc.hostname, (svc.ip, (*path, "ip")))
        ips: dict[IPv4Address, str] = {}
        for i, svc in enumerate(self.c.services):
            owner = ips.setdefault(svc.ip, svc.hostname)
            if owner != svc.hostname:
                self.add(("services", i, "ip"), f"{svc.ip} is already the address of '{owner}'")
        families = self.c.controls.families
        required = [("mirror", True), ("log", families.log), ("ntp", families.time)]
        for site_name in self.c.sites:
            kinds = {s.kind for s in self.c.services_for_site(site_name)}
            for kind, needed in required:
                if needed and kind not in kinds:
                    self.add(
                        ("services",),
                        f"PCs of site '{site_name}' can reach no '{kind}' service; add one with "
                        f"site: {site_name} or scope: campus",
                    )

    def datasets(self) -> None:
        groups = self.c.accounts.analyst_groups
        seen: set[str] = set()
        for i, ds in enumerate(self.c.datasets):
            path: Path = ("datasets", i)
            if ds.id in seen:
                self.add((*path, "id"), f"dataset '{ds.id}' is defined twice")
            seen.add(ds.id)
            if ds.tier != "open" and ds.export != "forbidden":
                self.add(
                    (*path, "export"),
                    f"a {ds.tier} dataset can never be exported; set export: forbidden",
                )
            if ds.tier != "open" and not ds.readers:
                self.add(
                    (*path, "readers"),
                    f"a {ds.tier} dataset needs the analyst groups that may read it",
                )
            for j, reader in enumerate(ds.readers):
                if reader not in groups:
                    self.add((*path, "readers", j), f"no analyst group '{reader}'")

    def accounts(self) -> None:
        acc = self.c.accounts
        users: dict[str, Path] = {}
        people = [(("accounts", "admins", i), a.username) for i, a in enumerate(acc.admins)]
        people += [(("accounts", "analysts", i), a.username) for i, a in enumerate(acc.analysts)]
        for path, username in people:
            if username in GENERIC_USERNAMES:
                self.add(
                    (*path, "username"),
                    f"'{username}' names a role, not a person; shared accounts are not allowed",
                )
            if username in users:
                self.add(
                    (*path, "username"),
                    f"'{username}' already has an account at {self._where(users[username])}; "
                    "one account per person",
                )
            users.setdefault(username, path)
        for i, analyst in enumerate(acc.analysts):
            for j, group in enumerate(analyst.groups):
                if group not in acc.analyst_groups:
                    self.add(
                        ("accounts", "analysts", i, "groups", j), f"no analyst group '{group}'"
                    )
        for name, analyst_group in acc.analyst_groups.items():
            for j, site in enumerate(analyst_group.sites or []):
                if site not in self.c.sites:
                    self.add(("accounts", "analyst_groups", name, "sites", j), f"no site '{site}'")
        for i, username in enumerate(acc.removed):
            if username in users:
                self.add(
                    ("accounts", "removed", i),
                    f"'{username}' is listed as removed but still has an account at "
                    f"{self._where(users[username])}",
                )

    def password_policy(self) -> None:
        # A password that can never be changed before it expires, or a warning longer
        # than its whole life, is a policy no one can keep.
        policy = self.c.accounts.password_policy
        for name, days in (("min_age_days", policy.min_age_days), ("warn_days", policy.warn_days)):
            if days >= policy.max_age_days:
                self.add(
                    ("accounts", "password_policy", name),
                    f"{days} days is not less than max_age_days ({policy.max_age_days})",
                )

    def controls(self) -> None:
        known = load_catalogue().ids()
        pcs = () if self.too_many_pcs else self.c.workstations
        hostnames = {w.hostname for w in pcs} | {s.hostname for s in self.c.services}
        for i, waiver in enumerate(self.c.controls.waivers):
            path: Path = ("controls", "waivers", i)
            if waiver.control not in known:
                self.add((*path, "control"), f"no control '{waiver.control}' in the catalogue")
            for j, host in enumerate(waiver.hosts):
                if host not in hostnames and not self.too_many_pcs:
                    self.add((*path, "hosts", j), f"no host '{host}' in this campus")
