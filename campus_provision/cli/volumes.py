"""``campus-provision volumes``: operators' work on the dataset volumes of the campus PCs.

The commands live in two modules, so that each stays small: :mod:`volumes_rotate` (status,
create, rotate-key, resume: keys) and :mod:`volumes_lifecycle` (load, swap, retire: data).
"""

from __future__ import annotations

import typer

from campus_provision.cli import volumes_lifecycle, volumes_rotate

app = typer.Typer(
    help="Dataset volumes on the PCs: status, keys (rotate-key, resume), data (load, swap, "
    "retire). Every step is journaled on the controller; every operation ends signed.",
    no_args_is_help=True,
)
volumes_rotate.register(app)
volumes_lifecycle.register(app)
