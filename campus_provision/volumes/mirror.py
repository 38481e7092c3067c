"""Datasets published on the campus mirror: ``volumes load --from-mirror``.

The mirror serves each dataset version under ``<mirror url>datasets/<id>/<version>/``: its
files, ``SHA256SUMS`` (for people and ``sha256sum -c``), ``dataset-manifest.json`` and
``dataset-manifest.json.sig``. The JSON is a canonical statement of what the campus
publishes there: ``{"dataset": id, "files": [{"name", "sha256", "size"}, ...], "schema":
..., "version": v}`` (keys sorted, no spaces, ASCII, one line); the signature is an
Ed25519 signature of its bytes by the campus signing key (the one that signs evidence).
``volumes sign-manifest SPEC DATASET DIR`` writes both after checking every file of DIR
against ``SHA256SUMS``. An operator copies that directory into the mirror's ``datasets/``
(campus_mirror serves it, read-only, no listing).

Signing the dataset's id and version, not only the file list, is what stops a replay on
the plain-HTTP mirror: another dataset's signed manifest, or this dataset's older version's,
served where this one belongs, is refused.

Loading from the mirror, the PC fetches the statement, its signature and ``SHA256SUMS``
(python3, no proxy: the mirror is on the campus LAN); the controller checks the signature
with the keys directory's public key, that the statement names this dataset and this
version, and that ``SHA256SUMS`` lists exactly its files and hashes, and refuses, before
any file moves, otherwise. Then the PC fetches each file it lacks straight into a temp name
on the volume, hashes it against the signed statement, and renames it into place (see
:mod:`campus_provision.volumes.load`). The data never passes through the controller.

API (stable; later changes are additive): :class:`MirrorSource`, :func:`dataset_url`,
:func:`sign_manifest` (it takes the dataset and version since the statement binds them),
:func:`check_signature`, :func:`fetch_text`, :func:`mirror_source`, :func:`refetch`;
:class:`Statement`, :func:`statement_bytes`, :func:`parse_statement`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.signing import fingerprint
from campus_provision.volumes import VolumeError
from campus_provision.volumes.load import (
    MANIFEST,
    MANIFEST_SIGNATURE,
    SIGNED_MANIFEST,
    SIGNED_MANIFEST_SIGNATURE,
    SourceFile,
    check_name,
    check_source,
    fetch_command,
    parse_manifest,
)
from campus_provision.volumes.remote import Shell, check

STATEMENT = SIGNED_MANIFEST
SIGNATURE = SIGNED_MANIFEST_SIGNATURE
SCHEMA = "campus-provision/dataset-manifest/1"
DATASETS_DIR = "datasets"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?")


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class StatedFile(BaseModel):
    """One file the statement lists."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    sha256: Sha256
    size: Annotated[int, Field(ge=0)]


class Statement(BaseModel):
    """What ``dataset-manifest.json`` says: this dataset, this version, these files."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    schema_id: Literal["campus-provision/dataset-manifest/1"] = Field(
        "campus-provision/dataset-manifest/1", alias="schema"
    )
    dataset: str
    version: str
    files: tuple[StatedFile, ...]


def statement_bytes(statement: Statement) -> bytes:
    """The canonical bytes of ``statement``: what is signed and published."""
    data = statement.model_dump(by_alias=True, mode="json")
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def parse_statement(data: bytes, where: str) -> Statement:
    """The statement in ``data`` (VolumeError naming ``where`` unless it is one, in its
    canonical form, each file named once, in name order, by a name a dataset may have)."""
    try:
        statement = Statement.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        detail = f"{loc}: {first['msg']}" if loc else first["msg"]
        raise VolumeError(f"{where}: not a signed dataset manifest: {detail}") from None
    names = [f.name for f in statement.files]
    for name in names:
        try:
            check_name(name)
        except VolumeError as exc:
            raise VolumeError(f"{where}: {exc}") from None
    if not names or names != sorted(set(names)) or statement_bytes(statement) != data:
        raise VolumeError(
            f"{where}: not in canonical form (one line, sorted keys, files once each in name "
            "order): sign it again with 'campus-provision volumes sign-manifest'"
        )
    return statement


@dataclass(frozen=True)
class MirrorSource:
    """A dataset version on a mirror: where it is, its signed statement's files, and the
    statement's digest (``manifest_sha256``: a resumed load refetches that statement)."""

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


