"""What every command shares: consoles, the error boundary, spec loading."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from campus_provision.errors import CampusProvisionError, OptionError
from campus_provision.shell import ip_address
from campus_provision.spec import Campus, load_spec

MAX_ERROR_LINES = 50
ADMIN_ENV = "CAMPUS_ADMIN"
# A POSIX user name, as the spec's accounts (spec.types.Username): an admin name goes to
# ssh, to ansible's -e and into inventories, so nothing else may pass.
_USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

console = Console(highlight=False, soft_wrap=True)


def refuse(message: str) -> NoReturn:
    """End the command with ``message`` as one line on stderr and exit 2 (bad usage)."""
    with user_errors():
        raise OptionError(message)
    raise AssertionError("unreachable")  # pragma: no cover - user_errors always raises


def ip_address_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Typer callback: the option's value as an IP address (IPv4 or IPv6), else exit 2."""
    if value is None:
        return None
    try:
        return ip_address(value)
    except ValueError as exc:
        refuse(f"{param.opts[0]} {exc}")


def _username(what: str, value: str) -> str:
    if not _USERNAME.fullmatch(value):
        refuse(f"{what} {value!r}: not a user name (a-z, 0-9, '_', '-'; at most 32)")
    return value


def admin_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Typer callback: ``--admin`` as a POSIX user name, else exit 2."""
    return None if value is None else _username(param.opts[0], value)


def admin_account(admin: str | None, campus: Campus) -> str:
    """Who logs in to administer the PCs: ``--admin``, else ``$CAMPUS_ADMIN``, else the
    spec's first admin (each a user name, else exit 2)."""
    if admin:
        return _username("--admin", admin)
    from_env = os.environ.get(ADMIN_ENV)
    if from_env:
        return _username(f"${ADMIN_ENV}", from_env)
    return campus.accounts.admins[0].username


AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--admin",
        help="The admin account to log in with \\[default: $CAMPUS_ADMIN, else the spec's first].",
        show_default=False,
        callback=admin_option,
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
