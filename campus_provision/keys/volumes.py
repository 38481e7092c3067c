"""The volume keystore: the LUKS key of every encrypted dataset volume, sealed at rest.

One file per key, in a tree only the operator can open (directories 0700, files 0600)::

    <keys_dir>/volumes/<hostname>/<dataset-id>/<key_id>.key

Each file is a :mod:`campus_provision.keys.sealed` envelope for :data:`VOLUME_PURPOSE`
holding 64 random bytes; its ``meta`` (``volume_id``, ``key_id``, ``created``) is in the
clear, so listing keys needs no passphrase, and authenticated, so a file copied or renamed
into another volume's directory does not open there. What cryptsetup gets (and Ansible
carries, as text) is the ASCII base64 of the 64 bytes: 88 bytes, no newline.

A volume has several keys while it is being rotated; the newest is its current key. Key
ids are random (not derived from the key), so naming one in a log or a journal tells
nothing about the key itself.

The first write of a :class:`VolumeKeystore` (a key made, restored or removed) also
re-seals, at today's scrypt cost, every key file of the keys directory still sealed at an
older one (:func:`reseal_keys_dir`): old keystores keep opening, and get upgraded by the
commands that write them anyway, never by one that only reads.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import fsync_dir, write_atomic
from campus_provision.keys.passphrase import passphrase_without_prompt
from campus_provision.keys.sealed import read_envelope, reseal_file, seal, unseal
from campus_provision.keys.signing import check_passphrase, default_keys_dir, private_dir

VOLUME_PURPOSE = "campus-provision volume key v1"
VOLUMES_DIR = "volumes"
KEY_SUFFIX = ".key"
SECRET_BYTES = 64
KEYFILE_BYTES = 88  # len(base64 of 64 bytes)
# The spec's own rules (campus_provision.spec.types): Hostname, and Name for dataset ids.
# Always fullmatch-ed: "$" would let a trailing newline through.
_HOSTNAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DATASET_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_KEY_ID_RE = re.compile(r"vk-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


def volume_id(hostname: str, dataset_id: str) -> str:
    """``<hostname>/<dataset-id>``, after checking both are the spec's safe names."""
    if not _HOSTNAME_RE.fullmatch(hostname):
        raise KeyStoreError(
            f"{hostname!r}: not a hostname (a DNS label: lower-case letters, digits and '-')"
        )
    if not _DATASET_RE.fullmatch(dataset_id):
        raise KeyStoreError(
            f"{dataset_id!r}: not a dataset id (lower-case letters, digits and '-', "
            "starting with a letter)"
        )
    return f"{hostname}/{dataset_id}"


def split_volume_id(value: str) -> tuple[str, str]:
    """The hostname and dataset id of a volume id (KeyStoreError when it is not one)."""
    hostname, sep, dataset = value.partition("/")
    if not sep:
        raise KeyStoreError(f"{value!r}: not a volume id (expected <hostname>/<dataset-id>)")
    volume_id(hostname, dataset)
    return hostname, dataset


def check_key_id(key_id: str) -> str:
    """``key_id`` if it has the shape ``vk-YYYYMMDDTHHMMSSZ-<8 hex>`` (else KeyStoreError)."""
    if not _KEY_ID_RE.fullmatch(key_id):
        raise KeyStoreError(
            f"{key_id!r}: not a volume key id (expected vk-YYYYMMDDTHHMMSSZ-<8 hex digits>)"
        )
    return key_id


def keyfile_text(raw: bytes) -> bytes:
    """What cryptsetup reads as the keyfile: base64 of the raw key, ASCII, no newline."""
    return base64.b64encode(raw)


def raw_key(keyfile: bytes, source: Path) -> bytes:
    """The 64 raw bytes behind keyfile text (KeyStoreError naming ``source`` otherwise)."""
    try:
        raw = base64.b64decode(keyfile, validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"{source}: a volume key that is not base64") from None
    if len(raw) != SECRET_BYTES:
        raise KeyStoreError(f"{source}: a volume key of {len(raw)} bytes, not {SECRET_BYTES}")
    return raw


@dataclass(frozen=True)
class VolumeKey:
    """What may be shown about one volume key: never the key itself."""

    volume_id: str
    key_id: str
    created: str
    path: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _volume_dir(keys_dir: Path, volume: str) -> Path:
    hostname, dataset = split_volume_id(volume)
    return keys_dir / VOLUMES_DIR / hostname / dataset


