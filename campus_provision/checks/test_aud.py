"""AUD: auditd records who touches dataset mounts and every attempt to load a module."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable


def test_CP_AUD_01_auditd_watches_datasets_and_modules(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "AUD")
    if is_container:
        not_applicable("auditd cannot run in a container (no audit netlink of its own)")
    problems = []
    if evidence.run("systemctl is-active auditd").stdout.strip() != "active":
        problems.append("auditd is not running")
    rules = evidence.run("auditctl -l").stdout
    if "/srv/datasets" not in rules:
        problems.append("no audit rule watches /srv/datasets")
    if "init_module" not in rules and "finit_module" not in rules:
        problems.append("no audit rule on module loading (init_module, finit_module)")
    assert not problems, "; ".join(problems)
