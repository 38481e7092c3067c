"""A secret sealed under a passphrase: the on-disk envelope every key file uses.

The envelope is a small JSON document::

    {
      "format": "campus-provision/sealed/v1",
      "purpose": "campus-provision signing key v1",
      "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
      "check": "<base64, 16 bytes>",
      "cipher": {"name": "AES-256-GCM", "nonce": "<base64, 12 bytes>"},
      "ciphertext": "<base64: the secret, then the 16-byte GCM tag>",
      "meta": {...}
    }

scrypt turns the passphrase and the salt into 48 bytes: the first 32 are the AES-256-GCM
key, the last 16 are ``check``. ``check`` lets a wrong passphrase be told apart from a
damaged file (GCM alone says only "tag mismatch" for both); it gives an attacker holding
the file nothing new, because trying a passphrase against it costs the same scrypt run as
trying it against the GCM tag. The associated data binds ``format``, ``purpose`` and
``meta`` (e.g. the public key), so none of them can be changed without the tag failing,
and a sealed secret cannot be passed off as one sealed for another purpose.

Each envelope records its own scrypt cost, so files sealed at an older, lower cost (n=2^15
before this version) still open; :func:`reseal_file` re-seals one at today's cost, which
the keystore does on its next write (see ``campus_provision.keys.volumes.reseal_keys_dir``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import write_atomic

FORMAT = "campus-provision/sealed/v1"
# 2^17 with r=8 (128 MiB, about half a second a derivation on a modest controller): the
# minimum OWASP's password storage guidance gives for scrypt.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
CHECK_BYTES = 16
# A key file chooses its own scrypt cost; refuse costs far above ours so that a crafted
# file cannot make a command use gigabytes of memory or minutes of CPU. One derivation
# needs 128 * n * r bytes (cryptography sizes OpenSSL's memory limit from that): at most
# 512 MiB, four times ours, and at most p=4 of them in a row.
MAX_SCRYPT_MEMORY = 512 * 2**20
MAX_SCRYPT_R = 16
MAX_SCRYPT_P = 4


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str, source: Path) -> bytes:
    if not isinstance(value, str):
        raise KeyStoreError(f"{source}: not a campus-provision key file ({what} missing)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError(
            f"{source}: not a campus-provision key file ({what} is not base64)"
        ) from None


def _passphrase_bytes(passphrase: str) -> bytes:
    # The same passphrase typed on two keyboards may arrive in two Unicode forms.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    out = Scrypt(salt=salt, length=KEY_BYTES + CHECK_BYTES, n=n, r=r, p=p).derive(
        _passphrase_bytes(passphrase)
    )
    return out[:KEY_BYTES], out[KEY_BYTES:]


def _aad(purpose: str, meta: dict[str, str]) -> bytes:
    bound = {"format": FORMAT, "purpose": purpose, "meta": meta}
    return json.dumps(bound, sort_keys=True, separators=(",", ":")).encode("utf-8")


def seal(secret: bytes, passphrase: str, *, purpose: str, meta: dict[str, str]) -> bytes:
    """The envelope (JSON bytes) holding ``secret`` encrypted under ``passphrase``.

    ``meta`` is stored in the clear but authenticated: it is for what others may read
    without the passphrase (a public key, a volume id). A fresh salt and nonce every time.
    """
    salt = os.urandom(SALT_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    key, check = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, secret, _aad(purpose, meta))
    envelope = {
        "format": FORMAT,
        "purpose": purpose,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "check": _b64(check),
        "cipher": {"name": "AES-256-GCM", "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
        "meta": meta,
    }
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _parse(data: bytes, source: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise KeyStoreError(f"{source}: not a campus-provision key file (not JSON)") from None


def read_envelope(data: bytes, *, purpose: str, source: Path) -> dict[str, Any]:
    """Parse and shape-check an envelope without unlocking it (no passphrase needed)."""
    envelope = _parse(data, source)
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        found = envelope.get("format") if isinstance(envelope, dict) else None
        raise KeyStoreError(
            f"{source}: not a campus-provision key file (format {found!r}, expected {FORMAT!r})"
        )
    if envelope.get("purpose") != purpose:
        raise KeyStoreError(
            f"{source}: holds a key for {envelope.get('purpose')!r}, not for {purpose!r}"
        )
    meta = envelope.get("meta")
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise KeyStoreError(f"{source}: not a campus-provision key file (bad meta)")
    return envelope


def _kdf_params(envelope: dict[str, Any], source: Path) -> tuple[bytes, int, int, int]:
    kdf = envelope.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise KeyStoreError(f"{source}: unsupported or missing key derivation (expected scrypt)")
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    if not (
        isinstance(n, int)
        and isinstance(r, int)
        and isinstance(p, int)
        and n >= 2
        and n & (n - 1) == 0
        and 1 <= r <= MAX_SCRYPT_R
        and 1 <= p <= MAX_SCRYPT_P
        and 128 * n * r <= MAX_SCRYPT_MEMORY
    ):
        raise KeyStoreError(f"{source}: scrypt parameters out of range (n={n}, r={r}, p={p})")
    salt = _unb64(kdf.get("salt"), "salt", source)
    return salt, n, r, p


def unseal(data: bytes, passphrase: str, *, purpose: str, source: Path) -> bytes:
    """The secret in an envelope, or a KeyStoreError saying why it cannot be had.

    ``wrong passphrase for <file>`` when the passphrase check fails; ``<file>: damaged or
    tampered with`` when the passphrase is right but the GCM tag is not (ciphertext,
    nonce, purpose or meta altered).
    """
    envelope = read_envelope(data, purpose=purpose, source=source)
    salt, n, r, p = _kdf_params(envelope, source)
    cipher = envelope.get("cipher")
    if not isinstance(cipher, dict) or cipher.get("name") != "AES-256-GCM":
        raise KeyStoreError(f"{source}: unsupported or missing cipher (expected AES-256-GCM)")
    nonce = _unb64(cipher.get("nonce"), "nonce", source)
    check = _unb64(envelope.get("check"), "check", source)
    ciphertext = _unb64(envelope.get("ciphertext"), "ciphertext", source)
    if len(nonce) != NONCE_BYTES:
        raise KeyStoreError(f"{source}: damaged or tampered with (nonce length {len(nonce)})")
    key, expected = _derive(passphrase, salt, n, r, p)
    if not hmac.compare_digest(check, expected):
        raise KeyStoreError(f"wrong passphrase for {source}")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(purpose, envelope["meta"]))
    except InvalidTag:
        raise KeyStoreError(
            f"{source}: damaged or tampered with (authentication tag mismatch; "
            "the passphrase is right); restore the file from a backup"
        ) from None


def below_cost(data: bytes, *, source: Path) -> bool:
    """Whether the envelope ``data`` was sealed at a lower scrypt cost than :func:`seal` uses.

    Needs no passphrase; KeyStoreError when ``data`` is not an envelope.
    """
    envelope = _parse(data, source)
    if not isinstance(envelope, dict):
        raise KeyStoreError(f"{source}: not a campus-provision key file (not an object)")
    _, n, r, _ = _kdf_params(envelope, source)
    return n * r < SCRYPT_N * SCRYPT_R


def reseal_file(path: Path, passphrase: str) -> bool:
    """Re-seal the key file at ``path`` at today's cost if it is below it; whether it was.

    The secret, purpose and meta stay as they are (the meta is checked as associated data
    on the way out, so nothing unauthenticated is carried over); salt and nonce are new.
    The file is replaced atomically with mode 0600. KeyStoreError when the file cannot be
    read or written, or ``passphrase`` does not open it.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read: {exc.strerror}") from None
    if not below_cost(data, source=path):
        return False
    purpose = _parse(data, path).get("purpose")
    if not isinstance(purpose, str):
        raise KeyStoreError(f"{path}: not a campus-provision key file (no purpose)")
    meta = read_envelope(data, purpose=purpose, source=path)["meta"]
    secret = unseal(data, passphrase, purpose=purpose, source=path)
    try:
        write_atomic(path, seal(secret, passphrase, purpose=purpose, meta=meta), 0o600)
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot re-seal: {exc.strerror}") from None
    return True
