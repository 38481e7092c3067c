"""Signed operation records: written like verify's evidence, checked by report verify."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from campus_provision.verify.evidence import EvidenceError, read_manifest, verify_evidence
from campus_provision.volumes.records import (
    RecordSet,
    default_records_dir,
    make_record,
    read_records,
    render_records_html,
    write_records,
)

OLD, NEW = "vk-20261126T100000Z-0a0b0c0d", "vk-20261126T110000Z-1a2b3c4d"


def record_set(**changes: object) -> RecordSet:
    rec = make_record("sgm-a01", "card-spending-2025", "rotate-key", "ok", old_key=OLD,
                      new_key=NEW, detail="rotated", journal_op="op-20261126T110000Z-00112233",
                      seconds=12.345)  # fmt: skip
    fields = {"command": "volumes rotate-key campus.yml card-spending-2025", "campus": "Seoul",
              "who": "park", "started": "2026-11-26T11:00:00Z",
              "finished": "2026-11-26T11:01:00Z", "records": (rec,), **changes}  # fmt: skip
    return RecordSet.model_validate(fields)


def test_a_record_knows_who_and_when() -> None:
    (rec,) = record_set().records
    assert rec.who and rec.when.endswith("Z") and rec.seconds == 12.3


def test_written_records_verify_and_read_back(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    written = record_set()  # once: a record's "when" is the clock's second
    out = write_records(tmp_path / "r", written, key, "Campus office", "ab" * 32)
    assert verify_evidence(out, key.public_key()) == []
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "manifest.sig", "records.json", "report.html",
    ]  # fmt: skip
    assert read_manifest(out).schema == "campus-provision/volume-records/v1"
    assert read_records(out) == written
    html = (out / "report.html").read_text(encoding="utf-8")
    for text in ("sgm-a01", "card-spending-2025", OLD, NEW, "Campus office", "<table>"):
        assert text in html
    assert "<script" not in html
    with pytest.raises(EvidenceError, match="already exists"):
        write_records(out, record_set(), key, "Campus office", "ab" * 32)


def test_a_changed_record_or_another_key_fails_verification(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    out = write_records(tmp_path / "r", record_set(), key, "Campus office", "ab" * 32)
    assert verify_evidence(out, Ed25519PrivateKey.generate().public_key()) != []
    data = json.loads((out / "records.json").read_text())
    data["records"][0]["new_key"] = OLD
    (out / "records.json").write_text(json.dumps(data))
    assert any("records.json: altered" in p for p in verify_evidence(out, key.public_key()))


def test_a_records_dir_without_its_records_does_not_verify(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    out = write_records(tmp_path / "r", record_set(), key, "Campus office", "ab" * 32)
    (out / "records.json").unlink()
    assert "records.json: missing" in verify_evidence(out, key.public_key())


def test_the_page_escapes_what_it_shows() -> None:
    rec = make_record("pc", "ds", "rotate-key", "failed", detail="<script>alert(1)</script>")
    html = render_records_html(record_set(records=(rec,)))
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "FAILED" in html


def test_unknown_fields_and_results_are_refused() -> None:
    with pytest.raises(ValidationError):
        RecordSet.model_validate({**record_set().model_dump(), "extra": 1})
    with pytest.raises(ValidationError):
        make_record("pc", "ds", "rotate-key", "maybe")  # type: ignore[arg-type]


def test_the_default_directory_is_stamped() -> None:
    when = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert default_records_dir(when) == Path("evidence/20261126T120000Z-volumes")
