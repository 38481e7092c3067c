"""``campus-provision volumes status | rotate-key | resume``: the keys of the dataset volumes.

Thin: the inventory gives the PCs and their datasets (:mod:`campus_provision.volumes.fleet`),
each volume is reached over SSH (:mod:`~campus_provision.volumes.ssh`), the crash-safe
engine does the work (:mod:`~campus_provision.volumes.rotate`), and every operation ends in
a signed record (:mod:`~campus_provision.volumes.records`). Keys travel only on stdin;
what is printed and recorded names keys by id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol

import typer
from rich.markup import escape
from rich.table import Table

from campus_provision.cli.common import AdminOpt, SpecArg, console, user_errors
from campus_provision.cli.keys import KeysDirOpt, PassphraseFileOpt, print_resealed
from campus_provision.cli.volumes_common import (
    DatasetArg,
    LabOpt,
    LimitOpt,
    OptionalDatasetArg,
    OutOpt,
    PrefixOpt,
    VolumesRun,
    prepare,
    print_records,
    print_table,
    seconds,
    write_record,
)
from campus_provision.errors import CampusProvisionError
from campus_provision.lab.state import DEFAULT_PREFIX
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf, VolumeBackend
from campus_provision.volumes.fleet import Dataset, Target
from campus_provision.volumes.journal import journals
from campus_provision.volumes.records import (
    OperationRecord,
    Result,
    make_record,
    now_iso,
)
from campus_provision.volumes.rotate import FINAL_STEPS, KIND, resume, rotate_key
from campus_provision.volumes.ssh import SshBackend

DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Check each volume can be rotated (reachable, current key opens "
                 "it, key file holds it); change nothing."),
]  # fmt: skip
PbkdfMemoryOpt = Annotated[
    int | None,
    typer.Option(
        "--pbkdf-memory",
        min=8192,
        metavar="KIB",
        help="argon2 memory of the new keyslot \\[default: the inventory's "
        "campus_data_volume_pbkdf_memory, else the role's 1048576].",
        show_default=False,
    ),
]
PbkdfIterationsOpt = Annotated[
    int | None,
    typer.Option(
        "--pbkdf-force-iterations",
        min=1,
        metavar="N",
        help="A fixed argon2 time cost for the new keyslot instead of --iter-time "
        "\\[default: the inventory's, else none].",
        show_default=False,
    ),
]


class StatusBackend(VolumeBackend, Protocol):
    """What ``volumes status`` asks of a volume beyond what rotation needs."""

    def label_and_slots(self) -> tuple[str | None, list[int]] | None: ...

    def keyfile_present(self) -> bool: ...

    def is_mounted(self) -> bool: ...


def ssh_backend(target: Target, dataset: Dataset, pbkdf: Pbkdf) -> StatusBackend:
    """The backend of one volume on a PC (tests swap this for local fakes)."""
    return SshBackend(target.connection, dataset.id, pbkdf=pbkdf)


backend_factory: Callable[[Target, Dataset, Pbkdf], StatusBackend] = ssh_backend


def _backend(
    target: Target, dataset: Dataset, memory: int | None, iterations: int | None
) -> StatusBackend:
    """The volume's backend, with the new keyslot's cost overridden where asked."""
    pbkdf = target.pbkdf
    if memory is not None or iterations is not None:
        pbkdf = Pbkdf(
            pbkdf=pbkdf.pbkdf,
            memory_kib=memory if memory is not None else pbkdf.memory_kib,
            iter_time_ms=pbkdf.iter_time_ms,
            force_iterations=iterations if iterations is not None else pbkdf.force_iterations,
        )
    return backend_factory(target, dataset, pbkdf)


def _unfinished(journal_dir: Path, vid: str) -> list[str]:
    return [j.op for j in journals(journal_dir, vid) if not j.finished(FINAL_STEPS)]


def _status(
    spec: SpecArg,
    dataset: OptionalDatasetArg = None,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Show each PC's dataset volumes: version, keyslots, the keystore key that opens it.

    For every selected host × dataset: the LUKS label (<id>@<version>), the number of
    active keyslots, which of the keystore's keys opens it (each is tried, over SSH, on
    stdin), whether the PC's key file holds that key, whether it is mounted, and any
    unfinished rotation. Exit 0 when every volume opens with a keystore key whose copy is
    in the key file; 1 otherwise.

    Example: campus-provision volumes status inventories/seoul/campus.yml --limit sgm-a01
    """
    problems = 0
    with user_errors():
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        table = Table(title=f"dataset volumes ({len(run.targets)} PCs)", title_justify="left")
        for col in ("host", "dataset", "version (LUKS label)", "keyslots", "opens with",
                    "key file", "mounted", "journal"):  # fmt: skip
            table.add_column(col, no_wrap=True)
        down: dict[str, str] = {}
        for target, ds, vid in run.volumes():
            unfinished = _unfinished(run.journal_dir, vid)
            journal = f"[red]unfinished {unfinished[-1]}[/red]" if unfinished else "—"
            if target.host in down:
                table.add_row(
                    target.host, ds.id, "[red]error (below)[/red]", "", "", "", "", journal
                )
                problems += 1
                continue
            backend = _backend(target, ds, None, None)
            try:
                row = _status_row(run, backend, ds, vid)
            except VolumeError as exc:
                down[target.host] = str(exc)
                table.add_row(
                    target.host, ds.id, "[red]error (below)[/red]", "", "", "", "", journal
                )
                problems += 1
                continue
            problems += row[-1] != "ok" or bool(unfinished)
            table.add_row(target.host, ds.id, *row[:-1], journal)
    print_table(table)
    for host, message in down.items():
        console.print(f"[red]ERROR[/red] {escape(host)}: {escape(message)}")
    if problems:
        console.print(f"[red]{problems} volumes need attention[/red]")
        raise typer.Exit(1)


