"""Escrow: every volume key in one recovery bundle, sealed under a passphrase of its own.

The bundle is one :mod:`campus_provision.keys.sealed` envelope for :data:`ESCROW_PURPOSE`
(so neither a volume key file nor the signing key can be mistaken for one). Its secret is
a JSON document::

    {"format": "campus-provision/volume-escrow/v1",
     "keys": [{"volume_id": "...", "key_id": "...", "created": "...", "keyfile": "<88 chars>"}]}

``keyfile`` is exactly what :meth:`VolumeKeystore.secret` returns, so a round trip is
byte-exact. The escrow passphrase must differ from the keystore's: the bundle is meant to
be kept apart (a safe, another custodian), and would protect nothing if one passphrase
opened both. An import restores only the keys a keystore lacks and never replaces a key
file: one holding another key under the same id is an error, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from pathlib import Path
from typing import Any

from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.sealed import seal, unseal
from campus_provision.keys.signing import check_passphrase
from campus_provision.keys.volumes import (
    KEYFILE_BYTES,
    VolumeKey,
    VolumeKeystore,
    check_key_id,
    raw_key,
    split_volume_id,
)

ESCROW_PURPOSE = "campus-provision volume key escrow v1"
ESCROW_FORMAT = "campus-provision/volume-escrow/v1"


def _check_escrow_passphrase(store: VolumeKeystore, escrow_passphrase: str) -> None:
    check_passphrase(escrow_passphrase)
    if store.uses_passphrase(escrow_passphrase):
        raise KeyStoreError(
            "the escrow passphrase is the keystore passphrase: choose a separate one"
        )


def export_escrow(
    store: VolumeKeystore, out: Path, escrow_passphrase: str, *, force: bool = False
) -> int:
    """Write every volume key of ``store`` to the bundle ``out`` (0600); how many keys.

    Refuses an existing ``out`` unless ``force``, and an empty keystore.
    """
    _check_escrow_passphrase(store, escrow_passphrase)
    if out.exists() and not force:
        raise KeyStoreError(f"{out}: exists already; choose another file or pass --force")
    keys = store.keys()
    if not keys:
        raise KeyStoreError(f"{store.keys_dir}: no volume keys to escrow")
    entries = [
        {
            "volume_id": k.volume_id,
            "key_id": k.key_id,
            "created": k.created,
            "keyfile": store.secret(k.volume_id, k.key_id).decode("ascii"),
        }
        for k in keys
    ]
    payload = json.dumps({"format": ESCROW_FORMAT, "keys": entries}, sort_keys=True)
    meta = {
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": str(len(entries)),
    }
    data = seal(payload.encode("ascii"), escrow_passphrase, purpose=ESCROW_PURPOSE, meta=meta)
    try:
        write_atomic(out, data, 0o600)
    except OSError as exc:
        raise KeyStoreError(f"{out}: cannot write the escrow bundle: {exc.strerror}") from None
    return len(entries)


def _entry(item: Any, index: int, source: Path) -> tuple[VolumeKey, bytes]:
    where = f"{source}: key {index + 1}"
    if not isinstance(item, dict) or not all(
        isinstance(item.get(f), str) for f in ("volume_id", "key_id", "created", "keyfile")
    ):
        raise KeyStoreError(f"{where}: not a volume key entry")
    try:
        split_volume_id(item["volume_id"])
        check_key_id(item["key_id"])
    except KeyStoreError as exc:
        raise KeyStoreError(f"{where}: {exc}") from None
    keyfile = item["keyfile"].encode("ascii", errors="replace")
    if len(keyfile) != KEYFILE_BYTES:
        raise KeyStoreError(f"{where}: the key is not {KEYFILE_BYTES} characters of base64")
    raw_key(keyfile, Path(where))
    key = VolumeKey(item["volume_id"], item["key_id"], item["created"], source)
    return key, keyfile


def read_escrow(path: Path, escrow_passphrase: str) -> list[tuple[VolumeKey, bytes]]:
    """Each key in the bundle at ``path`` with its keyfile text (``path`` as its path)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the escrow bundle: {exc.strerror}") from None
    payload = unseal(data, escrow_passphrase, purpose=ESCROW_PURPOSE, source=path)
    try:
        document = json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        # No detail from the parser: it would quote bytes of the secrets.
        raise KeyStoreError(f"{path}: the escrow bundle's content is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != ESCROW_FORMAT:
        raise KeyStoreError(f"{path}: not a {ESCROW_FORMAT} bundle")
    items = document.get("keys")
    if not isinstance(items, list):
        raise KeyStoreError(f"{path}: the escrow bundle has no list of keys")
    entries = [_entry(item, i, path) for i, item in enumerate(items)]
    seen: set[tuple[str, str]] = set()
    for key, _ in entries:
        if (key.volume_id, key.key_id) in seen:
            raise KeyStoreError(f"{path}: key {key.key_id} of {key.volume_id} is there twice")
        seen.add((key.volume_id, key.key_id))
    return entries


def import_escrow(path: Path, escrow_passphrase: str, store: VolumeKeystore) -> int:
    """Restore into ``store`` the keys of the bundle at ``path`` it lacks; how many.

    All or nothing: a key file here holding another key under a bundle key's id is an
    error before anything is written, and so is a keystore passphrase that does not open
    the keys already here. A key already here with the same secret is left as it is.
    """
    _check_escrow_passphrase(store, escrow_passphrase)
    entries = read_escrow(path, escrow_passphrase)
    store.verify_passphrase()
    missing = []
    for key, keyfile in entries:
        target = store.path(key.volume_id, key.key_id)
        if not target.exists():
            missing.append((key, keyfile))
        elif not hmac.compare_digest(store.secret(key.volume_id, key.key_id), keyfile):
            raise KeyStoreError(
                f"{target}: holds another key than {path} has for {key.volume_id} "
                f"{key.key_id}; not overwritten (move it aside to restore the escrowed key)"
            )
    for key, keyfile in missing:
        store.restore(key, keyfile)
    return len(missing)
