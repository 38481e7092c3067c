"""``campus-provision render``: write (or check) the Ansible inventory of a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campus_provision.cli.common import SpecArg, console, load, user_errors
from campus_provision.render import diff_tree, render_files, write_tree
from campus_provision.render.files import GENERATIONS


def render(
    spec: SpecArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o",
            help="Directory for hosts.yml and group_vars/ (default: the spec's directory).",
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 with a diff if files on disk differ."),
    ] = False,
) -> None:  # fmt: skip
    """Render the Ansible inventory (hosts.yml, group_vars/) from a campus spec.

    The output is byte-identical for the same spec, holds no secrets, and is switched in
    atomically: hosts.yml and group_vars are links into .rendered/, whose files change
    together in one step, so a failure leaves the old files as they were.

    Example: campus-provision render inventories/seoul/campus.yml --check
    """
    with user_errors():
        campus = load(spec)
        target = out if out is not None else spec.parent
        files = render_files(campus, spec.name)
        if check:
            result, diff = diff_tree(target, files)
            if result.differs:
                typer.echo(diff, nl=False)
                console.print(
                    f"{target}: out of date: {len(result.changed)} changed, "
                    f"{len(result.added)} missing, {len(result.removed)} extra; "
                    f"run 'campus-provision render {spec}'"
                )
                raise typer.Exit(1)
            console.print(f"{target}: up to date ({len(files)} files)")
            return
        result = write_tree(target, files)
    if result.migrated:
        console.print(
            f"{target}: moved hosts.yml and group_vars/ into {GENERATIONS}/ (renders now switch "
            "them together, in one step)"
        )
    if result.differs:
        console.print(
            f"{target}: rendered {len(campus.workstations)} PCs into {len(files)} files "
            f"({len(result.added)} new, {len(result.changed)} changed, "
            f"{len(result.removed)} removed)"
        )
    else:
        console.print(f"{target}: up to date ({len(files)} files, nothing written)")
