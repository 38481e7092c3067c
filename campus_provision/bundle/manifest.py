"""``bundle.json``: what a bundle holds, signed with the campus Ed25519 key.

The manifest lists every package (name, version, arch, file, SHA-256, size) and every
other file of the repository (the archive keyring, the Release files, the indices), so
that ``bundle verify`` can name anything missing, extra or altered. ``bundle.json.sig``
is the base64 Ed25519 signature over the exact bytes of ``bundle.json``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from campus_provision.bundle import BundleError

FORMAT = "campus-provision/bundle/v1"
MANIFEST = "bundle.json"
SIGNATURE = "bundle.json.sig"
ARCHIVE_KEYRING = "campus-archive.gpg"


@dataclass(frozen=True, order=True)
class PackageEntry:
    """One .deb in the pool."""

    name: str
    version: str
    arch: str
    filename: str  # relative to the bundle root, e.g. pool/main/j/jq/jq_1.6-2.1_amd64.deb
    sha256: str
    size: int


@dataclass(frozen=True, order=True)
class FileEntry:
    """Any other file of the bundle (keyring, Release files, indices)."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """The parsed ``bundle.json``."""

    suite: str
    component: str
    arch: str
    built: str
    campus: str
    spec_sha256: str
    profiles: tuple[str, ...]
    extras: tuple[str, ...]
    archive_key: str  # the OpenPGP fingerprint of the campus archive key
    packages: tuple[PackageEntry, ...]
    files: tuple[FileEntry, ...]

    def to_bytes(self) -> bytes:
        """The canonical JSON bytes (sorted keys, packages sorted, trailing newline)."""
        doc: dict[str, Any] = {"format": FORMAT, **asdict(self)}
        doc["packages"] = [asdict(p) for p in sorted(self.packages)]
        doc["files"] = [asdict(f) for f in sorted(self.files)]
        doc["profiles"] = list(self.profiles)
        doc["extras"] = list(self.extras)
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, source: Path) -> Manifest:
        """Parse ``bundle.json`` (BundleError naming ``source`` when it is not one)."""
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise BundleError(f"{source}: not a campus-provision bundle manifest ({FORMAT})")
            return cls(
                suite=str(doc["suite"]),
                component=str(doc["component"]),
                arch=str(doc["arch"]),
                built=str(doc["built"]),
                campus=str(doc["campus"]),
                spec_sha256=str(doc["spec_sha256"]),
                profiles=tuple(str(p) for p in doc["profiles"]),
                extras=tuple(str(p) for p in doc["extras"]),
                archive_key=str(doc["archive_key"]),
                packages=tuple(
                    PackageEntry(
                        str(p["name"]),
                        str(p["version"]),
                        str(p["arch"]),
                        str(p["filename"]),
                        str(p["sha256"]),
                        int(p["size"]),
                    )
                    for p in doc["packages"]
                ),
                files=tuple(
                    FileEntry(str(f["path"]), str(f["sha256"]), int(f["size"]))
                    for f in doc["files"]
                ),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{source}: malformed bundle manifest ({exc!s:.80})") from None


def read_manifest(root: Path) -> tuple[bytes, Manifest]:
    """The bytes and the parsed manifest of the bundle at ``root``."""
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {root} is not a bundle") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    return data, Manifest.from_bytes(data, path)


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The contents of ``bundle.json.sig``: base64 of the Ed25519 signature, a newline."""
    return base64.b64encode(key.sign(data)) + b"\n"


def signature_ok(data: bytes, signature_text: bytes, pub: Ed25519PublicKey) -> bool:
    """Whether ``signature_text`` (``bundle.json.sig``) signs ``data`` under ``pub``."""
    try:
        pub.verify(base64.b64decode(signature_text.strip(), validate=True), data)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True
