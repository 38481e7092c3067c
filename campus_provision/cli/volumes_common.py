"""What the ``volumes`` commands share: their options, the run, the summary, the record.

:func:`prepare` loads the spec, finds the PCs and datasets in the inventory, decides the
login (the admin where it can, else root, as ``provision`` does) and unlocks the keystore,
proving the passphrase before any PC is touched. :func:`print_records` prints the per-host table
every command ends with; :func:`write_record` signs the record auditors read.

API (stable; later changes are additive): the ``*Opt``/``*Arg`` annotations,
:class:`VolumesRun`, :func:`login_users`, :func:`prepare`, :func:`seconds`,
:func:`write_record`, :func:`print_table`, :func:`print_records`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from campus_provision.cli.common import admin_account, console, load
from campus_provision.cli.keys import KEYSTORE_PROMPT, read_passphrase
from campus_provision.keys.signing import default_keys_dir, load_signing_key
from campus_provision.keys.volumes import VolumeKeystore, volume_id
from campus_provision.provision.bootstrap import choose_users
from campus_provision.spec import Campus
from campus_provision.volumes.fleet import Dataset, Target, inventory_path, load_fleet
from campus_provision.volumes.journal import default_journal_dir
from campus_provision.volumes.records import (
    OperationRecord,
    RecordSet,
    default_records_dir,
    now_iso,
    operator,
    write_records,
)

LabOpt = Annotated[
    bool, typer.Option("--lab", help="The running lab's PCs (its inventory), not the campus's.")
]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="The lab's prefix, with --lab.")]
LimitOpt = Annotated[
    str | None,
    typer.Option("--limit", help="Hosts, groups or patterns, comma-separated (as Ansible's)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="The signed record directory \\[default: evidence/<UTC timestamp>-volumes].",
        show_default=False,
    ),
]
DatasetArg = Annotated[
    str,
    typer.Argument(
        metavar="DATASET", help="The dataset id, e.g. card-spending-2025.", show_default=False
    ),
]
OptionalDatasetArg = Annotated[
    str | None,
    typer.Argument(metavar="[DATASET]", help="Only this dataset's volumes.", show_default=False),
]


@dataclass
class VolumesRun:
    """What every volumes command works with: the spec, the PCs, the unlocked keystore."""

    campus: Campus
    spec: Path
    targets: list[Target]
    store: VolumeKeystore
    keys_dir: Path
    journal_dir: Path
    passphrase: str

    def volumes(self) -> Iterator[tuple[Target, Dataset, str]]:
        for target in self.targets:
            for dataset in target.datasets:
                yield target, dataset, volume_id(target.host, dataset.id)

    def signing_key(self) -> Ed25519PrivateKey:
        return load_signing_key(self.keys_dir, self.passphrase)


def login_users(inventory: Path, hosts: list[str], admin: str) -> dict[str, str]:
    """Host → the account that logs in there (``admin``, else root), probed over SSH."""
    if not hosts:
        return {}
    with console.status(f"finding how to log in: {admin}, else root"):
        return choose_users(inventory, ",".join(hosts), admin)


def prepare(
    spec: Path,
    *,
    lab: bool,
    prefix: str,
    limit: str | None,
    dataset: str | None,
    admin: str | None,
    keys_dir: Path | None,
    passphrase_file: Path | None,
) -> VolumesRun:
    """Spec, inventory, targets and the unlocked keystore (its passphrase proven)."""
    campus = load(spec)
    inventory = inventory_path(spec, lab=lab, prefix=prefix)
    if lab:
        from campus_provision.lab.control import lab_for_spec  # noqa: PLC0415 - --lab only
        from campus_provision.lab.state import LabPaths, state_dir_from_env  # noqa: PLC0415

        lab_for_spec(LabPaths(state_dir_from_env(), prefix), spec)
    targets = load_fleet(inventory, limit=limit, datasets=[dataset] if dataset else [])
    # Who logs in, as provision and verify decide it: the admin where it can (root login
    # is off on a provisioned PC), else root (a PC not provisioned yet); neither: as the
    # inventory says, and the first command names the PC unreachable.
    who = admin_account(admin, campus)
    users = login_users(inventory, [t.host for t in targets], who)
    targets = [
        replace(t, connection=replace(t.connection, user=users[t.host])) if t.host in users else t
        for t in targets
    ]
    directory = keys_dir or default_keys_dir()
    passphrase = read_passphrase(passphrase_file, confirm=False, prompt=KEYSTORE_PROMPT)
    store = VolumeKeystore(directory, passphrase)
    store.verify_passphrase()  # a wrong passphrase stops here, before any PC is touched
    return VolumesRun(
        campus, spec, targets, store, directory, default_journal_dir(directory), passphrase
    )


def seconds(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def write_record(
    run: VolumesRun,
    command: str,
    started: str,
    records: list[OperationRecord],
    out: Path | None,
    signing_key: Ed25519PrivateKey,
) -> Path:
    from campus_provision.verify.runner import spec_digest  # noqa: PLC0415 - heavy import

    record_set = RecordSet(
        command=command,
        campus=run.campus.campus.name,
        who=operator(),
        started=started,
        finished=now_iso(),
        records=tuple(records),
    )
    out_dir = (out or default_records_dir()).absolute()
    return write_records(
        out_dir, record_set, signing_key, run.campus.campus.signing_identity, spec_digest(run.spec)
    )


def print_table(table: Table) -> None:
    """As wide as the table needs: key ids cut short with "…" would be useless to copy."""
    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(highlight=False, width=max(console.width, needed)).print(table)


def print_records(title: str, records: list[OperationRecord]) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("host", "dataset", "old key", "new key", "result", "time", "detail"):
        table.add_column(col, no_wrap=col != "detail", max_width=70 if col == "detail" else None)
    for r in records:
        colour = "green" if r.result == "ok" else "yellow" if r.result == "rolled-back" else "red"
        table.add_row(
            escape(r.host),
            escape(r.dataset),
            r.old_key or "—",
            r.new_key or "—",
            f"[{colour}]{r.result}[/{colour}]",
            "" if r.seconds is None else f"{r.seconds:.1f} s",
            escape(r.detail if r.result != "ok" else ""),
        )
    print_table(table)
