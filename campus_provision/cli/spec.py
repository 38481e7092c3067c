"""``campus-provision spec``: look at a campus spec."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from campus_provision.cli.common import SpecArg, console, load, user_errors

app = typer.Typer(help="Look at a campus spec.", no_args_is_help=True)


@app.command("show")
def show(spec: SpecArg) -> None:
    """Summarise a campus spec: sites, rooms, PC counts, datasets per tier, services.

    Example: campus-provision spec show inventories/seoul/campus.yml
    """
    with user_errors():
        campus = load(spec)
    pcs_by_room = Counter((w.site, w.room) for w in campus.workstations)
    pcs_by_site = Counter(w.site for w in campus.workstations)

    sites = Table(title=f"{campus.campus.name}: sites", title_justify="left")
    for col in ("site", "title", "networks", "rooms", "PCs"):
        sites.add_column(col, justify="right" if col == "PCs" else "left")
    for name, site in campus.sites.items():
        nets = ", ".join(f"{n} {net.cidr}" for n, net in site.networks.items())
        sites.add_row(name, site.title, nets, str(len(site.rooms)), str(pcs_by_site[name]))
    sites.add_row("", "[b]total[/b]", "", "", f"[b]{len(campus.workstations)}[/b]")
    console.print(sites)

    rooms = Table(title="rooms", title_justify="left")
    for col in ("site", "room", "PCs", "profiles", "datasets"):
        rooms.add_column(col, justify="right" if col == "PCs" else "left")
    for name, site in campus.sites.items():
        for room_name, room in site.rooms.items():
            groups = [g for g in site.workstation_groups if g.room == room_name]
            rooms.add_row(
                name,
                f"{room_name} ({room.title})",
                str(pcs_by_room[(name, room_name)]),
                ", ".join(sorted({g.profile for g in groups})) or "-",
                ", ".join(sorted({d for g in groups for d in g.datasets})) or "-",
            )
    console.print(rooms)

    tiers = Table(title="datasets per tier", title_justify="left")
    for col in ("tier", "count", "size", "datasets"):
        tiers.add_column(col, justify="right" if col in ("count", "size") else "left")
    for tier in ("open", "restricted", "confidential"):
        members = [d for d in campus.datasets if d.tier == tier]
        size = sum(int(d.size) for d in members)
        tiers.add_row(
            tier,
            str(len(members)),
            f"{size / 2**30:.1f} GiB",
            ", ".join(d.id for d in members) or "-",
        )
    console.print(tiers)

    services = Table(title="services (the egress allowlist)", title_justify="left")
    for col in ("service", "kind", "site", "scope", "host", "address", "ports"):
        services.add_column(col)
    for s in campus.services:
        services.add_row(s.name, s.kind, s.site, s.scope, s.hostname, str(s.ip), " ".join(s.ports))
    console.print(services)
