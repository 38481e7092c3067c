"""``campus-provision init``: write a commented starter spec that validates."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import TypeAdapter, ValidationError

from campus_provision.cli.common import console, user_errors
from campus_provision.errors import InitError
from campus_provision.paths import templates_dir
from campus_provision.spec import load_spec_bytes
from campus_provision.spec.types import Name


def init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where to write campus.yml.", show_default=False)
    ],
    name: Annotated[str, typer.Option(help="The campus's name.")] = "Example Big Data Campus",
    slug: Annotated[
        str, typer.Option(help="Short lower-case name used in file names.")
    ] = "example",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing campus.yml.")
    ] = False,
) -> None:
    """Write DIR/campus.yml: a commented starter spec for one site that validates.

    Edit it (sites, PCs, services, software, datasets, people), then run validate.

    Example: campus-provision init inventories/mycampus --name "My Campus" --slug mycampus
    """
    with user_errors():
        target = directory / "campus.yml"
        if target.exists() and not force:
            raise InitError(f"{target}: already exists; pass --force to overwrite it")
        env = Environment(
            loader=FileSystemLoader(templates_dir() / "init"),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,  # noqa: S701 - renders YAML, not HTML
        )
        text = env.get_template("campus.yml.j2").render(name=name, slug=_slug(slug))
        # The starter must validate as written; prove it before it reaches the disk.
        load_spec_bytes(text.encode(), target)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".campus-", suffix=".yml", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            Path(tmp).chmod(0o644)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    console.print(f"{target}: written; next: campus-provision validate {target}")


def _slug(value: str) -> str:
    try:
        return TypeAdapter(Name).validate_python(value)
    except ValidationError:
        raise typer.BadParameter(
            "lower-case letters, digits and '-', starting with a letter", param_hint="--slug"
        ) from None