def _read_key_file(path: Path, volume: str, key_id: str) -> tuple[VolumeKey, bytes]:
    """The metadata and bytes of the key file at ``path``, which must be ``volume``'s."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(
            f"{path}: no such volume key (volume {volume}, key {key_id}); "
            "list the keys with 'campus-provision keys volumes'"
        ) from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read: {exc.strerror}") from None
    meta = read_envelope(data, purpose=VOLUME_PURPOSE, source=path)["meta"]
    # Checked here for a clear message; unseal checks it again, cryptographically (the meta
    # is associated data), should someone also have edited the meta to fit the new place.
    if meta.get("volume_id") != volume:
        raise KeyStoreError(
            f"{path}: holds a key of volume {meta.get('volume_id')!r}, not of {volume!r} "
            "(moved or copied from another volume's directory?)"
        )
    if meta.get("key_id") != key_id:
        raise KeyStoreError(f"{path}: holds key {meta.get('key_id')!r}, not {key_id!r} (renamed?)")
    created = meta.get("created")
    if not isinstance(created, str) or not created:
        raise KeyStoreError(f"{path}: not a volume key file (no creation time)")
    return VolumeKey(volume, key_id, created, path), data


def _key_files(keys_dir: Path, volume: str | None) -> list[tuple[str, Path]]:
    """(volume id, key file) for every key file of ``volume`` (of all volumes: None)."""
    root = keys_dir / VOLUMES_DIR
    if volume is not None:
        dirs = [(volume, _volume_dir(keys_dir, volume))]
    else:
        dirs = []
        for host in sorted(root.iterdir()) if root.is_dir() else []:
            for dataset in sorted(host.iterdir()) if host.is_dir() else [host]:
                try:
                    dirs.append((volume_id(host.name, dataset.name), dataset))
                except KeyStoreError:
                    raise KeyStoreError(
                        f"{dataset}: not a volume key directory "
                        f"(expected {root}/<hostname>/<dataset-id>/)"
                    ) from None
    found = []
    for vol, directory in dirs:
        if directory.is_dir():
            found += [(vol, p) for p in sorted(directory.glob("*" + KEY_SUFFIX))]
    return found


def list_volume_keys(keys_dir: Path, volume_id: str | None = None) -> list[VolumeKey]:
    """The keys of ``volume_id`` (of every volume: None), oldest first; no passphrase needed."""
    try:
        files = _key_files(keys_dir, volume_id)
    except OSError as exc:
        raise KeyStoreError(
            f"{exc.filename or keys_dir}: cannot list the volume keys: {exc.strerror}"
        ) from None
    keys = []
    for vol, path in files:
        key_id = path.name[: -len(KEY_SUFFIX)]
        if not _KEY_ID_RE.fullmatch(key_id):
            raise KeyStoreError(f"{path}: not a volume key file name (expected <key_id>.key)")
        keys.append(_read_key_file(path, vol, key_id)[0])
    return sorted(keys, key=lambda k: (k.created, k.key_id, k.volume_id))


@dataclass(frozen=True)
class Resealed:
    """What :func:`reseal_keys_dir` did: the files re-sealed, and why others were left."""

    files: tuple[Path, ...] = ()
    left: tuple[str, ...] = ()


def reseal_keys_dir(keys_dir: Path, passphrase: str) -> Resealed:
    """Re-seal at today's scrypt cost every key file in ``keys_dir`` sealed below it.

    The keys at the top (``signing.key``, ``archive.key``) and every volume key; not
    ``retired/``, whose old pairs are kept as they were (perhaps under an older
    passphrase). A file this passphrase does not open, or that is not a key file, is left
    as it is with one line in ``left``: an upgrade never stops the write that started it.
    """
    candidates = sorted(keys_dir.glob("*" + KEY_SUFFIX)) if keys_dir.is_dir() else []
    left: list[str] = []
    try:
        candidates += [path for _, path in _key_files(keys_dir, None)]
    except (KeyStoreError, OSError) as exc:
        left.append(str(exc))
    done = []
    for path in candidates:
        try:
            if reseal_file(path, passphrase):
                done.append(path)
        except KeyStoreError as exc:
            left.append(str(exc))
    return Resealed(tuple(done), tuple(left))


class VolumeKeystore:
    """The volume keys under ``keys_dir``, unlocked with the operator's passphrase.

    Every method that reads or writes a secret proves the passphrase first, so a wrong one
    changes nothing; every error is one line naming the file, never a secret. After its
    first write, ``resealed`` says which older key files were brought up to today's cost.
    """

    def __init__(self, keys_dir: Path, passphrase: str) -> None:
        self.keys_dir = keys_dir
        self._passphrase = passphrase
        self.resealed: Resealed | None = None

    def _after_write(self) -> None:
        if self.resealed is None:
            self.resealed = reseal_keys_dir(self.keys_dir, self._passphrase)

    def __repr__(self) -> str:
        return f"VolumeKeystore(keys_dir={str(self.keys_dir)!r})"

    def uses_passphrase(self, candidate: str) -> bool:
        """Whether ``candidate`` is this keystore's passphrase (as sealing normalizes it)."""
        return hmac.compare_digest(
            unicodedata.normalize("NFC", candidate).encode("utf-8"),
            unicodedata.normalize("NFC", self._passphrase).encode("utf-8"),
        )

    def path(self, volume_id: str, key_id: str) -> Path:
        """Where the key ``key_id`` of ``volume_id`` lives (whether or not it exists)."""
        return _volume_dir(self.keys_dir, volume_id) / f"{check_key_id(key_id)}{KEY_SUFFIX}"

    def keys(self, volume_id: str | None = None) -> list[VolumeKey]:
        """The keys of ``volume_id`` (of every volume: None), oldest first; no unsealing."""
        return list_volume_keys(self.keys_dir, volume_id)

    def current(self, volume_id: str) -> VolumeKey | None:
        """The newest key of ``volume_id``, or None when it has none."""
        keys = self.keys(volume_id)
        return keys[-1] if keys else None

    def _unseal(self, volume_id: str, key_id: str) -> tuple[VolumeKey, bytes]:
        path = self.path(volume_id, key_id)
        key, data = _read_key_file(path, volume_id, key_id)
        raw = unseal(data, self._passphrase, purpose=VOLUME_PURPOSE, source=path)
        if len(raw) != SECRET_BYTES:
            raise KeyStoreError(f"{path}: the sealed key is {len(raw)} bytes, not {SECRET_BYTES}")
        return key, raw

    def secret(self, volume_id: str, key_id: str) -> bytes:
        """The keyfile cryptsetup uses: base64 of the 64-byte key, ASCII, no newline."""
        return keyfile_text(self._unseal(volume_id, key_id)[1])

    def verify_passphrase(self, volume_id: str | None = None) -> None:
        """Prove the passphrase opens a key already here (``volume_id``'s newest, if it has one).

        Nothing to prove against in an empty keystore. Called before any write, so that a
        mistyped passphrase cannot leave keys sealed under two passphrases.
        """
        keys = (self.keys(volume_id) if volume_id is not None else []) or self.keys()
        if keys:
            self._unseal(keys[-1].volume_id, keys[-1].key_id)

    def _write(self, volume_id: str, key_id: str, created: str, raw: bytes) -> VolumeKey:
        path = self.path(volume_id, key_id)
        try:
            for directory in (self.keys_dir, *reversed(path.parents[:3])):
                private_dir(directory)
            if path.exists():
                raise KeyStoreError(f"{path}: a volume key with this id exists already")
            meta = {"volume_id": volume_id, "key_id": key_id, "created": created}
            data = seal(raw, self._passphrase, purpose=VOLUME_PURPOSE, meta=meta)
            write_atomic(path, data, 0o600)
        except OSError as exc:
            raise KeyStoreError(f"{path}: cannot write the volume key: {exc.strerror}") from None
        return VolumeKey(volume_id, key_id, created, path)

    def create(self, volume_id: str) -> VolumeKey:
        """A new random key for ``volume_id``, sealed; it becomes the current key."""
        split_volume_id(volume_id)
        check_passphrase(self._passphrase)
        self.verify_passphrase(volume_id)
        now = _now()
        key_id = f"vk-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        # Microseconds, so that two keys made in one second still sort by age.
        created = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        key = self._write(volume_id, key_id, created, secrets.token_bytes(SECRET_BYTES))
        self._after_write()
        return key

    def restore(self, key: VolumeKey, keyfile: bytes) -> VolumeKey:
        """Write ``key`` (from an escrow bundle) with the given keyfile text, sealed here.

        Refuses to replace any existing file. ``key.path`` is ignored: the key goes where
        this keystore keeps it.
        """
        check_passphrase(self._passphrase)
        raw = raw_key(keyfile, key.path)
        restored = self._write(key.volume_id, check_key_id(key.key_id), key.created, raw)
        self._after_write()
        return restored

    def remove(self, volume_id: str, key_id: str) -> None:
        """Delete a key (after proving the passphrase opens it); the removal is durable."""
        key, _ = self._unseal(volume_id, key_id)
        try:
            key.path.unlink()
        except OSError as exc:
            raise KeyStoreError(f"{key.path}: cannot remove: {exc.strerror}") from None
        fsync_dir(key.path.parent)
        self._after_write()


def open_volume_keystore(
    keys_dir: Path | None = None, passphrase_file: Path | None = None
) -> VolumeKeystore:
    """The keystore in ``keys_dir`` (default: ``$CAMPUS_KEYS_DIR``, else the per-user dir).

    The passphrase comes from ``passphrase_file``, else ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``,
    else ``$CAMPUS_KEYSTORE_PASSPHRASE``; with none of them, a KeyStoreError naming all three.
    """
    return VolumeKeystore(
        keys_dir or default_keys_dir(), passphrase_without_prompt(passphrase_file)
    )