def _status_row(run: VolumesRun, backend: StatusBackend, ds: Dataset, vid: str) -> list[str]:
    """version, slots, opens with, key file, mounted, and 'ok' or not as the last item."""
    found = backend.label_and_slots()
    if found is None:
        return ["[red]no LUKS volume[/red]", "", "", "", "", "missing"]
    label, slots = found
    version = label or "(no label)"
    if label != ds.label:
        version = f"[yellow]{version}[/yellow] (inventory: {ds.label})"
    opener = None
    for key in reversed(run.store.keys(vid)):  # newest first: the current key, usually
        if backend.key_opens(run.store.secret(vid, key.key_id)):
            opener = key.key_id
            break
    if opener is None:
        keyfile = "present" if backend.keyfile_present() else "[red]missing[/red]"
        opens = "[red]none of the keystore's keys[/red]"
        verdict = "no key"
    else:
        holds = backend.keyfile_holds(run.store.secret(vid, opener))
        keyfile = "ok" if holds else "[red]does not hold it[/red]"
        current = run.store.current(vid)
        opens = opener if current and current.key_id == opener else f"{opener} (not current)"
        verdict = "ok" if holds else "key file"
    mounted = "yes" if backend.is_mounted() else "no"
    return [version, str(len(slots)), opens, keyfile, mounted, verdict]


