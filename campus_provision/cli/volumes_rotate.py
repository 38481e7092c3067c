"""``campus-provision volumes`` commands (filled in by the change that builds them)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``volumes`` group."""
    del app
