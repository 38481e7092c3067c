"""``campus-provision bundle``: build, verify and compare signed offline package bundles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
)
from rich.table import Table

from campus_provision.bundle.build import build_bundle
from campus_provision.bundle.closure import MIRROR
from campus_provision.bundle.diff import diff_manifests
from campus_provision.bundle.manifest import read_manifest
from campus_provision.bundle.verify import verify_bundle
from campus_provision.cli.common import SpecArg, console, load, user_errors
from campus_provision.cli.keys import KeysDirOpt, PassphraseFileOpt, read_passphrase
from campus_provision.keys.signing import (
    default_keys_dir,
    fingerprint,
    keys_dir_public_key,
    load_public_key,
    load_signing_key,
)

app = typer.Typer(
    help="Build, verify and compare signed offline package bundles (the air-gapped mirror).",
    no_args_is_help=True,
)

BundleArg = Annotated[
    Path,
    typer.Argument(metavar="DIR", help="A bundle directory.", show_default=False),
]


class _RichProgress:
    """A build's phases as rich progress bars, one per phase."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, name: str, total: int | None) -> None:
        if self.task is not None:
            # A phase that ends is complete, even when apt fetched fewer files than counted
            # (some were already in the cache).
            self.progress.update(self.task, completed=self.progress.tasks[-1].total or 0)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)


@app.command("build")
def build(
    spec: SpecArg,
    out: Annotated[
        Path,
        typer.Option("--out", help="The bundle directory to create.", show_default=False),
    ],
    profiles: Annotated[
        str | None,
        typer.Option(
            "--profiles", help="Only these software profiles, comma-separated \\[default: all]."
        ),
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option("--extra", help="Another package (name or name=version); repeatable."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing bundle at --out.")
    ] = False,
    mirror: Annotated[
        str, typer.Option("--mirror", help="The Debian mirror to download from.")
    ] = MIRROR,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Build a signed offline apt repository of the spec's software (on a connected machine).

    Resolves the full dependency closure of every package in the chosen profiles, plus
    what the roles and Ansible need, with apt's own resolver (Debian 12 bookworm, amd64);
    downloads it; writes pool/ and dists/ with apt-ftparchive, signed with the campus
    archive OpenPGP key (made on first use, kept sealed under the passphrase in the keys
    directory); and writes bundle.json signed with the campus signing key.

    Example: campus-provision bundle build inventories/seoul/campus.yml --out /srv/bundle-2026-11
    """
    with user_errors():
        campus = load(spec)
        directory = keys_dir or default_keys_dir()
        keys_dir_public_key(directory)  # a missing key is said before the passphrase is asked
        passphrase = read_passphrase(passphrase_file, confirm=False)
        signing_key = load_signing_key(directory, passphrase)
        names = None if profiles is None else [p.strip() for p in profiles.split(",") if p.strip()]
        started = time.monotonic()
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        ) as bar:
            result = build_bundle(
                spec,
                campus,
                out,
                signing_key=signing_key,
                keys_dir=directory,
                passphrase=passphrase,
                profiles=names,
                extras=extra or [],
                mirror=mirror,
                force=force,
                progress=_RichProgress(bar),
            )
    elapsed = time.monotonic() - started
    m = result.manifest
    console.print(
        f"{escape(str(result.out))}: {len(m.packages)} packages, "
        f"{result.total_bytes / 2**20:.1f} MiB, profiles {', '.join(m.profiles) or '-'}, "
        f"built in {elapsed:.0f} s"
    )
    console.print(f"  archive key {m.archive_key} (campus-archive.gpg in the bundle)")
    console.print(f"  signed by campus key {fingerprint(signing_key.public_key())}")


@app.command("verify")
def verify(
    directory: BundleArg,
    pubkey: Annotated[
        Path | None,
        typer.Option(
            "--pubkey",
            help="The campus signing public key (signing.pub) \\[default: the keys directory's].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a bundle: its signed manifest, every file's hash, and the apt signatures.

    Prints one line per file missing, extra or altered, and per signature or index that
    does not verify. Exit 0 when the bundle is intact, 1 otherwise.

    Example: campus-provision bundle verify /media/usb/bundle-2026-11 --pubkey seoul-signing.pub
    """
    with user_errors():
        pub = load_public_key(pubkey) if pubkey else keys_dir_public_key(default_keys_dir())
        manifest, problems = verify_bundle(directory, pub)
    for line in problems:
        typer.echo(f"{directory}: {line}", err=True)
    if problems:
        typer.echo(f"{directory}: NOT OK: {len(problems)} problems", err=True)
        raise typer.Exit(1)
    console.print(
        f"{escape(str(directory))}: OK: {len(manifest.packages)} packages, signed by "
        f"{fingerprint(pub)}, archive key {manifest.archive_key}"
    )


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(metavar="OLD", help="The older bundle.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="The newer bundle.")],
) -> None:
    """Show the packages NEW adds, removes or changes against OLD (does not verify them).

    Example: campus-provision bundle diff /srv/bundle-2026-10 /srv/bundle-2026-11
    """
    with user_errors():
        _, before = read_manifest(old)
        _, after = read_manifest(new)
    changes = diff_manifests(before, after)
    if not changes:
        console.print("no package changes")
        return
    table = Table("change", "package", "arch", "old", "new")
    colour = {"added": "green", "removed": "red", "changed": "yellow"}
    for c in changes:
        table.add_row(f"[{colour[c.kind]}]{c.kind}[/]", c.name, c.arch, c.old, c.new)
    console.print(table)
    counts = {k: sum(c.kind == k for c in changes) for k in ("added", "removed", "changed")}
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()))
