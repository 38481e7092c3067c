"""AUD-01 through a real shell with ``systemctl`` and ``auditctl`` standing in: every
campus rule key loaded passes, a missing one fails naming what goes unrecorded, and an
``auditctl`` that cannot list the rules is an error, never "no rule"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campus_provision.checks import test_aud
from campus_provision.checks.conftest import Evidence
from tests.verify.test_check_probes import Shell, tool

HOSTVARS: dict[str, Any] = {"campus_control_families": {}}
# What auditctl -l prints for the campus rules (watches: -k; syscall rules: -F key=).
LOADED = """-w /srv/datasets -p rwxa -k campus-datasets
-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -F key=campus-modules
-w /etc/passwd -p wa -k campus-identity
-w /etc/sudoers -p wa -k campus-sudoers
-w /etc/ssh/sshd_config -p wa -k campus-sshd
-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -F auid!=-1 -F key=campus-time
"""


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    tool(tmp_path, "systemctl", "echo active\n")
    return tmp_path


def check(tools: Path, rules: str, rc: int = 0) -> Evidence:
    (tools / "rules.txt").write_text(rules, encoding="utf-8")
    tool(tools, "auditctl", f'/bin/cat "{tools}/rules.txt"; exit {rc}\n')
    ev = Evidence(Shell(tools))
    test_aud.test_CP_AUD_01_auditd_watches_datasets_and_modules(None, HOSTVARS, ev, False)
    return ev


def test_every_campus_rule_loaded_passes(tools: Path) -> None:
    check(tools, LOADED)


def test_a_missing_rule_names_what_goes_unrecorded(tools: Path) -> None:
    without = "".join(ln + "\n" for ln in LOADED.splitlines() if "campus-time" not in ln)
    with pytest.raises(AssertionError, match="no audit rule records clock changes"):
        check(tools, without)
    with pytest.raises(AssertionError, match="changes to sshd's configuration, clock changes"):
        check(tools, without.replace("campus-sshd", "other"))


def test_auditctl_that_cannot_list_is_an_error(tools: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"auditctl -l did not list .* \(exit 1\)"):
        check(tools, "You must be root to run this program.\n", rc=1)


def test_no_auditd_is_a_failure_even_without_auditctl(tools: Path) -> None:
    tool(tools, "systemctl", "echo inactive; exit 3\n")
    with pytest.raises(AssertionError, match="auditd is not running"):
        check(tools, "sh: 1: auditctl: not found\n", rc=127)
