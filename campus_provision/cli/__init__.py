"""The ``campus-provision`` command line: one module per command group, thin commands."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from campus_provision import __version__
from campus_provision.cli import (
    bundle,
    init,
    keys,
    lab,
    provision,
    render,
    report,
    spec,
    validate,
    verify,
    volumes,
)

app = typer.Typer(
    name="campus-provision",
    help=(
        "Build and prove locked-down, air-gapped data-analysis workstations for a big data "
        "campus: validate the site spec, render Ansible inventories, provision, verify."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"campus-provision {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Build and prove locked-down, air-gapped data-analysis workstations."""


app.command("validate")(validate.validate)
app.command("render")(render.render)
app.command("init")(init.init)
app.command("provision")(provision.provision)
app.command("verify")(verify.verify)
app.command("audit")(verify.audit)
app.add_typer(spec.app, name="spec")
app.add_typer(lab.app, name="lab")
app.add_typer(keys.app, name="keys")
app.add_typer(report.app, name="report")
app.add_typer(bundle.app, name="bundle")
app.add_typer(volumes.app, name="volumes")


def main() -> None:
    """Console-script entry: no Python traceback ever reaches the user."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence; domain errors are handled inside
        if os.environ.get("CAMPUS_PROVISION_DEBUG"):
            traceback.print_exc()
        typer.echo(
            f"campus-provision: internal error: {type(exc).__name__}: {exc} "
            "(set CAMPUS_PROVISION_DEBUG=1 for details, and please report it)",
            err=True,
        )
        sys.exit(70)
