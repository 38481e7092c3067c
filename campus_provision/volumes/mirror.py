"""Datasets published on the campus mirror: ``volumes load --from-mirror``.

The mirror serves each dataset version under ``<mirror url>datasets/<id>/<version>/``: its
files, ``SHA256SUMS`` and ``SHA256SUMS.sig``, an Ed25519 signature of the manifest by the
campus signing key (the one that signs evidence; ``volumes sign-manifest DIR`` writes it
after checking every file of DIR against the manifest). An operator copies that directory
into the mirror's ``datasets/`` (campus_mirror serves it, read-only, no listing).

Loading from the mirror, the PC fetches the manifest and its signature (python3, no proxy:
the mirror is on the campus LAN), the controller checks the signature with the keys
directory's public key and refuses, before any file moves, a manifest the campus key did
not sign. Then the PC fetches each file it lacks straight into a temp name on the volume,
hashes it against the signed manifest, and renames it into place (see
:mod:`campus_provision.volumes.load`). The data never passes through the controller.

API (stable; later changes are additive): :class:`MirrorSource`, :func:`dataset_url`,
:func:`sign_manifest`, :func:`check_signature`, :func:`fetch_text`,
:func:`mirror_source`, :func:`refetch`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.signing import fingerprint
from campus_provision.volumes import VolumeError
from campus_provision.volumes.load import (
    MANIFEST,
    MANIFEST_SIGNATURE,
    SourceFile,
    check_source,
    fetch_command,
    parse_manifest,
)
from campus_provision.volumes.remote import Shell, check

SIGNATURE = MANIFEST_SIGNATURE
DATASETS_DIR = "datasets"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?")


@dataclass(frozen=True)
class MirrorSource:
    """A dataset version on a mirror: where it is, its signed manifest's files and digest."""

    base_url: str
    files: tuple[SourceFile, ...]
    manifest_sha256: str

    def __str__(self) -> str:
        return self.base_url


def dataset_url(mirror_url: str, dataset: str, version: str) -> str:
    """``<mirror_url>datasets/<dataset>/<version>/`` (VolumeError for a URL that is not
    plain http(s))."""
    if not _URL.fullmatch(mirror_url):
        raise VolumeError(f"{mirror_url!r}: not an http(s) mirror URL")
    # One path segment each, as the spec's patterns say: never "..", never a "/".
    for what, value in (("dataset id", dataset), ("dataset version", version)):
        if not _SEGMENT.fullmatch(value):
            raise VolumeError(f"{value!r}: not a {what} (letters, digits, . _ + -)")
    return f"{mirror_url.rstrip('/')}/{DATASETS_DIR}/{quote(dataset)}/{quote(version)}/"


def sign_manifest(directory: Path, key: Ed25519PrivateKey) -> Path:
    """Check ``directory`` against its manifest, then write ``SHA256SUMS.sig`` beside it."""
    check_source(directory)
    manifest = (directory / MANIFEST).read_bytes()
    signature = base64.b64encode(key.sign(manifest)) + b"\n"
    target = directory / SIGNATURE
    write_atomic(target, signature, 0o644)
    return target


def check_signature(manifest: bytes, signature: bytes, pub: Ed25519PublicKey, where: str) -> None:
    """VolumeError unless ``signature`` (base64) is ``pub``'s over ``manifest``."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        pub.verify(raw, manifest)
    except (binascii.Error, ValueError, InvalidSignature):
        raise VolumeError(
            f"{where}{MANIFEST} is not signed by the campus key {fingerprint(pub)}: nothing "
            f"loaded (sign the published copy with 'campus-provision volumes sign-manifest')"
        ) from None


def fetch_text(shell: Shell, url: str) -> bytes:
    """``url`` as the PC fetches it (VolumeError naming the URL when it cannot)."""
    return check(shell, fetch_command(url), f"fetching {url} from the mirror").encode("utf-8")


def _files(base_url: str, manifest: bytes) -> tuple[SourceFile, ...]:
    try:
        listed = parse_manifest(manifest.decode("utf-8"), f"{base_url}{MANIFEST}")
    except UnicodeDecodeError:
        raise VolumeError(f"{base_url}{MANIFEST}: not UTF-8 text") from None
    return tuple(
        SourceFile(name, None, digest, None, url=base_url + quote(name))
        for name, digest in sorted(listed.items())
    )


def mirror_source(
    shell: Shell, mirror_url: str, dataset: str, version: str, pub: Ed25519PublicKey
) -> MirrorSource:
    """The dataset version's files on the mirror, as ``shell``'s PC sees them, its manifest
    signed by ``pub`` (VolumeError otherwise; nothing is fetched but the two small files)."""
    base = dataset_url(mirror_url, dataset, version)
    manifest = fetch_text(shell, base + MANIFEST)
    signature = fetch_text(shell, base + SIGNATURE)
    check_signature(manifest, signature, pub, base)
    return MirrorSource(base, _files(base, manifest), hashlib.sha256(manifest).hexdigest())


def refetch(shell: Shell, base_url: str, manifest_sha256: str) -> MirrorSource:
    """The source of an interrupted load again: the manifest must be the one it began with
    (whose signature was checked then), else VolumeError."""
    manifest = fetch_text(shell, base_url + MANIFEST)
    if hashlib.sha256(manifest).hexdigest() != manifest_sha256:
        raise VolumeError(
            f"{base_url}{MANIFEST} changed since the load began: not resuming with other "
            "data; load again"
        )
    return MirrorSource(base_url, _files(base_url, manifest), manifest_sha256)