def sign_manifest(directory: Path, key: Ed25519PrivateKey, *, dataset: str, version: str) -> Path:
    """Check ``directory`` against its manifest, then write the statement that it is
    ``dataset`` at ``version`` with exactly those files (``dataset-manifest.json``) and
    its signature (``dataset-manifest.json.sig``) beside it. Returns the signature's path.

    A directory already placed as ``datasets/<id>/<version>`` (signed in place on the
    mirror) must be this dataset's and version's place (VolumeError otherwise)."""
    where = directory.absolute()
    placed = (where.parent.name, where.name)
    if where.parent.parent.name == DATASETS_DIR and placed != (dataset, version):
        raise VolumeError(
            f"{directory}: published as {DATASETS_DIR}/{placed[0]}/{placed[1]}/, not "
            f"{DATASETS_DIR}/{dataset}/{version}/: nothing signed"
        )
    files = check_source(directory)
    statement = Statement(
        dataset=dataset,
        version=version,
        files=tuple(StatedFile(name=f.name, sha256=f.sha256, size=f.size or 0) for f in files),
    )
    data = statement_bytes(statement)
    write_atomic(directory / STATEMENT, data, 0o644)
    target = directory / SIGNATURE
    write_atomic(target, base64.b64encode(key.sign(data)) + b"\n", 0o644)
    # The old signature of SHA256SUMS alone: gone, so nobody takes it for one that counts.
    (directory / MANIFEST_SIGNATURE).unlink(missing_ok=True)
    return target


def check_signature(data: bytes, signature: bytes, pub: Ed25519PublicKey, where: str) -> None:
    """VolumeError unless ``signature`` (base64) is ``pub``'s over ``data`` (the statement
    at ``where``)."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        pub.verify(raw, data)
    except (binascii.Error, ValueError, InvalidSignature):
        raise VolumeError(
            f"{where}{STATEMENT} is not signed by the campus key {fingerprint(pub)}: nothing "
            f"loaded (sign the published copy with 'campus-provision volumes sign-manifest')"
        ) from None


def fetch_text(shell: Shell, url: str) -> bytes:
    """``url`` as the PC fetches it (VolumeError naming the URL when it cannot)."""
    return check(shell, fetch_command(url), f"fetching {url} from the mirror").encode("utf-8")


def _files(base_url: str, statement: Statement) -> tuple[SourceFile, ...]:
    return tuple(
        SourceFile(f.name, None, f.sha256, f.size, url=base_url + quote(f.name))
        for f in statement.files
    )


def _agrees(base_url: str, statement: Statement, manifest: bytes) -> None:
    """VolumeError unless ``SHA256SUMS`` lists exactly the statement's files and hashes."""
    where = f"{base_url}{MANIFEST}"
    try:
        listed = parse_manifest(manifest.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise VolumeError(f"{where}: not UTF-8 text") from None
    stated = {f.name: f.sha256 for f in statement.files}
    if listed != stated:
        differ = sorted(n for n in listed.keys() | stated.keys() if listed.get(n) != stated.get(n))
        raise VolumeError(
            f"{where} disagrees with the signed {STATEMENT} on {len(differ)} files "
            f"({', '.join(differ[:5])}): nothing loaded; sign the published copy again with "
            "'campus-provision volumes sign-manifest'"
        )


def mirror_source(
    shell: Shell, mirror_url: str, dataset: str, version: str, pub: Ed25519PublicKey
) -> MirrorSource:
    """The dataset version's files on the mirror, as ``shell``'s PC sees them: its statement
    signed by ``pub``, naming ``dataset`` at ``version``, and ``SHA256SUMS`` listing the
    same files (VolumeError otherwise; nothing is fetched but these three small files)."""
    base = dataset_url(mirror_url, dataset, version)
    data = fetch_text(shell, base + STATEMENT)
    signature = fetch_text(shell, base + SIGNATURE)
    check_signature(data, signature, pub, base)
    statement = parse_statement(data, base + STATEMENT)
    if (statement.dataset, statement.version) != (dataset, version):
        raise VolumeError(
            f"{base}{STATEMENT} is signed for {statement.dataset} version "
            f"{statement.version}, not {dataset} version {version}: nothing loaded (publish "
            f"{dataset} {version} there, signed with 'campus-provision volumes sign-manifest')"
        )
    _agrees(base, statement, fetch_text(shell, base + MANIFEST))
    return MirrorSource(base, _files(base, statement), hashlib.sha256(data).hexdigest())


def refetch(shell: Shell, base_url: str, manifest_sha256: str) -> MirrorSource:
    """The source of an interrupted load again: the statement must be the one it began with
    (whose signature, dataset and version were checked then), else VolumeError."""
    data = fetch_text(shell, base_url + STATEMENT)
    if hashlib.sha256(data).hexdigest() != manifest_sha256:
        raise VolumeError(
            f"{base_url}{STATEMENT} changed since the load began: not resuming with other "
            "data; load again"
        )
    statement = parse_statement(data, base_url + STATEMENT)
    return MirrorSource(base_url, _files(base_url, statement), manifest_sha256)
