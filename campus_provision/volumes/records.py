"""The signed record of volume operations: who did what to which volume, with which keys.

Every operation on one volume (a host × dataset) that a ``volumes`` command carries out
ends in an :class:`OperationRecord`: who, when, host, dataset, operation, the old and new
key *ids* (never a key), the result, and the journal's operation id. The records of one
command run go into one signed evidence directory, ``evidence/<UTC stamp>-volumes/`` by
default::

    records.json   RecordSet: the run (command, campus, who, started/finished) + records
    report.html    a table an auditor reads (no JavaScript, nothing fetched)
    manifest.json  name -> sha256 and size, who signed, when (schema volume-records/v1)
    manifest.sig   Ed25519 signature over manifest.json, base64

the same format as ``verify``'s evidence (:mod:`campus_provision.verify.evidence`), so
``campus-provision report verify DIR`` checks it with the same code and key.

API (stable; later changes are additive), shared by rotate-key/resume and load/swap/retire:

- :class:`OperationRecord` (pydantic, frozen, ``extra="forbid"``); build one with
  :func:`make_record` (fills ``who`` and ``when``).
- :class:`RecordSet`: ``command``, ``campus``, ``who``, ``started``, ``finished``,
  ``records``; ``to_json()`` / ``from_json()``.
- :func:`default_records_dir` ``(when=None, root=Path("evidence")) -> Path``.
- :func:`write_records` ``(out_dir, record_set, signing_key, signer, spec_sha256) -> Path``.
- :func:`read_records` ``(directory) -> RecordSet``; :func:`render_records_html`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from functools import cache
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, ValidationError

from campus_provision import __version__
from campus_provision.keys.signing import fingerprint
from campus_provision.paths import templates_dir
from campus_provision.verify.evidence import (
    EVIDENCE_ROOT,
    RECORDS,
    RECORDS_SCHEMA,
    REPORT,
    EvidenceError,
    utc_stamp,
    write_signed_dir,
)

FORMAT = "campus-provision/volume-records/v1"
SUFFIX = "-volumes"
Result = Literal["ok", "failed", "rolled-back", "stopped", "dry-run", "nothing-to-do"]
RESULTS: tuple[str, ...] = ("ok", "failed", "rolled-back", "stopped", "dry-run", "nothing-to-do")


class OperationRecord(BaseModel):
    """One operation on one volume, as it ended. Key ids only, never a key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    who: str
    when: str  # ISO 8601, UTC, when the operation ended
    host: str
    dataset: str
    op: str  # "rotate-key", "resume", "load", "swap", "retire", ...
    old_key: str | None = None
    new_key: str | None = None
    result: Result
    detail: str = ""  # one line: the outcome or the error (never a key)
    journal_op: str | None = None  # the journal's op id (op-YYYYMMDDTHHMMSSZ-xxxxxxxx)
    seconds: float | None = None


class RecordSet(BaseModel):
    """``records.json``: one command run's records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    command: str  # e.g. "volumes rotate-key card-spending-2025 --limit sgm-a01"
    campus: str
    who: str
    started: str
    finished: str
    records: tuple[OperationRecord, ...]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RecordSet:
        return cls.model_validate_json(text)

    def ok(self) -> bool:
        """True when no operation failed or was left stopped."""
        return all(r.result not in ("failed", "stopped") for r in self.records)


def now_iso() -> str:
    """Now, UTC, to the second: ``2026-11-26T20:01:02Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator() -> str:
    """The OS user running the command (as the journal names it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def make_record(
    host: str,
    dataset: str,
    op: str,
    result: Result,
    *,
    old_key: str | None = None,
    new_key: str | None = None,
    detail: str = "",
    journal_op: str | None = None,
    seconds: float | None = None,
) -> OperationRecord:
    """An :class:`OperationRecord` ended now, by this OS user."""
    return OperationRecord(
        who=operator(),
        when=now_iso(),
        host=host,
        dataset=dataset,
        op=op,
        old_key=old_key,
        new_key=new_key,
        result=result,
        detail=" ".join(detail.split()),
        journal_op=journal_op,
        seconds=None if seconds is None else round(seconds, 1),
    )


def default_records_dir(when: dt.datetime | None = None, root: Path = EVIDENCE_ROOT) -> Path:
    """``evidence/<UTC stamp>-volumes/``: where a volumes command's records go by default."""
    return root / f"{utc_stamp(when)}{SUFFIX}"


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir() / "volumes"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_records_html(
    record_set: RecordSet, *, signer: str | None = None, key_fingerprint: str | None = None
) -> str:
    """The self-contained ``report.html`` of ``record_set`` (no JavaScript)."""
    return (
        _environment()
        .get_template("records.html.j2")
        .render(
            s=record_set,
            signer=signer,
            key_fingerprint=key_fingerprint,
            version=__version__,
            verdict="OK" if record_set.ok() else "FAILED",
        )
    )


def write_records(
    out_dir: Path,
    record_set: RecordSet,
    signing_key: Ed25519PrivateKey,
    signer: str,
    spec_sha256: str,
) -> Path:
    """Write the signed records directory ``out_dir`` (never overwritten) and return it."""
    html = render_records_html(
        record_set, signer=signer, key_fingerprint=fingerprint(signing_key.public_key())
    )
    contents = {RECORDS: record_set.to_json().encode("utf-8"), REPORT: html.encode("utf-8")}
    return write_signed_dir(
        out_dir,
        contents,
        signing_key,
        schema=RECORDS_SCHEMA,
        campus=record_set.campus,
        signer=signer,
        spec_sha256=spec_sha256,
    )


def read_records(directory: Path) -> RecordSet:
    """The RecordSet in a records directory (not verified: see verify_evidence)."""
    path = directory / RECORDS
    try:
        return RecordSet.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvidenceError(f"{path}: cannot read: {exc.strerror}") from None
    except ValidationError as exc:
        raise EvidenceError(
            f"{path}: not a valid records.json ({exc.error_count()} problems)"
        ) from None
