"""``campus-provision validate``: check a campus spec, with every problem located."""

from __future__ import annotations

from campus_provision.cli.common import SpecArg, console, load, user_errors


def validate(spec: SpecArg) -> None:
    """Check a campus spec: YAML, fields, types and cross-field rules.

    Prints one line per problem as FILE:LINE: field.path: message and exits 2;
    exits 0 when the spec is valid.

    Example: campus-provision validate inventories/seoul/campus.yml
    """
    with user_errors():
        campus = load(spec)
    service_hosts = {s.hostname for s in campus.services}
    console.print(
        f"{spec}: valid: {campus.campus.name}, {len(campus.sites)} sites, "
        f"{len(campus.workstations)} PCs, {len(service_hosts)} service hosts, "
        f"{len(campus.datasets)} datasets, {len(campus.controls.waivers)} waivers"
    )
