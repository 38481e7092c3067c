"""Values from the spec and the command line reach the checks' commands as inert words.

``_tcp`` runs through a stand-in host whose ``run`` is this machine's ``sh -c`` (what
testinfra does on a PC); the probe fixture runs in a real pytest with the checks' plugin.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from campus_provision.checks.conftest import Evidence
from campus_provision.checks.test_net import _tcp


@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str


class LocalHost:
    """testinfra's host, as far as the checks use it: ``run`` is ``sh -c`` here."""

    def run(self, command: str) -> Ran:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
        return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / f"PWNED-{secrets.token_hex(4)}"


def test_tcp_probe_addresses_are_inert(marker: Path) -> None:
    """A target that is not an IP address never reaches the shell: the probe is an error."""
    hostile = [f"x'$(touch {marker})'", f"`touch {marker}`", f"127.0.0.1; touch {marker}"]
    for address in hostile:
        evidence = Evidence(LocalHost())
        with pytest.raises(pytest.fail.Exception, match="not an IP address"):
            _tcp(evidence, [(address, 9)])
        assert evidence.lines == []  # nothing was run
    assert not marker.exists()


PROBE_CHECK = """
def test_CP_NET_01_probe(hostvars, probe_address):
    assert probe_address
"""


def _run_probe(tmp_path: Path, env_probe: str | None, outside: str | None) -> dict[str, str]:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "conftest.py").write_text(
        'import pytest\npytest_plugins = ["campus_provision.checks.conftest"]\n'
        f"@pytest.fixture(scope=\"module\")\ndef hostvars():\n    return {{'campus_lab_outside': {outside!r}}}\n"
    )
    (checks / "test_probe.py").write_text(PROBE_CHECK)
    results = tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "CAMPUS_VERIFY_PROBE"}
    env.update(CAMPUS_VERIFY_RESULTS=str(results), PYTHONPATH=str(Path.cwd()))
    if env_probe is not None:
        env["CAMPUS_VERIFY_PROBE"] = env_probe
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(checks)],
        env=env, cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    return {"status": record["status"], "message": record["message"]}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["env", "hostvars"])
def test_a_probe_that_is_not_an_ip_address_is_an_error_not_a_pass(
    where: str, marker: Path, tmp_path: Path
) -> None:
    bad = f"x'$(touch {marker})'"
    got = _run_probe(
        tmp_path, bad if where == "env" else None, bad if where == "hostvars" else None
    )
    assert got["status"] == "error", got
    assert "not an IP address" in got["message"]
    assert not marker.exists()


@pytest.mark.slow
def test_a_probe_address_is_taken_as_ipaddress_writes_it(tmp_path: Path) -> None:
    assert _run_probe(tmp_path, "2001:DB8::1", None) == {"status": "pass", "message": ""}
