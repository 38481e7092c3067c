"""``campus-provision keys``: the campus evidence-signing key (Ed25519, encrypted at rest)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated

import typer

from campus_provision.cli.common import console, user_errors
from campus_provision.keys import KeyStoreError
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

PASSPHRASE_ENV = "CAMPUS_KEYSTORE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret

app = typer.Typer(
    help="The campus evidence-signing key (Ed25519, encrypted at rest under a passphrase).",
    no_args_is_help=True,
)

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
        help="Read the passphrase from the first line of this file (keep it 0600). Without "
        f"it: ${PASSPHRASE_ENV}, else a prompt. Never given on the command line itself.",
        show_default=False,
    ),
]


def read_passphrase(passphrase_file: Path | None, *, confirm: bool) -> str:
    """The operator's passphrase: ``--passphrase-file``, else the environment, else a prompt.

    An explicit ``--passphrase-file`` wins over ``$CAMPUS_KEYSTORE_PASSPHRASE`` (an option
    given for this one command is more specific than a variable set for the session). The
    prompt hides input and, with ``confirm`` (key creation), asks twice. There is no
    option taking the passphrase itself: it would show in ``ps`` and shell history.
    """
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
            mode = stat.S_IMODE(passphrase_file.stat().st_mode)
        except OSError as exc:
            raise KeyStoreError(
                f"{passphrase_file}: cannot read the passphrase file: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            # No detail from the decoder: it would quote bytes of the secret.
            raise KeyStoreError(f"{passphrase_file}: the passphrase file is not UTF-8") from None
        if mode & 0o077:
            typer.echo(
                f"warning: {passphrase_file} can be read by other users (mode {mode:04o}); "
                f"chmod 600 it",
                err=True,
            )
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise KeyStoreError(f"{passphrase_file}: the first line (the passphrase) is empty")
        return lines[0]
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        if not env:
            raise KeyStoreError(f"${PASSPHRASE_ENV} is set but empty")
        return env
    value: str = typer.prompt(
        "Passphrase for the signing key", hide_input=True, confirmation_prompt=confirm
    )
    return value


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
