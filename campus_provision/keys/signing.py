"""The campus evidence-signing key: an Ed25519 key pair in the keys directory.

Two files, in a directory only the operator can open (0700):

- ``signing.key`` (0600): the private key's 32 raw bytes sealed under the operator's
  passphrase (scrypt + AES-256-GCM, see :mod:`campus_provision.keys.sealed`); its
  ``meta`` carries the public key and fingerprint, authenticated, so ``keys show`` needs
  no passphrase.
- ``signing.pub`` (0644): what an auditor is given: a comment line naming the fingerprint,
  then the 32-byte raw public key in base64 on one line.
- ``retired/<fingerprint>.signing.{key,pub}``: pairs replaced by ``keys init --force``.

The keys directory is ``--keys-dir``, else ``$CAMPUS_KEYS_DIR``, else
``$XDG_CONFIG_HOME/campus-provision/keys`` (``~/.config/campus-provision/keys``): a
per-operator place outside the checkout, so a key is never committed by accident.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_public_key,
)

from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import fsync_dir, write_atomic
from campus_provision.keys.sealed import read_envelope, seal, unseal

KEY_FILE = "signing.key"
PUB_FILE = "signing.pub"
RETIRED_DIR = "retired"
PURPOSE = "campus-provision signing key v1"
KEYS_DIR_ENV = "CAMPUS_KEYS_DIR"
MIN_PASSPHRASE = 12
PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class PublicKeyInfo:
    """What may be shown about a signing key: its fingerprint, public key and files."""

    fingerprint: str
    public_key_b64: str
    key_file: Path
    pub_file: Path


def default_keys_dir() -> Path:
    """``$CAMPUS_KEYS_DIR``, else ``$XDG_CONFIG_HOME/campus-provision/keys``."""
    if env := os.environ.get(KEYS_DIR_ENV):
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "campus-provision" / "keys"


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(pub: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(_raw(pub)).hexdigest()[:16]


def public_key_text(pub: Ed25519PublicKey) -> str:
    """The contents of ``signing.pub``: a fingerprint comment, then the key in base64."""
    return (
        f"# campus-provision evidence signing key (Ed25519), fingerprint {fingerprint(pub)}\n"
        f"{base64.b64encode(_raw(pub)).decode('ascii')}\n"
    )


def write_public_key(pub: Ed25519PublicKey, path: Path) -> None:
    """Write ``signing.pub``-style text to ``path`` (0644, atomically)."""
    write_atomic(path, public_key_text(pub).encode("ascii"), 0o644)


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to protect a key (the passphrase is never echoed)."""
    if len(passphrase) < MIN_PASSPHRASE:
        # The message states the rule only; the passphrase itself is never echoed.
        raise KeyStoreError(
            f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters"
        )


def private_dir(keys_dir: Path) -> None:
    """Create ``keys_dir`` 0700, or refuse one that other users can open."""
    if not keys_dir.exists():
        keys_dir.mkdir(parents=True, mode=0o700)
        keys_dir.chmod(0o700)  # mkdir's mode is filtered by the umask
        fsync_dir(keys_dir.parent)
        return
    if not keys_dir.is_dir():
        raise KeyStoreError(f"{keys_dir}: exists and is not a directory")
    mode = stat.S_IMODE(keys_dir.stat().st_mode)
    if mode & 0o077:
        # Not silently chmod-ed: --keys-dir may name a directory that others rely on.
        raise KeyStoreError(
            f"{keys_dir}: other users can open this directory (mode {mode:04o}); "
            f"run 'chmod 700 {keys_dir}' or choose another --keys-dir"
        )


def init_signing_key(keys_dir: Path, passphrase: str, force: bool = False) -> PublicKeyInfo:
    """Generate the campus signing key in ``keys_dir``, sealed under ``passphrase``.

    Refuses to replace an existing key unless ``force``; a replaced pair is kept in
    ``retired/`` (evidence it signed verifies only with its own public key).
    """
    check_passphrase(passphrase)
    key_file = keys_dir / KEY_FILE
    if key_file.exists() and not force:
        raise KeyStoreError(
            f"{key_file}: a signing key already exists; pass --force to replace it "
            "(evidence it signed will then verify only with its old signing.pub)"
        )
    try:
        return _create(keys_dir, passphrase)
    except OSError as exc:
        raise KeyStoreError(f"{keys_dir}: cannot write the signing key: {exc.strerror}") from None


