"""The signed evidence directory: written whole or not at all; any change is named."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from campus_provision.cli import app
from campus_provision.keys.signing import fingerprint, write_public_key
from campus_provision.verify import evidence
from campus_provision.verify.evidence import (
    MANIFEST,
    SIGNATURE,
    EvidenceError,
    Manifest,
    default_evidence_dir,
    read_results,
    verify_evidence,
    write_evidence,
)
from campus_provision.verify.results import RunResults
from tests.verify.conftest import CLEAN_HOST, CREATED, FAILING_HOST, SIGNER

FILES = ["junit.xml", "results.json", "report.html", "manifest.json", "manifest.sig"]
SIGNED = ["junit.xml", "results.json", "report.html"]


@pytest.fixture
def pubkey(tmp_path: Path, signing_key: Ed25519PrivateKey) -> Path:
    """The auditor's trusted copy of the campus public key."""
    path = tmp_path / "auditor" / "signing.pub"
    path.parent.mkdir()
    write_public_key(signing_key.public_key(), path)
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(tmp_path / "no-keys-here"))
    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return run


def test_round_trip(
    evidence_dir: Path, run_results: RunResults, signing_key: Ed25519PrivateKey
) -> None:
    assert sorted(p.name for p in evidence_dir.iterdir()) == sorted(FILES)
    assert verify_evidence(evidence_dir, signing_key.public_key()) == []
    assert read_results(evidence_dir) == run_results
    assert (evidence_dir / "results.json").read_text() == run_results.to_json()

    manifest = Manifest.from_bytes((evidence_dir / MANIFEST).read_bytes())
    assert manifest.schema == "campus-provision/evidence/v1"
    assert manifest.campus == run_results.campus
    assert manifest.signer == SIGNER
    assert manifest.key_fingerprint == fingerprint(signing_key.public_key())
    assert manifest.created == "2026-11-26T12:00:05Z"
    assert manifest.spec_sha256 == run_results.spec_sha256
    assert sorted(manifest.files) == sorted(SIGNED)
    for name, entry in manifest.files.items():
        assert entry.size == (evidence_dir / name).stat().st_size
    sig = (evidence_dir / SIGNATURE).read_text()
    assert sig.endswith("\n") and sig.count("\n") == 1
    signing_key.public_key().verify(base64.b64decode(sig), (evidence_dir / MANIFEST).read_bytes())


def test_generated_junit_has_a_suite_per_host_and_a_case_per_control(
    evidence_dir: Path,
) -> None:
    root = ET.fromstring((evidence_dir / "junit.xml").read_bytes())  # noqa: S314 - our own output
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "12",
        "2",
        "1",
        "2",
    )
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {CLEAN_HOST, FAILING_HOST}
    failing = {c.get("name"): c for c in suites[FAILING_HOST].iter("testcase")}
    assert len(failing) == 6
    usb = failing[f"CP-USB-01[{FAILING_HOST}]"].find("failure")
    assert usb is not None and "waiver expired on 2026-01-31" in str(usb.get("message"))
    net = failing[f"CP-NET-01[{FAILING_HOST}]"].find("failure")
    assert net is not None and "<script>" in str(net.text)  # escaped in XML, intact in text
    assert "\\x1b[31m" in str(net.text)  # control characters made visible, XML stays valid
    assert failing[f"CP-PKG-01[{FAILING_HOST}]"].find("error") is not None
    clean = {c.get("name"): c for c in suites[CLEAN_HOST].iter("testcase")}
    waived = clean[f"CP-USB-01[{CLEAN_HOST}]"].find("skipped")
    assert waived is not None and "approved by Kim Minji (CISO)" in str(waived.get("message"))
    na = clean[f"CP-AUD-01[{CLEAN_HOST}]"].find("skipped")
    assert na is not None and "not applicable" in str(na.get("message"))


def test_a_given_junit_file_is_copied_byte_for_byte(
    tmp_path: Path, run_results: RunResults, signing_key: Ed25519PrivateKey
) -> None:
    junit = tmp_path / "pytest-junit.xml"
    junit.write_bytes(b'<?xml version="1.0"?><testsuites name="pytest"/>\n')
    out = write_evidence(tmp_path / "ev", run_results, junit, signing_key, SIGNER)
    assert (out / "junit.xml").read_bytes() == junit.read_bytes()
    assert verify_evidence(out, signing_key.public_key()) == []


