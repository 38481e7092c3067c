"""AUD-02 through a real shell with ``dpkg-query``, ``sha256sum`` and ``aide`` standing in:
no difference passes with the baseline's hash in the evidence; what was added, removed or
changed is named; no AIDE or no baseline fails; an aide that could not compare is an
error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campus_provision.checks import test_aud
from campus_provision.checks.conftest import Evidence
from tests.verify.test_check_probes import Shell, tool

HOSTVARS: dict[str, Any] = {"campus_control_families": {}}
DIGEST = "ab" * 32
# An AIDE 0.18 report with differences, abridged.
REPORT = """Start timestamp: 2026-12-03 18:50:00 +0000 (AIDE 0.18.3)
AIDE found differences between database and filesystem!!

Summary:
  Total number of entries:\t1523
  Added entries:\t\t1
  Removed entries:\t\t0
  Changed entries:\t\t1

---------------------------------------------------
Added entries:
---------------------------------------------------

f++++++++++++++++: /usr/bin/campus-tamper-test

---------------------------------------------------
Changed entries:
---------------------------------------------------

f   ...    . ... : /etc/ssh/sshd_config

---------------------------------------------------
Detailed information about changes:
---------------------------------------------------

File: /etc/ssh/sshd_config
  SHA256    : AAAA | BBBB
"""


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    tool(tmp_path, "dpkg-query", 'echo "dpkg ii"; echo "aide ii"\n')
    tool(tmp_path, "sha256sum", f'echo "{DIGEST}  $1"\n')
    return tmp_path


def aide(tools: Path, report: str, code: int) -> None:
    (tools / "report.txt").write_text(report, encoding="utf-8")
    tool(tools, "aide", f'/bin/cat "{tools}/report.txt"; exit {code}\n')


def check(tools: Path) -> Evidence:
    ev = Evidence(Shell(tools))
    test_aud.test_CP_AUD_02_watched_files_match_the_baseline(None, HOSTVARS, ev)
    return ev


def test_no_difference_passes_with_the_baselines_hash(tools: Path) -> None:
    aide(tools, "AIDE found NO differences between database and filesystem. Looks okay!!\n", 0)
    assert f"as at the baseline (sha256 {DIGEST})" in check(tools).text()


def test_what_changed_since_the_baseline_is_named(tools: Path) -> None:
    aide(tools, REPORT, 5)
    with pytest.raises(
        AssertionError, match=r"added /usr/bin/campus-tamper-test, changed /etc/ssh/sshd_config\n"
    ):
        check(tools)


def test_no_aide_or_no_baseline_fails(tools: Path) -> None:
    aide(tools, "", 0)
    tool(tools, "sha256sum", 'echo "sha256sum: $1: No such file or directory"; exit 1\n')
    with pytest.raises(AssertionError, match=r"no AIDE baseline at /var/lib/aide/campus\.db"):
        check(tools)
    tool(tools, "dpkg-query", 'echo "dpkg ii"\n')
    with pytest.raises(AssertionError, match="aide is not installed"):
        check(tools)


def test_an_aide_that_could_not_compare_is_an_error(tools: Path) -> None:
    aide(tools, "Couldn't open file /var/lib/aide/campus.db for reading\n", 17)
    with pytest.raises(pytest.fail.Exception, match=r"aide --check did not compare \(exit 17\)"):
        check(tools)
    tool(tools, "dpkg-query", "exit 1\n")
    with pytest.raises(pytest.fail.Exception, match="did not list dpkg as installed"):
        check(tools)
