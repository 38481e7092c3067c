"""LOG: logs leave the PC for the campus log host, where the PC's user cannot erase them."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    active_lines,
    family_enabled,
    names_address,
    not_applicable,
)


def test_CP_LOG_01_logs_forwarded_to_campus_log_host(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "LOG")
    targets = hostvars.get("campus_log_hosts") or []
    if not targets:
        not_applicable("the spec gives this host no log host")
    problems = []
    if evidence.run("systemctl is-active rsyslog").stdout.strip() != "active":
        problems.append("rsyslog is not running")
    config = active_lines(
        evidence.run("cat /etc/rsyslog.conf /etc/rsyslog.d/*.conf 2>/dev/null").stdout
    )
    missing = [t for t in targets if not names_address(config, t)]
    if missing:
        problems.append(f"no forwarding to {', '.join(missing)} in the rsyslog configuration")
    assert not problems, "; ".join(problems)