def test_report_verify_accepts_good_evidence(
    evidence_dir: Path, pubkey: Path, signing_key: Ed25519PrivateKey, cli: Callable[..., Result]
) -> None:
    result = cli("report", "verify", evidence_dir, "--pubkey", pubkey)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert out.startswith("OK")
    assert fingerprint(signing_key.public_key()) in out
    assert "3 files match the manifest" in out
    assert "2 hosts × 6 controls, verdict FAIL (fail 2, error 1, waived 1" in out


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i] = data[i] ^ 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", FILES)
def test_one_changed_byte_in_any_file_fails_and_names_it(
    name: str, evidence_dir: Path, pubkey: Path, cli: Callable[..., Result]
) -> None:
    _flip_one_byte(evidence_dir / name)
    result = cli("report", "verify", evidence_dir, "--pubkey", pubkey)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    if name in (MANIFEST, SIGNATURE):
        assert any(ln.startswith("manifest.sig: signature does not verify") for ln in lines)
    else:
        assert any(ln.startswith(f"{name}: altered") for ln in lines), lines
        assert len(lines) == 2  # the one problem, then the FAILED summary
    assert lines[-1].startswith(f"FAILED: {evidence_dir} does not verify")


def test_an_extra_file_is_named(
    evidence_dir: Path, pubkey: Path, cli: Callable[..., Result]
) -> None:
    (evidence_dir / "notes.txt").write_text("added later\n")
    (evidence_dir / "more").mkdir()
    result = cli("report", "verify", evidence_dir, "--pubkey", pubkey)
    assert result.exit_code == 1
    assert "notes.txt: extra file, not in the manifest" in result.stderr
    assert "more: extra directory, not in the manifest" in result.stderr


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_named(
    name: str, evidence_dir: Path, pubkey: Path, cli: Callable[..., Result]
) -> None:
    (evidence_dir / name).unlink()
    result = cli("report", "verify", evidence_dir, "--pubkey", pubkey)
    assert result.exit_code == 1
    assert f"{name}: missing" in result.stderr


