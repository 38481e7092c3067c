"""``campus-provision report``: check, read and compare signed evidence directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from campus_provision.cli.common import console, user_errors
from campus_provision.keys import KeyStoreError
from campus_provision.keys.signing import PUB_FILE, default_keys_dir, fingerprint, load_public_key
from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.evidence import (
    RECORDS_SCHEMA,
    EvidenceError,
    read_manifest,
    read_results,
    verify_evidence,
)
from campus_provision.verify.report import LABELS, SHORT, build_view, diff_results

app = typer.Typer(
    help="Check, read and compare signed evidence directories (what verify writes).",
    no_args_is_help=True,
)

DirArg = Annotated[
    Path,
    typer.Argument(
        metavar="DIR",
        help="An evidence directory, e.g. evidence/20261126T120000Z.",
        show_default=False,
    ),
]
COLOURS = {
    "pass": "green",
    "fail": "red",
    "error": "magenta",
    "waived": "yellow",
    "not_applicable": "dim",
    "missing": "dim",
}


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'default')}]{LABELS.get(status, status)}[/]"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{LABELS[s].lower()} {n}" for s, n in counts.items() if n)


def _records_summary(directory: Path, key_fp: str, signer: str, created: str) -> None:
    """What ``report verify`` says about a signed volume-records directory."""
    from campus_provision.volumes.records import read_records  # noqa: PLC0415 - only here

    records = read_records(directory)
    console.print(
        f"[green]OK[/green]: {escape(str(directory))}: signature by key {key_fp} "
        f"({escape(signer)}, {created}) is valid; volume operation records"
    )
    results = ", ".join(
        f"{r} {n}"
        for r in sorted({x.result for x in records.records})
        if (n := sum(x.result == r for x in records.records))
    )
    console.print(
        f"{escape(records.campus)}: {escape(records.command)}: {len(records.records)} "
        f"operations ({results or 'none'})"
    )


@app.command("verify")
def verify(
    directory: DirArg,
    pubkey: Annotated[
        Path | None,
        typer.Option(
            "--pubkey",
            help="The campus's public signing key as the auditor received it (signing.pub). "
            "Without it, this machine's keys directory's signing.pub is used, and said so.",
            show_default=False,
        ),
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            "--keys-dir",
            help="Where to find signing.pub when --pubkey is not given "
            "\\[default: $CAMPUS_KEYS_DIR, else ~/.config/campus-provision/keys].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check an evidence directory: the manifest's signature and every file's hash.

    Prints OK with the signing key's fingerprint and the run's counts and exits 0; or one
    line per problem, naming the file (missing, altered, extra, bad signature), and
    exits 1.

    Example: campus-provision report verify evidence/20261126T120000Z --pubkey signing.pub
    """
    with user_errors():
        if pubkey is not None:
            key = load_public_key(pubkey)
        else:
            fallback = (keys_dir or default_keys_dir()) / PUB_FILE
            try:
                key = load_public_key(fallback)
            except KeyStoreError as exc:
                raise KeyStoreError(
                    f"{exc}; pass the campus's public key with --pubkey FILE"
                ) from None
            typer.echo(
                f"note: no --pubkey given, so checking against this machine's {fallback} "
                f"(key {fingerprint(key)}); an auditor should pass their own trusted copy",
                err=True,
            )
        problems = verify_evidence(directory, key)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        typer.echo(f"FAILED: {directory} does not verify ({len(problems)} problems)", err=True)
        raise typer.Exit(1)
    with user_errors():
        manifest = read_manifest(directory)
        if manifest.schema == RECORDS_SCHEMA:
            _records_summary(directory, fingerprint(key), manifest.signer, manifest.created)
            return
        view = build_view(read_results(directory))
    console.print(
        f"[green]OK[/green]: {escape(str(directory))}: signature by key {fingerprint(key)} "
        f"({escape(manifest.signer)}, {manifest.created}) is valid; "
        f"{len(manifest.files)} files match the manifest"
    )
    console.print(
        f"{escape(manifest.campus)}: {len(view.hosts)} hosts × {len(view.controls)} controls, "
        f"verdict {_verdict(view.verdict)} ({_counts(view.counts)})"
    )


def _verdict(verdict: str) -> str:
    return f"[bold {'green' if verdict == 'PASS' else 'red'}]{verdict}[/]"


