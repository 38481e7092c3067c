"""``campus-provision keys``: the evidence-signing key and the volume keystore (encrypted)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from campus_provision.cli.common import console, user_errors
from campus_provision.keys import KeyStoreError, sealed
from campus_provision.keys.escrow import export_escrow, import_escrow
from campus_provision.keys.passphrase import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    environment_passphrase,
    environment_passphrase_file,
    read_passphrase_file,
)
from campus_provision.keys.signing import (
    KEY_FILE,
    PUB_FILE,
    default_keys_dir,
    fingerprint,
    init_signing_key,
    keys_dir_public_key,
    load_signing_key,
    public_key_text,
    signing_key_info,
    write_public_key,
)
from campus_provision.keys.volumes import (
    Resealed,
    VolumeKeystore,
    list_volume_keys,
    reseal_keys_dir,
    split_volume_id,
)

app = typer.Typer(
    help="The campus evidence-signing key and the data-volume keys (encrypted at rest under "
    "a passphrase).",
    no_args_is_help=True,
)
escrow_app = typer.Typer(
    help="A recovery bundle of every volume key, sealed under a separate escrow passphrase.",
    no_args_is_help=True,
)
app.add_typer(escrow_app, name="escrow")

KeysDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-dir",
        help="The keys directory [default: $CAMPUS_KEYS_DIR, else "
        "~/.config/campus-provision/keys].",
        show_default=False,
    ),
]
PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the passphrase from the first line of this file (0600: one others may "
        "open is refused). Without "
        f"it: the file ${PASSPHRASE_FILE_ENV} names, else ${PASSPHRASE_ENV}, else a prompt. "
        "Never given on the command line itself.",
        show_default=False,
    ),
]


def read_passphrase(
    passphrase_file: Path | None, *, confirm: bool, prompt: str = "Passphrase for the signing key"
) -> str:
    """The operator's passphrase: ``--passphrase-file``, else the environment, else a prompt.

    An explicit ``--passphrase-file`` wins over ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``, which
    wins over ``$CAMPUS_KEYSTORE_PASSPHRASE`` (an option given for this one command is more
    specific than a variable set for the session; a file keeps the secret out of the
    environment of every process started). The prompt hides input and, with ``confirm``
    (key creation), asks twice. There is no option taking the passphrase itself: it would
    show in ``ps`` and shell history.
    """
    path = passphrase_file or environment_passphrase_file()
    if path is not None:
        return read_passphrase_file(path)
    env = environment_passphrase()
    if env is not None:
        return env
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def print_resealed(resealed: Resealed | None) -> None:
    """Say which key files a write brought up to today's scrypt cost, and which it left."""
    if resealed is None:
        return
    cost = f"the current scrypt cost (n={sealed.SCRYPT_N})"
    for path in resealed.files:
        console.print(f"re-sealed {escape(str(path))} at {cost}")
    for line in resealed.left:
        typer.echo(f"warning: left at its old scrypt cost: {line}", err=True)


@app.command("init")
def init(
    keys_dir: KeysDirOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing signing key.")
    ] = False,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Generate the campus evidence-signing key (Ed25519), encrypted under a passphrase.

    Writes signing.key (0600: the private key sealed with AES-256-GCM under a key derived
    with scrypt from the passphrase) and signing.pub (0644: the public key to give
    auditors) in the keys directory (created 0700). Refuses to replace a key without
    --force.

    Example: campus-provision keys init --keys-dir /srv/campus/keys
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        if (directory / KEY_FILE).exists() and not force:
            # Said before asking for a passphrase that would only be thrown away.
            raise KeyStoreError(
                f"{directory / KEY_FILE}: a signing key already exists; pass --force to "
                "replace it (evidence it signed will then verify only with its old signing.pub)"
            )
        passphrase = read_passphrase(passphrase_file, confirm=True)
        info = init_signing_key(directory, passphrase, force=force)
    console.print(f"signing key created, fingerprint [b]{info.fingerprint}[/b]")
    console.print(f"  private key (encrypted): {info.key_file}")
    console.print(f"  public key:              {info.pub_file}  (give this file to auditors)")
    console.print("Keep the passphrase safe: without it this key cannot sign again.")