def test_another_keys_pubkey_fails(
    evidence_dir: Path, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    other = tmp_path / "other.pub"
    other_key = Ed25519PrivateKey.generate().public_key()
    write_public_key(other_key, other)
    result = cli("report", "verify", evidence_dir, "--pubkey", other)
    assert result.exit_code == 1
    assert "manifest.sig: signature does not verify" in result.stderr
    assert f"but the trusted public key is {fingerprint(other_key)}" in result.stderr


def test_a_re_signed_manifest_cannot_reach_outside_the_directory(
    tmp_path: Path, evidence_dir: Path, signing_key: Ed25519PrivateKey
) -> None:
    # Even a manifest the campus key signed must not make the verifier read other paths.
    (tmp_path / "secret").write_text("outside\n")
    raw = json.loads((evidence_dir / MANIFEST).read_text())
    raw["files"]["../secret"] = {"sha256": "0" * 64, "size": 7}
    data = json.dumps(raw).encode()
    (evidence_dir / MANIFEST).write_bytes(data)
    (evidence_dir / SIGNATURE).write_bytes(base64.b64encode(signing_key.sign(data)) + b"\n")
    problems = verify_evidence(evidence_dir, signing_key.public_key())
    assert problems == ["manifest.json: lists a bad file name '../secret'"]


def test_no_public_key_never_passes(evidence_dir: Path) -> None:
    assert verify_evidence(evidence_dir, None) == [
        "manifest.sig: not checked (no trusted public key given)"
    ]


def test_without_pubkey_the_keys_dir_copy_is_used_and_said(
    evidence_dir: Path,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    cli: Callable[..., Result],
) -> None:
    missing = cli("report", "verify", evidence_dir)
    assert missing.exit_code == 1
    assert "pass the campus's public key with --pubkey FILE" in missing.stderr

    keys = tmp_path / "keys"
    keys.mkdir()
    write_public_key(signing_key.public_key(), keys / "signing.pub")
    result = cli("report", "verify", evidence_dir, "--keys-dir", keys)
    assert result.exit_code == 0, result.output
    assert "no --pubkey given" in result.stderr
    assert "an auditor should pass their own trusted copy" in result.stderr


def test_not_a_directory(tmp_path: Path, pubkey: Path, cli: Callable[..., Result]) -> None:
    result = cli("report", "verify", tmp_path / "nope", "--pubkey", pubkey)
    assert result.exit_code == 1
    assert "nope: not a directory" in result.stderr


def test_existing_output_is_never_overwritten(
    evidence_dir: Path, run_results: RunResults, signing_key: Ed25519PrivateKey
) -> None:
    before = {p.name: p.read_bytes() for p in evidence_dir.iterdir()}
    with pytest.raises(EvidenceError, match="already exists; evidence is never overwritten"):
        write_evidence(evidence_dir, run_results, None, signing_key, SIGNER)
    assert {p.name: p.read_bytes() for p in evidence_dir.iterdir()} == before


@pytest.mark.parametrize("fail_at", ["render", "write"])
def test_a_failure_part_way_leaves_nothing(
    fail_at: str,
    tmp_path: Path,
    run_results: RunResults,
    signing_key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if fail_at == "render":

        def broken_render(*args: object, **kwargs: object) -> str:
            raise RuntimeError("template bug")

        monkeypatch.setattr(evidence, "render_report", broken_render)
        expected: tuple[type[Exception], str] = (RuntimeError, "template bug")
    else:
        real_write = evidence._write
        calls: list[Path] = []

        def write_then_fail(path: Path, data: bytes) -> None:
            calls.append(path)
            if len(calls) == 4:  # the three files are written; the manifest is not
                raise OSError(28, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(evidence, "_write", write_then_fail)
        expected = (EvidenceError, "cannot write evidence: No space left on device")
    parent = tmp_path / "evidence"
    with pytest.raises(expected[0], match=expected[1]):
        write_evidence(parent / "run", run_results, None, signing_key, SIGNER)
    assert not (parent / "run").exists()
    assert not parent.exists() or list(parent.iterdir()) == []  # no temp dir left either


def test_default_directory_is_a_utc_timestamp() -> None:
    assert default_evidence_dir(CREATED) == Path("evidence/20261126T120005Z")


def _results_with(run_results: RunResults, host: str, control: str, status: str) -> RunResults:
    data = json.loads(run_results.to_json())
    for r in data["results"]:
        if (r["host"], r["control"]) == (host, control):
            r["status"] = status
    return RunResults.from_json(json.dumps(data))


def test_report_diff_detects_pass_to_fail(
    tmp_path: Path,
    evidence_dir: Path,
    run_results: RunResults,
    signing_key: Ed25519PrivateKey,
    cli: Callable[..., Result],
) -> None:
    later = _results_with(run_results, CLEAN_HOST, "CP-NET-02", "fail")
    new = write_evidence(tmp_path / "later", later, None, signing_key, SIGNER)
    result = cli("report", "diff", evidence_dir, new)
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert CLEAN_HOST in out and "CP-NET-02" in out and "worse" in out
    assert "drift: 1 changed (1 worse), 0 hosts added" in out

    same = cli("report", "diff", evidence_dir, evidence_dir)
    assert same.exit_code == 0
    assert "no drift" in same.stdout


def test_report_diff_lists_hosts_added_and_removed(
    tmp_path: Path, evidence_dir: Path, run_results: RunResults, cli: Callable[..., Result]
) -> None:
    data = json.loads(run_results.to_json())
    data["hosts"] = [FAILING_HOST, "gp-a02"]
    data["results"] = [r for r in data["results"] if r["host"] == FAILING_HOST]
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "results.json").write_text(json.dumps(data))
    result = cli("report", "diff", evidence_dir, tmp_path / "new")
    assert result.exit_code == 1
    assert f"host removed: {CLEAN_HOST}" in result.stdout
    assert "host added: gp-a02" in result.stdout


def test_report_diff_unreadable_is_exit_2(
    tmp_path: Path, evidence_dir: Path, cli: Callable[..., Result]
) -> None:
    result = cli("report", "diff", evidence_dir, tmp_path / "absent")
    assert result.exit_code == 2
    assert "absent: no such evidence directory" in result.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    result = cli("report", "diff", evidence_dir, tmp_path / "bad")
    assert result.exit_code == 2
    assert "not a valid results.json" in result.stderr


def test_report_show_summarises_verdict_and_failures(
    evidence_dir: Path, cli: Callable[..., Result]
) -> None:
    result = cli("report", "show", evidence_dir)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "verdict FAIL" in out
    assert "fail 2, error 1, waived 1, not applicable 1, pass 7" in out
    assert FAILING_HOST in out and "CP-NET-01" in out and "waiver expired on 2026-01-31" in out
    assert f"signed by {SIGNER}" in out
    assert "not verified here" in out


@pytest.mark.parametrize("command", [["report", "verify"], ["report", "show"], ["report", "diff"]])
def test_help_gives_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: campus-provision " + " ".join(command) in " ".join(result.stdout.split())
