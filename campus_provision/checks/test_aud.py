"""AUD: auditd records who touches dataset mounts and every attempt to load a module."""

from __future__ import annotations

import re
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    not_applicable,
    probe_failed,
)

# What the campus rules must record, by key, beyond the dataset and module rules.
KEYS = {
    "campus-identity": "changes to accounts, groups and passwords",
    "campus-sudoers": "changes to sudoers",
    "campus-sshd": "changes to sshd's configuration",
    "campus-time": "clock changes",
}


def test_CP_AUD_01_auditd_watches_datasets_and_modules(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "AUD")
    if is_container:
        not_applicable("auditd cannot run in a container (no audit netlink of its own)")
    problems = []
    if evidence.run("systemctl is-active auditd").stdout.strip() != "active":
        problems.append("auditd is not running")
    listed = evidence.run("auditctl -l")
    rules = listed.stdout
    # "No rule for X" is concluded from the listing: auditctl must have answered. Where
    # auditd does not run (or is not even installed) that is the finding already.
    if listed.rc != 0:
        assert not problems, "; ".join(problems)
        probe_failed(f"auditctl -l did not list the loaded rules (exit {listed.rc})")
    if "/srv/datasets" not in rules:
        problems.append("no audit rule watches /srv/datasets")
    if "init_module" not in rules and "finit_module" not in rules:
        problems.append("no audit rule on module loading (init_module, finit_module)")
    # A watch lists its key as "-k KEY", a syscall rule as "-F key=KEY".
    keys = set(re.findall(r"(?:-k |key=)(\S+)", rules))
    missing = [what for key, what in KEYS.items() if key not in keys]
    if missing:
        problems.append(f"no audit rule records {', '.join(missing)}")
    assert not problems, "; ".join(problems)


AIDE_CONFIG = "/etc/aide/campus-aide.conf"
AIDE_DATABASE = "/var/lib/aide/campus.db"
_SECTIONS = {
    "Added entries:": "added",
    "Removed entries:": "removed",
    "Changed entries:": "changed",
}


def _aide_entries(report: str) -> list[str]:
    """``changed /etc/ssh/sshd_config``, ... from an AIDE report's entry lists."""
    found, section = [], None
    for line in report.splitlines():
        text = line.strip()
        if text.startswith("Detailed information about changes"):
            break
        if text in _SECTIONS:
            section = _SECTIONS[text]
        elif section and ": /" in text:
            found.append(f"{section} /{text.split(': /', 1)[1]}")
    return found


def test_CP_AUD_02_watched_files_match_the_baseline(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "AUD")
    result = evidence.run(
        "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' dpkg aide 2>&1; echo '== db'; "
        f"sha256sum {AIDE_DATABASE} 2>&1; echo '== check'; "
        f'aide --config={AIDE_CONFIG} --check 2>&1; echo "aide exit $?"'
    )
    head, _, rest = result.stdout.partition("== db\n")
    digest, _, report = rest.partition("== check\n")
    status = {w[0]: w[1] for w in map(str.split, head.splitlines()) if len(w) > 1}
    if status.get("dpkg") != "ii":
        probe_failed("dpkg-query did not list dpkg as installed, so AIDE's state is unknown")
    assert status.get("aide") == "ii", "aide is not installed: no baseline to compare with"
    words = digest.split()
    assert len(words) == 2 and len(words[0]) == 64, f"no AIDE baseline at {AIDE_DATABASE}"
    code = report.rstrip().rpartition("aide exit ")[2]
    if not code.isdigit() or not 0 <= int(code) <= 7:
        probe_failed(f"aide --check did not compare (exit {code or 'unknown'})")
    entries = _aide_entries(report)
    if int(code) != 0:
        assert entries, f"aide --check found differences (exit {code}) it did not name"
        assert not entries, "not as at the baseline: " + ", ".join(entries)
    evidence.note(f"every watched file as at the baseline (sha256 {words[0]})")
