"""The signed evidence directory a verification run leaves for the auditor.

One directory per run (``evidence/<UTC timestamp>/`` by default), never overwritten::

    junit.xml      pytest's JUnit XML (or one generated from the results)
    results.json   RunResults.to_json(): host x control -> status, evidence, waiver
    report.html    the matrix an auditor reads (see campus_provision.verify.report)
    manifest.json  name -> sha256 and size of the three files above, who signed, when
    manifest.sig   Ed25519 signature over the exact bytes of manifest.json, base64

The directory is built beside its final name and renamed into place, so it is either
complete and signed or absent. ``verify_evidence`` checks the signature against a
trusted public key and every file against the manifest, and names each file that is
missing, altered or extra.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET  # builds XML only; nothing here parses untrusted XML
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from campus_provision import __version__
from campus_provision.errors import CampusProvisionError
from campus_provision.keys.atomic import fsync_dir
from campus_provision.keys.signing import fingerprint
from campus_provision.verify.report import effective_status, render_report
from campus_provision.verify.results import ControlResult, RunResults

SCHEMA = "campus-provision/evidence/v1"
JUNIT = "junit.xml"
RESULTS = "results.json"
REPORT = "report.html"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNED_FILES = (JUNIT, REPORT, RESULTS)
"""The files the manifest lists (the manifest and its signature are not in it)."""
RECORDS = "records.json"
RECORDS_SCHEMA = "campus-provision/volume-records/v1"
"""A signed directory of volume operation records (see campus_provision.volumes.records)."""
REQUIRED_FILES = {SCHEMA: SIGNED_FILES, RECORDS_SCHEMA: (RECORDS, REPORT)}
"""The files each kind of signed directory must list, by manifest schema."""
EVIDENCE_ROOT = Path("evidence")


class EvidenceError(CampusProvisionError):
    """Raised when an evidence directory cannot be written or read.

    The output directory already exists (evidence is never overwritten) or cannot be
    written, the JUnit file to include cannot be read, or a directory given to
    ``report show``/``diff`` holds no readable ``results.json``. Exit code 2 (as diff(1)
    uses for trouble), so that ``report diff``'s 1 means drift only.
    """

    exit_code = 2


def utc_stamp(when: dt.datetime | None = None) -> str:
    """``20261126T120000Z``: the default evidence directory's name for ``when`` (now)."""
    return (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def default_evidence_dir(when: dt.datetime | None = None, root: Path = EVIDENCE_ROOT) -> Path:
    """``evidence/<UTC timestamp>/``: where ``verify`` puts a run's evidence by default."""
    return root / utc_stamp(when)


@dataclass(frozen=True)
class FileEntry:
    """One file the manifest vouches for."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what was signed, by whom, when, and each file's hash."""

    schema: str
    campus: str
    signer: str
    key_fingerprint: str
    created: str  # ISO 8601, UTC
    spec_sha256: str
    tool: str
    files: dict[str, FileEntry]

    def to_bytes(self) -> bytes:
        """Stable, sorted JSON: the exact bytes that are signed."""
        text = json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse ``manifest.json`` (ValueError/KeyError/TypeError when it is malformed)."""
        raw: dict[str, Any] = json.loads(data.decode("utf-8"))
        files = {
            str(name): FileEntry(sha256=str(e["sha256"]), size=int(e["size"]))
            for name, e in raw.pop("files").items()
        }
        return cls(**raw, files=files)


# XML 1.0 forbids most control characters; command output (colour codes, NULs) has them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _junit_case(r: ControlResult) -> ET.Element:
    family = r.control.split("-")[1].lower() if r.control.count("-") >= 2 else "other"
    case = ET.Element(
        "testcase",
        classname=f"campus_provision.checks.{family}",
        name=f"{r.control}[{r.host}]",
        time=f"{r.duration:.3f}",
    )
    status = effective_status(r)  # an expired waiver excuses nothing, here as in the report
    message = _xml_text(r.message)
    if status in ("fail", "error"):
        if r.waiver is not None and r.waiver.expired:
            message = f"{message} (waiver expired on {r.waiver.expires})"
        child = ET.SubElement(case, "failure" if status == "fail" else "error")
        child.set("message", message)
        child.set("type", status)
        child.text = _xml_text(r.evidence)
    elif status == "waived":
        w = r.waiver
        reason = (
            f"waived until {w.expires}, approved by {w.approved_by}: {w.justification}"
            if w is not None
            else "waived"
        )
        ET.SubElement(case, "skipped", message=_xml_text(reason))
    elif status == "not_applicable":
        ET.SubElement(case, "skipped", message=_xml_text(f"not applicable: {r.message}"))
    if status not in ("fail", "error") and r.evidence:
        ET.SubElement(case, "system-out").text = _xml_text(r.evidence)
    return case


def junit_from_results(results: RunResults) -> bytes:
    """A JUnit XML document for ``results``: a testsuite per host, a testcase per control.

    Used when the run produced no JUnit file of its own (e.g. results assembled by
    another runner). fail -> <failure>, error -> <error>, waived and not applicable ->
    <skipped> with the reason.
    """
    root = ET.Element("testsuites", name=f"campus-provision verify: {_xml_text(results.campus)}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    by_host: dict[str, list[ControlResult]] = {h: [] for h in results.hosts}
    for r in results.results:
        by_host.setdefault(r.host, []).append(r)
    for host, rows in by_host.items():
        counts = {
            "tests": len(rows),
            "failures": sum(effective_status(r) == "fail" for r in rows),
            "errors": sum(effective_status(r) == "error" for r in rows),
            "skipped": sum(effective_status(r) in ("waived", "not_applicable") for r in rows),
        }
        seconds = sum(r.duration for r in rows)
        attrib = {"name": _xml_text(host), **{k: str(v) for k, v in counts.items()}}
        attrib |= {
            "time": f"{seconds:.3f}",
            "timestamp": results.started,
            "hostname": _xml_text(host),
        }
        suite = ET.SubElement(root, "testsuite", attrib)
        for r in rows:
            suite.append(_junit_case(r))
        for k, v in counts.items():
            totals[k] += v
        total_time += seconds
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o644)


def write_evidence(
    out_dir: Path,
    results: RunResults,
    junit_xml: Path | None,
    signing_key: Ed25519PrivateKey,
    signer: str,
    *,
    created: dt.datetime | None = None,
) -> Path:
    """Write the signed evidence directory ``out_dir`` for ``results`` and return it.

    ``junit_xml`` is pytest's JUnit output, copied as is; None generates one from the
    results. ``signer`` names who signs (the spec's ``campus.signing_identity``).
    The directory is assembled in a hidden temp directory beside ``out_dir``, checked
    with :func:`verify_evidence`, then renamed into place: on any failure nothing is left.
    """
    if out_dir.exists():
        raise EvidenceError(f"{out_dir}: already exists; evidence is never overwritten")
    if junit_xml is not None:
        try:
            junit = junit_xml.read_bytes()
        except OSError as exc:
            raise EvidenceError(
                f"{junit_xml}: cannot read the JUnit file: {exc.strerror}"
            ) from None
    else:
        junit = junit_from_results(results)
    fp = fingerprint(signing_key.public_key())
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    created_iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    html = render_report(results, signer=signer, key_fingerprint=fp, created=created_iso)
    contents = {
        JUNIT: junit,
        REPORT: html.encode("utf-8"),
        RESULTS: results.to_json().encode("utf-8"),
    }
    return write_signed_dir(
        out_dir,
        contents,
        signing_key,
        schema=SCHEMA,
        campus=results.campus,
        signer=signer,
        spec_sha256=results.spec_sha256,
        created=when,
    )


def write_signed_dir(
    out_dir: Path,
    contents: dict[str, bytes],
    signing_key: Ed25519PrivateKey,
    *,
    schema: str,
    campus: str,
    signer: str,
    spec_sha256: str,
    created: dt.datetime | None = None,
) -> Path:
    """Write ``contents`` (file name -> bytes), ``manifest.json`` and ``manifest.sig``.

    The directory is assembled in a hidden temp directory beside ``out_dir``, checked with
    :func:`verify_evidence`, then renamed into place: on any failure nothing is left.
    ``contents`` must hold the files :data:`REQUIRED_FILES` names for ``schema``.
    """
    if out_dir.exists():
        raise EvidenceError(f"{out_dir}: already exists; evidence is never overwritten")
    pub = signing_key.public_key()
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    manifest = Manifest(
        schema=schema,
        campus=campus,
        signer=signer,
        key_fingerprint=fingerprint(pub),
        created=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        spec_sha256=spec_sha256,
        tool=f"campus-provision {__version__}",
        files={n: FileEntry(_sha256(d), len(d)) for n, d in sorted(contents.items())},
    ).to_bytes()
    signature = base64.b64encode(signing_key.sign(manifest)) + b"\n"

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
        )
    except OSError as exc:
        raise EvidenceError(f"{out_dir}: cannot write evidence here: {exc.strerror}") from None
    try:
        for name, data in contents.items():
            _write(tmp / name, data)
        _write(tmp / MANIFEST, manifest)
        _write(tmp / SIGNATURE, signature)
        # Read back what reached the disk before it is published under its real name.
        problems = verify_evidence(tmp, pub)
        if problems:
            raise EvidenceError(f"{out_dir}: the evidence written does not verify: {problems}")
        tmp.chmod(0o755)
        tmp.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EvidenceError(f"{out_dir}: cannot write evidence: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out_dir.parent)
    return out_dir


def _check_signature(directory: Path, manifest: bytes, public_key: Ed25519PublicKey) -> list[str]:
    try:
        sig_text = (directory / SIGNATURE).read_bytes()
    except FileNotFoundError:
        return [f"{SIGNATURE}: missing (the manifest is unsigned)"]
    try:
        signature = base64.b64decode(sig_text.strip(), validate=True)
        public_key.verify(signature, manifest)
    except (binascii.Error, ValueError, InvalidSignature):
        return [
            f"{SIGNATURE}: signature does not verify over {MANIFEST} with key "
            f"{fingerprint(public_key)} ({MANIFEST} or {SIGNATURE} was altered, "
            "or another key signed it)"
        ]
    return []


def _check_files(directory: Path, manifest: Manifest) -> list[str]:
    problems = []
    for name in REQUIRED_FILES.get(manifest.schema, SIGNED_FILES):
        if name not in manifest.files:
            problems.append(f"{MANIFEST}: does not list {name}")
    for name, entry in sorted(manifest.files.items()):
        # The manifest is data from the directory: a name must not reach outside it.
        if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST, SIGNATURE):
            problems.append(f"{MANIFEST}: lists a bad file name {name!r}")
            continue
        path = directory / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(f"{name}: not a regular file")
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        digest = _sha256(data)
        if digest != entry.sha256 or len(data) != entry.size:
            problems.append(
                f"{name}: altered (sha256 {digest[:16]}…, {len(data)} bytes; "
                f"the manifest says {entry.sha256[:16]}…, {entry.size} bytes)"
            )
    known = set(manifest.files) | {MANIFEST, SIGNATURE}
    # Evidence is flat: anything else at the top (a file, a directory) is extra.
    for path in sorted(directory.iterdir()):
        if path.name not in known:
            kind = "directory" if path.is_dir() and not path.is_symlink() else "file"
            problems.append(f"{path.name}: extra {kind}, not in the manifest")
    return problems


def verify_evidence(directory: Path, public_key: Ed25519PublicKey | None) -> list[str]:
    """Every problem with the evidence in ``directory``; an empty list means it is good.

    ``public_key`` is the auditor's trusted copy of the campus signing key. None checks
    the hashes only and reports the signature as unchecked, so the result is never
    "good" without a key: the caller decides which key to trust (``report verify`` falls
    back to this machine's ``signing.pub`` and says so).
    """
    if not directory.is_dir():
        return [f"{directory}: not a directory"]
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        return [f"{MANIFEST}: missing (nothing to check the files against)"]
    if public_key is None:
        problems = [f"{SIGNATURE}: not checked (no trusted public key given)"]
    else:
        problems = _check_signature(directory, manifest_bytes, public_key)
    try:
        manifest = Manifest.from_bytes(manifest_bytes)
    except (ValueError, KeyError, TypeError, AttributeError):
        return [*problems, f"{MANIFEST}: not a valid evidence manifest"]
    if manifest.schema not in REQUIRED_FILES:
        problems.append(f"{MANIFEST}: schema {manifest.schema!r}, expected {SCHEMA!r}")
    if public_key is not None and manifest.key_fingerprint != fingerprint(public_key):
        problems.append(
            f"{MANIFEST}: names signing key {manifest.key_fingerprint}, but the trusted "
            f"public key is {fingerprint(public_key)}"
        )
    return problems + _check_files(directory, manifest)


def read_manifest(directory: Path) -> Manifest:
    """The manifest of an evidence directory (not verified: see verify_evidence)."""
    path = directory / MANIFEST
    try:
        return Manifest.from_bytes(path.read_bytes())
    except OSError as exc:
        raise EvidenceError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EvidenceError(f"{path}: not a valid evidence manifest") from None


def read_results(path: Path) -> RunResults:
    """The RunResults in an evidence directory (or a ``results.json`` path itself)."""
    if not path.exists():
        raise EvidenceError(f"{path}: no such evidence directory")
    file = path / RESULTS if path.is_dir() else path
    try:
        return RunResults.from_json(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvidenceError(f"{file}: cannot read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvidenceError(f"{file}: not a valid results.json ({type(exc).__name__})") from None