@app.command("show")
def show(keys_dir: KeysDirOpt = None) -> None:
    """Show the signing key's fingerprint and files (no passphrase needed).

    Example: campus-provision keys show
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        pub = keys_dir_public_key(directory)
        info = signing_key_info(directory) if (directory / KEY_FILE).exists() else None
    console.print(f"fingerprint: {fingerprint(pub)}")
    console.print(f"keys dir:    {directory}")
    if info is not None:
        console.print(f"private key: {info.key_file} (encrypted)")
    else:
        console.print(f"private key: none in {directory} (only the public key is here)")
    pub_file = directory / PUB_FILE
    if pub_file.exists():
        console.print(f"public key:  {pub_file}")
    else:
        console.print(
            f"public key:  {pub_file} is missing; write it with "
            f"'campus-provision keys export-pubkey --out {pub_file}'"
        )


@app.command("check")
def check(keys_dir: KeysDirOpt = None, passphrase_file: PassphraseFileOpt = None) -> None:
    """Prove the passphrase unlocks the signing key and the key signs (before a long run).

    Exit 0 when it does; 1 with one line (wrong passphrase, damaged key file) otherwise.

    Example: campus-provision keys check --passphrase-file /run/secrets/campus-keystore
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        # Fail fast on a missing key, before asking for a passphrase.
        pub = keys_dir_public_key(directory)
        private = load_signing_key(directory, read_passphrase(passphrase_file, confirm=False))
        probe = b"campus-provision keys check"
        private.public_key().verify(private.sign(probe), probe)
        if fingerprint(private.public_key()) != fingerprint(pub):
            raise KeyStoreError(
                f"{directory / PUB_FILE}: is not the public half of {directory / KEY_FILE}"
            )
    console.print(f"passphrase OK: signing key {fingerprint(pub)} unlocks and signs")


@app.command("reseal")
def reseal(keys_dir: KeysDirOpt = None, passphrase_file: PassphraseFileOpt = None) -> None:
    """Re-seal every key file sealed at an older, lower scrypt cost at today's cost.

    The signing key, the archive key and every volume key (not retired/). Commands that
    write the keystore (volume-create, escrow import, volumes create and rotate-key) do
    this anyway; this is for a keystore nothing is about to write. Read-only commands
    never rewrite a key file. Exit 0 when every file is at today's cost; 1 when a file
    was left (one line each: another passphrase, not a key file).

    Example: campus-provision keys reseal --passphrase-file /run/secrets/campus-keystore
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        if not directory.is_dir():
            raise KeyStoreError(f"{directory}: no keys directory")
        passphrase = read_passphrase(passphrase_file, confirm=False, prompt=KEYSTORE_PROMPT)
        VolumeKeystore(directory, passphrase).verify_passphrase()
        done = reseal_keys_dir(directory, passphrase)
    print_resealed(done)
    if done.left:
        raise typer.Exit(1)
    if not done.files:
        console.print(f"every key file in {escape(str(directory))} is at the current scrypt cost")


@app.command("export-pubkey")
def export_pubkey(
    keys_dir: KeysDirOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write to this file (0644) instead of standard output."),
    ] = None,
) -> None:
    """Print (or write) the public key auditors check evidence signatures with.

    The text is signing.pub's: a comment line with the fingerprint, then the raw
    32-byte Ed25519 public key in base64.

    Example: campus-provision keys export-pubkey --out /media/usb/seoul-signing.pub
    """
    with user_errors():
        # The key file's own record of its public half: it also repairs a stale signing.pub.
        pub = keys_dir_public_key(keys_dir or default_keys_dir(), from_key_file=True)
        if out is None:
            typer.echo(public_key_text(pub), nl=False)
            return
        try:
            write_public_key(pub, out)
        except OSError as exc:
            raise KeyStoreError(f"{out}: cannot write: {exc.strerror}") from None
    console.print(f"{out}: public key {fingerprint(pub)} written")


def _volume(value: str | None) -> str | None:
    """A ``--volume`` value checked as HOST/DATASET (typer callback)."""
    if value is None:
        return None
    try:
        split_volume_id(value)
    except KeyStoreError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


VolumeOpt = Annotated[
    str | None,
    typer.Option(
        "--volume",
        metavar="HOST/DATASET",
        help="Only this volume's keys, e.g. sgm-a01/card-spending-2025.",
        callback=_volume,
        show_default=False,
    ),
]
VolumeArg = Annotated[
    str,
    typer.Argument(
        metavar="HOST/DATASET",
        help="The volume: a PC's hostname and a dataset id, e.g. sgm-a01/card-spending-2025.",
        callback=_volume,
        show_default=False,
    ),
]
EscrowPassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--escrow-passphrase-file",
        help="Read the escrow passphrase from the first line of this file (0600); "
        "without it, a prompt. It must differ from the keystore passphrase.",
        show_default=False,
    ),
]
KEYSTORE_PROMPT = "Keystore passphrase"


def _read_escrow_passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        return read_passphrase_file(path)
    value: str = typer.prompt("Escrow passphrase", hide_input=True, confirmation_prompt=confirm)
    return value


@app.command("volumes")
def volumes(keys_dir: KeysDirOpt = None, volume: VolumeOpt = None) -> None:
    """List the data-volume keys: volume, key id, created (no passphrase, never a key).

    A volume's newest key is its current one, the one a provisioning run installs.

    Example: campus-provision keys volumes --volume sgm-a01/card-spending-2025
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        keys = list_volume_keys(directory, volume)
    if not keys:
        console.print(f"no volume keys in {directory}" + (f" for {volume}" if volume else ""))
        return
    current = {k.volume_id: k.key_id for k in keys}  # oldest first: the last one stays
    table = Table(title=f"volume keys in {directory}", title_justify="left")
    for col in ("volume", "key id", "created", "current"):
        table.add_column(col, no_wrap=True)
    for key in sorted(keys, key=lambda k: (k.volume_id, k.created, k.key_id)):
        is_current = current[key.volume_id] == key.key_id
        table.add_row(key.volume_id, key.key_id, key.created, "yes" if is_current else "")
    # Ids cut short with "…" would be useless to copy: as wide as the table needs.
    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(highlight=False, width=max(console.width, needed)).print(table)


