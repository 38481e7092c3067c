"""The ``campus-provision`` command line: one module per command group, thin commands."""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from typing import Annotated

import typer

from campus_provision import __version__
from campus_provision.cli import (
    bundle,
    hosts,
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
app.add_typer(hosts.app, name="hosts")


def reflow(doc: str) -> str:
    """``doc`` with each paragraph on one line, so the terminal wraps it once.

    Rich keeps a docstring's single line breaks, and a terminal narrower than the source
    then breaks each line again, leaving ragged half-lines. Lines starting a bullet
    (``- ``) keep their break; a paragraph starting with ``\\b`` is left as written.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith(("- ", "* ")):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.callback.__doc__ = reflow(command.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


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
