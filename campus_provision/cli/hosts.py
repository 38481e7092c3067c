"""``campus-provision hosts``: the PCs' SSH host keys, recorded per inventory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campus_provision.cli.common import SpecArg, console, load, user_errors
from campus_provision.hostkeys import campus_hosts, known_hosts_file, scan, trust

app = typer.Typer(no_args_is_help=True, help="The PCs' SSH host keys (known_hosts per inventory).")


@app.command("trust")
def trust_hosts(
    spec: SpecArg,
    limit: Annotated[
        str | None,
        typer.Option("--limit", help="Host names or shell patterns, comma-separated."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Record without asking (fingerprints checked already).")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace keys that differ (a reinstalled PC).")
    ] = False,
) -> None:
    """Read the SSH host keys of the campus's hosts and record them for the inventory.

    Prints each host's key fingerprints; compare them with the PC's own (its console:
    ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before you answer. The keys go to
    known_hosts beside the spec's hosts.yml, which provision, verify and the volume
    commands check every connection against. A key that differs from the recorded one is
    refused unless --replace.

    Example: campus-provision hosts trust inventories/seoul/campus.yml --limit 'sgm-a0*'
    """
    with user_errors():
        campus = load(spec)
        inventory = spec.parent
        keys = scan(campus_hosts(campus, limit))
        table = Table(
            title=f"SSH host keys for {known_hosts_file(inventory)}", title_justify="left"
        )
        for column in ("host", "address", "fingerprint"):
            table.add_column(column)
        for key in keys:
            table.add_row(key.host, key.address, key.fingerprint)
        console.print(table)
        if not yes and not typer.confirm("Do these fingerprints match the PCs' own?"):
            console.print("nothing recorded")
            raise typer.Exit(1)
        changed = trust(inventory, keys, replace=replace)
    note = f" (replaced: {', '.join(changed)})" if changed else ""
    console.print(f"recorded {len(keys)} keys of {len({k.host for k in keys})} hosts{note}")