@app.command("volume-create")
def volume_create(
    volume: VolumeArg, keys_dir: KeysDirOpt = None, passphrase_file: PassphraseFileOpt = None
) -> None:
    """Make a new random key for a data volume; it becomes the volume's current key.

    The key (64 random bytes) is sealed under the keystore passphrase in
    <keys dir>/volumes/<host>/<dataset>/<key id>.key (0600). The volume's older keys stay
    in the keystore: a volume already made with one of them still opens only with that.

    Example: campus-provision keys volume-create sgm-a01/card-spending-2025
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        confirm = not list_volume_keys(directory)  # the first key sets the passphrase
        passphrase = read_passphrase(passphrase_file, confirm=confirm, prompt=KEYSTORE_PROMPT)
        store = VolumeKeystore(directory, passphrase)
        key = store.create(volume)
    console.print(f"volume key {key.key_id} created for {key.volume_id}: {key.path}")
    print_resealed(store.resealed)


@escrow_app.command("export")
def escrow_export(
    out: Annotated[
        Path,
        typer.Argument(
            help="The bundle to write (0600); keep it apart from the keystore.", show_default=False
        ),
    ],
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    escrow_passphrase_file: EscrowPassphraseFileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing OUT.")] = False,
) -> None:
    """Write every volume key into one recovery bundle, sealed under an escrow passphrase.

    Asks for the keystore passphrase (to open the keys) and then, twice, for the escrow
    passphrase, unless files give them. The bundle restores lost keys with
    'campus-provision keys escrow import'.

    Example: campus-provision keys escrow export /media/usb/seoul-volume-keys.escrow
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        # Said before asking for passphrases that would only be thrown away.
        if out.exists() and not force:
            raise KeyStoreError(f"{out}: exists already; choose another file or pass --force")
        if not list_volume_keys(directory):
            raise KeyStoreError(f"{directory}: no volume keys to escrow")
        passphrase = read_passphrase(passphrase_file, confirm=False, prompt=KEYSTORE_PROMPT)
        store = VolumeKeystore(directory, passphrase)
        store.verify_passphrase()
        escrow = _read_escrow_passphrase(escrow_passphrase_file, confirm=True)
        count = export_escrow(store, out, escrow, force=force)
    console.print(f"{out}: {count} volume keys escrowed (sealed under the escrow passphrase)")
    console.print("Keep the bundle and its passphrase apart from the keystore and each other.")


@escrow_app.command("import")
def escrow_import(
    bundle: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="An escrow bundle written by 'keys escrow export'.",
            show_default=False,
        ),
    ],
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    escrow_passphrase_file: EscrowPassphraseFileOpt = None,
) -> None:
    """Restore the volume keys the keystore lacks from an escrow bundle.

    Keys already in the keystore stay as they are; a key file holding another key under
    an escrowed key's id is an error, and then nothing is written. Restored keys are
    sealed under the keystore passphrase (asked twice when the keystore is empty).

    Example: campus-provision keys escrow import /media/usb/seoul-volume-keys.escrow
    """
    with user_errors():
        directory = keys_dir or default_keys_dir()
        if not bundle.is_file():
            raise KeyStoreError(f"{bundle}: no such escrow bundle")
        escrow = _read_escrow_passphrase(escrow_passphrase_file, confirm=False)
        confirm = not list_volume_keys(directory)
        passphrase = read_passphrase(passphrase_file, confirm=confirm, prompt=KEYSTORE_PROMPT)
        store = VolumeKeystore(directory, passphrase)
        count = import_escrow(bundle, escrow, store)
    console.print(f"{bundle}: {count} volume keys restored into {directory}")
    print_resealed(store.resealed)
