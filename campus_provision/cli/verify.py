"""``campus-provision verify`` and ``audit``: prove, host by host, that PCs are locked down."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from campus_provision.cli.common import (
    AdminOpt,
    SpecArg,
    admin_account,
    console,
    ip_address_option,
    load,
    user_errors,
)
from campus_provision.cli.keys import read_passphrase
from campus_provision.errors import VerifyError
from campus_provision.keys.signing import default_keys_dir, load_signing_key
from campus_provision.lab.control import lab_for_spec
from campus_provision.lab.state import DEFAULT_PREFIX, LabPaths, state_dir_from_env
from campus_provision.provision.bootstrap import choose_users, overlay_inventory
from campus_provision.render import diff_tree, render_files, write_tree
from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.evidence import default_evidence_dir, write_evidence
from campus_provision.verify.results import RunResults
from campus_provision.verify.runner import Target, run_checks, spec_digest

LimitOpt = Annotated[str, typer.Option("--limit", help="Hosts or groups, comma-separated.")]
ControlsOpt = Annotated[
    str | None,
    typer.Option("--controls", help="Only these control IDs, comma-separated (e.g. CP-NET-01)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Evidence directory \\[default: evidence/<UTC timestamp>].",
        show_default=False,
    ),
]
LabOpt = Annotated[
    bool, typer.Option("--lab", help="Verify the running lab's hosts (its inventory and slice).")
]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="The lab's prefix, with --lab.")]
ProbeOpt = Annotated[
    str | None,
    typer.Option(
        "--probe",
        metavar="ADDRESS",
        help="An IP address outside the campus that egress checks try to reach.",
        callback=ip_address_option,
    ),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-n", min=1, max=32, help="Parallel pytest workers.")
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-dir",
        help="Where the signing key is \\[default: $CAMPUS_KEYS_DIR].",
        show_default=False,
    ),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the signing key's passphrase from this file.",
        show_default=False,
    ),
]


def _run(
    spec: Path,
    *,
    lab: bool,
    prefix: str,
    limit: str,
    controls: str | None,
    out: Path | None,
    probe: str | None,
    workers: int,
    keys_dir: Path | None,
    passphrase_file: Path | None,
    audit: bool,
    signing_key: Ed25519PrivateKey | None = None,
    admin: str | None = None,
) -> None:
    # ``signing_key`` lets a caller unlock the key up front (provision --verify asks
    # before a run of hours, not after it).
    with user_errors():
        campus = load(spec)
        if lab:
            paths = LabPaths(state_dir_from_env(), prefix)
            plan = lab_for_spec(paths, spec)
            campus, inventory = plan.campus, paths.inventory
        else:
            inventory = spec.parent
            files = render_files(campus, spec.name)
            result, _ = diff_tree(inventory, files)
            if result.differs:
                if audit:
                    raise VerifyError(
                        f"{inventory}: the inventory is out of date with {spec}; audit changes "
                        "nothing, so ask IT staff to run 'campus-provision render' first"
                    )
                write_tree(inventory, files)
        # Unlock the signing key before the run, so a wrong passphrase costs no time.
        if signing_key is None:
            signing_key = load_signing_key(
                keys_dir or default_keys_dir(), read_passphrase(passphrase_file, confirm=False)
            )
        selected = tuple(c.strip() for c in controls.split(",") if c.strip()) if controls else ()
        # Absolute: the checks run in pytest workers whose working directory is not ours.
        out_dir = (out or default_evidence_dir()).absolute()
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        # Provisioned PCs take only an admin (with sudo); fresh ones only root.
        scratch = out_dir.parent / f".{out_dir.name}.inventory"
        who = admin_account(admin, campus)
        # The log hosts too: LOG-01 reads there what the PCs sent.
        users = choose_users(inventory / "hosts.yml", f"{limit or 'all'},log_hosts", who)
        target = Target(
            inventory=overlay_inventory(inventory / "hosts.yml", scratch, users),
            campus=campus,
            spec_sha256=spec_digest(spec),
            limit=limit,
            controls=selected,
            workers=workers,
            probe=probe,
        )
        junit = out_dir.parent / f".{out_dir.name}.junit.xml"
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("audit" if audit else "verify", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                results = run_checks(target, junit, progress)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        if audit:
            results = RunResults(**{**results.__dict__, "mode": "audit"})
        try:
            # The JUnit file is made from the results, not copied from pytest's: pytest's
            # lacks the cells no worker reported and knows nothing of waivers, and the
            # three files must say the same thing.
            written = write_evidence(
                out_dir, results, None, signing_key, campus.campus.signing_identity
            )
        finally:
            junit.unlink(missing_ok=True)
    _summary(results, written)
    if not results.passed():
        raise typer.Exit(1)


def _summary(results: RunResults, written: Path) -> None:
    titles = {c.id: c.title for c in load_catalogue().controls}
    title = f"{results.campus}: {len(results.hosts)} hosts × {len(results.controls)} controls"
    table = Table(title=title, title_justify="left")
    for col in ("host", "pass", "fail", "error", "waived", "n/a"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for host in results.hosts:
        mine = [r for r in results.results if r.host == host]
        count = {
            s: sum(r.status == s for r in mine)
            for s in ("pass", "fail", "error", "waived", "not_applicable")
        }
        table.add_row(
            host,
            str(count["pass"]),
            f"[red]{count['fail']}[/red]" if count["fail"] else "0",
            str(count["error"]),
            str(count["waived"]),
            str(count["not_applicable"]),
        )
    console.print(table)
    for r in results.results:
        if r.status in ("fail", "error"):
            title = titles.get(r.control, "")
            console.print(
                f"[red]{r.status.upper()}[/red] {r.host} {r.control} ({title}): {r.message}"
            )
    verdict = "[green]PASS[/green]" if results.passed() else "[red]FAIL[/red]"
    console.print(f"{verdict}: signed evidence in {written} (open report.html)")


def verify(
    spec: SpecArg,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = "workstations",
    controls: ControlsOpt = None,
    out: OutOpt = None,
    probe: ProbeOpt = None,
    workers: WorkersOpt = 4,
    keys_dir: KeysOpt = None,
    passphrase_file: PassFileOpt = None,
    admin: AdminOpt = None,
) -> None:
    """Check every control on every PC over SSH and write signed evidence.

    Runs the testinfra checks with pytest in parallel, applies the spec's waivers, and
    writes junit.xml, results.json, report.html, manifest.json and manifest.sig. Exit 0
    when every control passed, was waived or does not apply; 1 otherwise.

    Example: campus-provision verify inventories/seoul/campus.yml --lab --controls CP-NET-01
    """
    _run(
        spec,
        lab=lab,
        prefix=prefix,
        limit=limit,
        controls=controls,
        out=out,
        probe=probe,
        workers=workers,
        keys_dir=keys_dir,
        passphrase_file=passphrase_file,
        audit=False,
        admin=admin,
    )


def audit(
    spec: SpecArg,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = "workstations",
    controls: ControlsOpt = None,
    out: OutOpt = None,
    probe: ProbeOpt = None,
    workers: WorkersOpt = 4,
    keys_dir: KeysOpt = None,
    passphrase_file: PassFileOpt = None,
    admin: AdminOpt = None,
    provision: Annotated[bool, typer.Option("--provision", hidden=True)] = False,
) -> None:
    """The auditors' verify: read-only, it changes nothing on any host or in the inventory.

    The checks only read and probe; audit refuses to render a stale inventory and
    refuses any request to provision.

    Example: campus-provision audit inventories/seoul/campus.yml --out evidence/audit-2026-11
    """
    if provision:
        typer.echo(
            "audit never changes a host; run 'campus-provision provision' as IT staff", err=True
        )
        raise typer.Exit(2)
    _run(
        spec,
        lab=lab,
        prefix=prefix,
        limit=limit,
        controls=controls,
        out=out,
        probe=probe,
        workers=workers,
        keys_dir=keys_dir,
        passphrase_file=passphrase_file,
        audit=True,
        admin=admin,
    )