@app.command("show")
def show(directory: DirArg) -> None:
    """Summarise an evidence directory in the terminal: verdict, counts, failures, waivers.

    Reads results.json without checking the signature (use 'report verify' for that).
    Exits 0 whatever the verdict; 2 if the directory holds no readable results.

    Example: campus-provision report show evidence/20261126T120000Z
    """
    with user_errors():
        results = read_results(directory)
        try:
            signer = read_manifest(directory).signer
        except EvidenceError:
            signer = None
        view = build_view(results)
    console.print(
        f"[b]{escape(results.campus)}[/b]  {results.mode} run {results.started} → "
        f"{results.finished}  spec {results.spec_sha256[:12]}…"
        + (f"  signed by {escape(signer)}" if signer else "")
    )
    console.print(
        f"verdict {_verdict(view.verdict)}: {len(view.hosts)} hosts × {len(view.controls)} "
        f"controls; {_counts(view.counts)}"
    )
    if view.failures:
        # One line per failure (not a table): nothing wraps, and it greps and pastes well.
        console.print(f"{len(view.failures)} failed or in error, most severe first:")
        for f in view.failures:
            note = f" [b]({escape(f.note)})[/b]" if f.note else ""
            label = SHORT[f.status].ljust(5)
            console.print(
                f"  [{COLOURS[f.status]}]{label}[/]  {escape(f.host)}  {escape(f.control.id)} "
                f"({f.control.severity}) {escape(f.control.title)}: {escape(f.message)}{note}"
            )
    active = [w for w in view.waivers if w.status == "waived"]
    if active:
        console.print(f"{len(active)} waived:")
        for w in active:
            if w.waiver is None:  # never: view.waivers holds only results with a waiver
                continue
            console.print(
                f"  {escape(w.host)} {escape(w.control.id)} until {w.waiver.expires} "
                f"(approved by {escape(w.waiver.approved_by)})"
            )
    console.print(
        f"[dim]not verified here: campus-provision report verify {escape(str(directory))} "
        "--pubkey signing.pub[/dim]"
    )


@app.command("diff")
def diff(
    old: Annotated[
        Path,
        typer.Argument(metavar="OLD", help="The earlier evidence directory.", show_default=False),
    ],
    new: Annotated[
        Path,
        typer.Argument(metavar="NEW", help="The later evidence directory.", show_default=False),
    ],
) -> None:
    """Show drift between two runs: controls that changed state per host, hosts in one only.

    Compares the two results.json (signatures are not checked: 'report verify' each
    first). Exits 0 when nothing drifted, 1 when anything did (a status changed, a host
    or control was added or removed), 2 when a directory cannot be read.

    Example: campus-provision report diff evidence/20261101T090000Z evidence/20261126T120000Z
    """
    with user_errors():
        before, after = read_results(old), read_results(new)
        drift = diff_results(before, after)
    if not drift:
        console.print(
            f"no drift: {len(after.hosts)} hosts × {len(after.controls)} controls "
            f"in the same state ({before.started} → {after.started})"
        )
        return
    titles = {c.id: c.title for c in load_catalogue().controls}
    worse = 0
    if drift.changes:
        table = Table(title=f"drift {before.started} → {after.started}", title_justify="left")
        for col in ("host", "control", "before", "after", ""):
            table.add_column(col)
        for ch in drift.changes:
            regressed = ch.new in ("fail", "error", "missing") and ch.old not in (
                "fail",
                "error",
                "missing",
            )
            worse += regressed
            table.add_row(
                escape(ch.host),
                f"{escape(ch.control)} {escape(titles.get(ch.control, ''))}",
                _status(ch.old),
                _status(ch.new),
                "[red]worse[/red]" if regressed else "",
            )
        console.print(table)
    for label, names in (
        ("host added", drift.hosts_added),
        ("host removed", drift.hosts_removed),
        ("control added", drift.controls_added),
        ("control removed", drift.controls_removed),
    ):
        for name in names:
            console.print(f"{label}: {escape(name)}")
    console.print(
        f"drift: {len(drift.changes)} changed ({worse} worse), "
        f"{len(drift.hosts_added)} hosts added, {len(drift.hosts_removed)} removed, "
        f"{len(drift.controls_added)} controls added, {len(drift.controls_removed)} removed"
    )
    raise typer.Exit(1)