def _rotate_key(
    spec: SpecArg,
    dataset: DatasetArg,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
    pbkdf_memory: PbkdfMemoryOpt = None,
    pbkdf_force_iterations: PbkdfIterationsOpt = None,
) -> None:
    """Give DATASET's volume on each selected PC a new key, one PC after the other.

    Per volume: a new key in the keystore, added to a free keyslot, proven to open, written
    to the PC's key file, then the old slot killed and the old key dropped, each step
    journaled first (so 'volumes resume' finishes whatever a crash interrupts). A PC that
    fails does not stop the others. Ends with a table per host and a signed record
    (report verify checks it). Exit 0 when every volume was rotated; 1 otherwise.

    Example: campus-provision volumes rotate-key SPEC card-spending-2025 --limit sgm-a01
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        signing_key = None if dry_run else run.signing_key()  # before any PC is touched
        selected = list(run.volumes())
        for index, (target, ds, vid) in enumerate(selected, 1):
            backend = _backend(target, ds, pbkdf_memory, pbkdf_force_iterations)
            if dry_run:
                records.append(_dry_run_one(run, backend, target, ds, vid, index, len(selected)))
            else:
                records.append(_rotate_one(run, backend, target, ds, vid, index, len(selected)))
        if dry_run:
            print_records("rotate-key --dry-run (nothing changed)", records)
            if any(r.result == "failed" for r in records):
                raise typer.Exit(1)
            return
        assert signing_key is not None  # noqa: S101 - set above when not a dry run
        command = f"volumes rotate-key {spec} {dataset}" + (f" --limit {limit}" if limit else "")
        written = write_record(run, command, started, records, out, signing_key)
    print_records("rotate-key", records)
    print_resealed(run.store.resealed)
    console.print(f"signed record: {escape(str(written))} (check it with 'report verify')")
    if any(r.result != "ok" for r in records):
        raise typer.Exit(1)


def _dry_run_one(
    run: VolumesRun, backend: StatusBackend, target: Target, ds: Dataset, vid: str, i: int, n: int
) -> OperationRecord:
    start = time.monotonic()
    current = run.store.current(vid)
    old = current.key_id if current else None
    try:
        if current is None:
            raise VolumeError(f"{vid}: no key in the keystore")
        if _unfinished(run.journal_dir, vid):
            raise VolumeError(f"{vid}: an unfinished rotation: run 'volumes resume' first")
        secret = run.store.secret(vid, current.key_id)
        if not backend.key_opens(secret):
            raise VolumeError(f"{backend.where} does not open with the current key {old}")
        if not backend.keyfile_holds(secret):
            raise VolumeError(f"the key file of {backend.where} does not hold {old}")
    except CampusProvisionError as exc:
        console.print(f"[{i}/{n}] {escape(vid)}: [red]cannot rotate[/red]: {escape(str(exc))}")
        return make_record(target.host, ds.id, KIND, "failed", old_key=old, detail=str(exc),
                           seconds=time.monotonic() - start)  # fmt: skip
    console.print(f"[{i}/{n}] {escape(vid)}: would rotate from key {old} ({seconds(start)})")
    return make_record(target.host, ds.id, KIND, "dry-run", old_key=old,
                       seconds=time.monotonic() - start)  # fmt: skip


def _after_failure(
    run: VolumesRun, vid: str, before: set[str]
) -> tuple[Result, str | None, str | None]:
    """How a failed rotation left the volume: (result, new key id, journal op)."""
    made = [j for j in journals(run.journal_dir, vid) if j.op not in before]
    if not made:
        return "failed", None, None  # refused before it began: nothing changed
    journal = made[-1]
    if journal.finished(FINAL_STEPS):
        return "rolled-back", journal.new_key, journal.op
    return "stopped", journal.new_key, journal.op


def _rotate_one(
    run: VolumesRun, backend: StatusBackend, target: Target, ds: Dataset, vid: str, i: int, n: int
) -> OperationRecord:
    start = time.monotonic()
    current = run.store.current(vid)
    old = current.key_id if current else None
    console.print(f"[{i}/{n}] {escape(vid)}: rotating from key {old or '(none)'} …")
    before = {j.op for j in journals(run.journal_dir, vid)}
    try:
        result = rotate_key(run.store, vid, backend, run.journal_dir)
    except CampusProvisionError as exc:
        outcome, new, op = _after_failure(run, vid, before)
        label = {"failed": "FAILED", "rolled-back": "ROLLED BACK", "stopped": "STOPPED"}[outcome]
        console.print(f"[{i}/{n}] {escape(vid)}: [red]{label}[/red]: {escape(str(exc))}")
        return make_record(target.host, ds.id, KIND, outcome, old_key=old, new_key=new,
                           detail=str(exc), journal_op=op,
                           seconds=time.monotonic() - start)  # fmt: skip
    console.print(
        f"[{i}/{n}] {escape(vid)}: [green]rotated[/green] {result.old_key} → {result.new_key} "
        f"({seconds(start)}; journal {result.op})"
    )
    return make_record(target.host, ds.id, KIND, "ok", old_key=result.old_key,
                       new_key=result.new_key, detail=result.outcome, journal_op=result.op,
                       seconds=time.monotonic() - start)  # fmt: skip


def _resume(
    spec: SpecArg,
    dataset: OptionalDatasetArg = None,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
    pbkdf_memory: PbkdfMemoryOpt = None,
    pbkdf_force_iterations: PbkdfIterationsOpt = None,
) -> None:
    """Finish every interrupted rotation of the selected volumes, from its journal.

    A rotation stopped before its new key was proven to open is rolled back (the volume,
    key file and keystore as before); one stopped later is completed. Each step looks at
    the volume first, so resuming twice is safe. Writes a signed record when anything was
    resumed. Exit 0 when every one completed or rolled back; 1 otherwise.

    Example: campus-provision volumes resume inventories/seoul/campus.yml card-spending-2025
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        todo = [(t, d, v) for t, d, v in run.volumes() if _unfinished(run.journal_dir, v)]
        if not todo:
            console.print("nothing to resume: no unfinished rotation of the selected volumes")
            return
        signing_key = run.signing_key()
        for index, (target, ds, vid) in enumerate(todo, 1):
            backend = _backend(target, ds, pbkdf_memory, pbkdf_force_iterations)
            records += _resume_one(run, backend, target, ds, vid, index, len(todo))
        command = "volumes resume " + " ".join(
            [str(spec), *([dataset] if dataset else []), *(["--limit", limit] if limit else [])]
        )
        written = write_record(run, command, started, records, out, signing_key)
    print_records("resume", records)
    print_resealed(run.store.resealed)
    console.print(f"signed record: {escape(str(written))} (check it with 'report verify')")
    if any(r.result not in ("ok", "rolled-back") for r in records):
        raise typer.Exit(1)


