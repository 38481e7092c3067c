"""verify against the unprovisioned lab: the checks can fail, and say why; evidence is signed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus_provision.lab.control import UpResult
from campus_provision.lab.state import LabPaths
from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.results import RunResults
from campus_provision.verify.runner import NO_RESULT
from tests.conftest import EXAMPLE
from tests.lab.conftest import VENV_BIN

pytestmark = pytest.mark.lab
Lab = tuple[LabPaths, UpResult]
CONTROLS = len(load_catalogue().controls)
PASSPHRASE = "lab-test passphrase, not a secret anywhere else"  # noqa: S105 - test only


@pytest.fixture(scope="module")
def evidence(
    nspawn_lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    paths, _ = nspawn_lab
    base = tmp_path_factory.mktemp("verify")
    env = {
        **os.environ,
        "CAMPUS_KEYS_DIR": str(base / "keys"),
        "CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE,
    }
    init = subprocess.run([str(VENV_BIN / "campus-provision"), "keys", "init"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert init.returncode == 0, init.stderr
    out = base / "evidence"
    proc = subprocess.run(
        [str(VENV_BIN / "campus-provision"), "verify", str(EXAMPLE), "--lab", "--prefix", paths.prefix,
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    yield out, base / "keys" / "signing.pub", proc


def results(out: Path) -> RunResults:
    return RunResults.from_json((out / "results.json").read_text())


def test_verify_fails_on_unprovisioned_pcs_with_exit_1(
    evidence: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _, proc = evidence
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    run = results(out)
    assert run.hosts == ["gp-l1-01", "sgm-a01"]
    assert len(run.results) == 2 * CONTROLS


@pytest.mark.parametrize(
    ("control", "why"),
    [
        (
            "CP-NET-01",
            "is reachable: tcp/80, tcp/443, tcp/53, tcp/22, udp/53, udp/123, udp/443, icmp",
        ),
        ("CP-USB-01", "modprobe would load usb-storage"),
        ("CP-ACC-02", "PermitRootLogin is without-password"),
        ("CP-ACC-04", "libpam-pwquality is not installed"),
    ],
)
def test_checks_fail_and_their_evidence_says_why(
    evidence: tuple[Path, Path, subprocess.CompletedProcess[str]], control: str, why: str
) -> None:
    out, _, _ = evidence
    for r in results(out).results:
        if r.control == control:
            assert r.status == "fail", (r.host, r.status, r.message)
            assert why in r.message
            assert r.evidence.startswith("$ ")


def test_container_only_controls_are_not_applicable_not_pass(
    evidence: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _, _ = evidence
    statuses = {(r.host, r.control): r.status for r in results(out).results}
    for host in ("sgm-a01", "gp-l1-01"):
        assert statuses[(host, "CP-AUD-01")] == "not_applicable"
        assert statuses[(host, "CP-VOL-01")] == "not_applicable"


def test_all_five_evidence_files_and_report_verify_accepts_them(
    evidence: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    out, pub, _ = evidence
    assert sorted(p.name for p in out.iterdir()) == [
        "junit.xml",
        "manifest.json",
        "manifest.sig",
        "report.html",
        "results.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["campus"] == "Seoul Big Data Campus"
    check = subprocess.run([str(VENV_BIN / "campus-provision"), "report", "verify", str(out), "--pubkey", str(pub)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    html = (out / "report.html").read_text()
    assert "Seoul Big Data Campus" in html and "CP-NET-01" in html and "<script" not in html


def test_audit_refuses_to_provision() -> None:
    proc = subprocess.run([str(VENV_BIN / "campus-provision"), "audit", str(EXAMPLE), "--provision"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "audit never changes a host" in proc.stderr


def test_a_pc_whose_host_key_changed_is_an_error_naming_it(
    nspawn_lab: Lab, evidence: tuple[Path, Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Whatever answers at a PC's address with another key is not that PC: nothing passes."""
    paths, result = nspawn_lab
    pc = next(h for h in result.plan.hosts if h.name == "sgm-a01")
    known = paths.known_hosts
    kept = known.read_text()
    mine = [ln for ln in kept.splitlines() if ln.split(" ", 1)[0] == str(pc.address.ip)]
    assert mine, f"the lab did not record {pc.name}'s key in {known}"
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    forged = f"{pc.address.ip} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}"
    known.write_text(
        "\n".join([ln for ln in kept.splitlines() if ln not in mine] + [forged]) + "\n"
    )
    try:
        out = tmp_path / "evidence"
        env = {**os.environ, "CAMPUS_KEYS_DIR": str(evidence[1].parent),
               "CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}  # fmt: skip
        proc = subprocess.run(
            [str(VENV_BIN / "campus-provision"), "verify", str(EXAMPLE), "--lab", "--prefix", paths.prefix,
             "--limit", pc.name, "--controls", "CP-NET-01,CP-ACC-02", "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        known.write_text(kept)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = results(out)
    assert {r.control: r.status for r in run.results} == {
        "CP-NET-01": "error",
        "CP-ACC-02": "error",
    }
    for r in run.results:
        assert "ssh could not run the probe" in r.message, r.message
        assert (
            "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.evidence
            or "Host key verification failed" in r.message
        )


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_pytest_worker_killed_mid_run_leaves_errors_naming_its_cells(
    nspawn_lab: Lab, evidence: tuple[Path, Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:  # fmt: skip
    """A crashed xdist worker's cell is an error naming host and control, never a gap."""
    paths, _ = nspawn_lab
    out = tmp_path / "evidence"
    env = {**os.environ, "CAMPUS_KEYS_DIR": str(evidence[1].parent),
           "CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}  # fmt: skip
    cmd = [str(VENV_BIN / "campus-provision"), "verify", str(EXAMPLE), "--lab", "--prefix",
           paths.prefix, "--out", str(out)]  # fmt: skip
    killed = None
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:  # fmt: skip
        deadline = time.monotonic() + 600
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            tree = _descendants(proc.pid)
            runner = next((p for p in tree if " -m pytest " in _cmdline(p)), None)
            if runner is not None:
                with contextlib.suppress(OSError):
                    done = (Path(f"/proc/{runner}/cwd").resolve() / "results.jsonl").read_text()
                    workers = _children(runner)
                    if done.count("\n") >= 2 and workers:
                        os.kill(workers[0], signal.SIGKILL)  # mid-run: others still checking
                        killed = workers[0]
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=900)
    assert killed is not None, f"no pytest worker was seen to kill:\n{output}"
    assert proc.returncode == 1, output
    run = results(out)
    assert len(run.results) == len(run.hosts) * len(run.controls) == 2 * CONTROLS
    lost = [r for r in run.results if r.message == NO_RESULT]
    assert lost, "a killed worker left no cell without a result"
    assert all(r.status == "error" for r in lost)
    for r in lost:  # the terminal names each, as results.json does
        assert f"ERROR {r.host} {r.control}" in output, output
