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
    # "No rule for X" is concluded from the listing: auditctl must have answered.
    if listed.rc != 0:
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