def _resume_one(
    run: VolumesRun, backend: StatusBackend, target: Target, ds: Dataset, vid: str, i: int, n: int
) -> list[OperationRecord]:
    # The data operations' journals (create, load, swap, retire) first: their engine is
    # in volumes_lifecycle (imported here, since it imports this module).
    from campus_provision.cli.volumes_lifecycle import resume_data_ops  # noqa: PLC0415

    data_records = resume_data_ops(run, target.host, ds.id, vid)
    start = time.monotonic()
    ops = [
        j.op
        for j in journals(run.journal_dir, vid)
        if j.kind == KIND and not j.finished(FINAL_STEPS)
    ]
    if not ops:
        return data_records
    console.print(f"[{i}/{n}] {escape(vid)}: resuming {', '.join(ops)} …")
    try:
        results = resume(run.store, run.journal_dir, lambda _: backend, volumes={vid})
    except CampusProvisionError as exc:
        console.print(f"[{i}/{n}] {escape(vid)}: [red]FAILED[/red]: {escape(str(exc))}")
        journal = next((j for j in journals(run.journal_dir, vid) if j.op == ops[0]), None)
        return [*data_records, make_record(target.host, ds.id, "resume", "failed",
                            old_key=journal.old_key if journal else None,
                            new_key=journal.new_key if journal else None, detail=str(exc),
                            journal_op=ops[0], seconds=time.monotonic() - start)]  # fmt: skip
    records = data_records
    for r in results:
        outcome: Result = "ok" if r.outcome == "rotated" else "rolled-back"
        shown = "[green]completed[/green]" if outcome == "ok" else "[yellow]rolled back[/yellow]"
        console.print(
            f"[{i}/{n}] {escape(vid)}: {shown} {r.op}: {r.old_key} → {r.new_key or '—'} "
            f"({seconds(start)})"
        )
        records.append(make_record(target.host, ds.id, "resume", outcome, old_key=r.old_key,
                                   new_key=r.new_key, detail=r.outcome, journal_op=r.op,
                                   seconds=time.monotonic() - start))  # fmt: skip
    return records


def register(app: typer.Typer) -> None:
    """Add this module's commands (status, rotate-key, resume) to the ``volumes`` group."""
    app.command("status")(_status)
    app.command("rotate-key")(_rotate_key)
    app.command("resume")(_resume)