def _create(keys_dir: Path, passphrase: str) -> PublicKeyInfo:
    """Write a new key pair (keeping any old one in ``retired/``)."""
    key_file, pub_file = keys_dir / KEY_FILE, keys_dir / PUB_FILE
    private_dir(keys_dir)
    if key_file.exists():
        _retire(keys_dir)
    private = Ed25519PrivateKey.generate()
    pub = private.public_key()
    fp = fingerprint(pub)
    pub_b64 = base64.b64encode(_raw(pub)).decode("ascii")
    meta = {
        "algorithm": "Ed25519",
        "public_key": pub_b64,
        "fingerprint": fp,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    secret = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    # The private key first: a crash between the two writes leaves a key whose public half
    # is still in its meta (``keys export-pubkey`` rewrites signing.pub from it).
    write_atomic(key_file, seal(secret, passphrase, purpose=PURPOSE, meta=meta), 0o600)
    write_public_key(pub, pub_file)
    return PublicKeyInfo(fp, pub_b64, key_file, pub_file)


def _retire(keys_dir: Path) -> None:
    """Keep the key pair about to be replaced as ``retired/<fingerprint>.*``.

    Evidence it signed can still be checked here, and a mistaken ``--force`` loses nothing.
    """
    try:
        name = signing_key_info(keys_dir).fingerprint
    except KeyStoreError:  # a damaged key is replaced too, and kept for inspection
        name = "unreadable-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    retired = keys_dir / RETIRED_DIR
    retired.mkdir(mode=0o700, exist_ok=True)
    retired.chmod(0o700)
    # Copies, not moves: the old pair stays in place until the new one replaces it, so a
    # failure part-way leaves a working key either way.
    write_atomic(retired / f"{name}.{KEY_FILE}", (keys_dir / KEY_FILE).read_bytes(), 0o600)
    if (keys_dir / PUB_FILE).exists():
        write_atomic(retired / f"{name}.{PUB_FILE}", (keys_dir / PUB_FILE).read_bytes(), 0o644)


def _read_key_file(keys_dir: Path) -> tuple[Path, bytes]:
    key_file = keys_dir / KEY_FILE
    try:
        return key_file, key_file.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(
            f"{key_file}: no signing key; create one with 'campus-provision keys init'"
        ) from None
    except OSError as exc:
        raise KeyStoreError(f"{key_file}: cannot read: {exc.strerror}") from None


def load_signing_key(keys_dir: Path, passphrase: str) -> Ed25519PrivateKey:
    """Unlock the signing key in ``keys_dir`` (KeyStoreError: wrong passphrase, tampered)."""
    key_file, data = _read_key_file(keys_dir)
    secret = unseal(data, passphrase, purpose=PURPOSE, source=key_file)
    try:
        private = Ed25519PrivateKey.from_private_bytes(secret)
    except ValueError:
        raise KeyStoreError(f"{key_file}: the sealed key is not an Ed25519 key") from None
    meta = read_envelope(data, purpose=PURPOSE, source=key_file)["meta"]
    if meta.get("public_key") != base64.b64encode(_raw(private.public_key())).decode("ascii"):
        raise KeyStoreError(f"{key_file}: the public key in the file does not match the key")
    return private


def signing_key_info(keys_dir: Path) -> PublicKeyInfo:
    """The signing key's public half, read from ``signing.key`` (no passphrase needed).

    The public key in the key file's meta is authenticated only when the key is unlocked;
    for a check against a trusted copy, compare fingerprints with ``signing.pub``.
    """
    key_file, data = _read_key_file(keys_dir)
    meta = read_envelope(data, purpose=PURPOSE, source=key_file)["meta"]
    pub = _public_from_b64(meta.get("public_key", ""), key_file)
    return PublicKeyInfo(
        fingerprint(pub),
        base64.b64encode(_raw(pub)).decode("ascii"),
        key_file,
        keys_dir / PUB_FILE,
    )


def _public_from_b64(text: str, source: Path) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"{source}: the public key is not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise KeyStoreError(
            f"{source}: not an Ed25519 public key ({len(raw)} bytes, expected {PUBLIC_KEY_BYTES})"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(path_or_dir: Path) -> Ed25519PublicKey:
    """A public key from a ``signing.pub`` file, a keys directory holding one, or PEM."""
    path = path_or_dir / PUB_FILE if path_or_dir.is_dir() else path_or_dir
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: no such public key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"{path}: cannot read the public key: {exc}") from None
    if text.lstrip().startswith("-----BEGIN PUBLIC KEY-----"):
        # Accept the PEM an auditor may have been handed by other tooling.
        try:
            pem = load_pem_public_key(text.encode("ascii"))
        except ValueError:
            raise KeyStoreError(f"{path}: not a valid PEM public key") from None
        if not isinstance(pem, Ed25519PublicKey):
            raise KeyStoreError(f"{path}: not an Ed25519 public key")
        return pem
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise KeyStoreError(f"{path}: expected one line of base64 (and # comments)")
    return _public_from_b64(lines[0], path)


def keys_dir_public_key(keys_dir: Path, *, from_key_file: bool = False) -> Ed25519PublicKey:
    """The public half of the signing key in ``keys_dir``, without its passphrase.

    From ``signing.pub``; when ``signing.key`` is there too, the two must agree (a
    mismatch means one was replaced without the other). With only ``signing.key``, or
    with ``from_key_file`` (to rewrite a stale ``signing.pub``), from the key file's meta.
    """
    pub_file = keys_dir / PUB_FILE
    if from_key_file and (keys_dir / KEY_FILE).exists():
        info = signing_key_info(keys_dir)
        return _public_from_b64(info.public_key_b64, info.key_file)
    pub = load_public_key(pub_file) if pub_file.exists() else None
    if not (keys_dir / KEY_FILE).exists():
        if pub is None:
            raise KeyStoreError(
                f"{keys_dir}: no signing key; create one with 'campus-provision keys init'"
            )
        return pub
    info = signing_key_info(keys_dir)
    if pub is not None and fingerprint(pub) != info.fingerprint:
        raise KeyStoreError(
            f"{pub_file}: fingerprint {fingerprint(pub)} is not the signing key's "
            f"({info.fingerprint}); rewrite it with 'campus-provision keys export-pubkey "
            f"--out {pub_file}'"
        )
    return pub if pub is not None else _public_from_b64(info.public_key_b64, info.key_file)
