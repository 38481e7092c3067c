"""What every command shares: consoles, the error boundary, spec loading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from campus_provision.errors import CampusProvisionError
from campus_provision.spec import Campus, load_spec

MAX_ERROR_LINES = 50

console = Console(highlight=False, soft_wrap=True)

AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--admin",
        help="The admin account to log in with \\[default: $CAMPUS_ADMIN, else the spec's first].",
        show_default=False,
    ),
]
SpecArg = Annotated[
    Path,
    typer.Argument(
        metavar="SPEC",
        help="The campus spec file, e.g. inventories/seoul/campus.yml.",
        show_default=False,
    ),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a campus-provision error into its lines on stderr and its exit code."""
    try:
        yield
    except CampusProvisionError as exc:
        lines = exc.lines()
        for line in lines[:MAX_ERROR_LINES]:
            typer.echo(line, err=True)
        if len(lines) > MAX_ERROR_LINES:
            typer.echo(f"... and {len(lines) - MAX_ERROR_LINES} more problems", err=True)
        raise typer.Exit(exc.exit_code) from None


def load(spec: Path) -> Campus:
    """Load a spec for a command (errors surface through ``user_errors``)."""
    return load_spec(spec)
