"""TIME: the clock follows campus NTP, so audit records from all PCs line up."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    active_lines,
    family_enabled,
    names_address,
    not_applicable,
)


def test_CP_TIME_01_time_synced_to_campus_ntp(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "TIME")
    servers = hostvars.get("campus_ntp_servers") or []
    if not servers:
        not_applicable("the spec gives this host no NTP server")
    config = evidence.run("cat /etc/chrony/chrony.conf /etc/chrony/conf.d/*.conf /etc/systemd/timesyncd.conf "
                          "/etc/systemd/timesyncd.conf.d/*.conf 2>/dev/null").stdout  # fmt: skip
    lines = active_lines(config)
    problems = []
    missing = [s for s in servers if not names_address(lines, s)]
    if missing:
        problems.append(f"campus NTP {', '.join(missing)} is not configured")
    # Any other source (Debian's pool, say) is time from outside the campus.
    others = sorted(
        {
            words[1]
            for line in lines
            if len(words := line.split()) > 1 and words[0] in ("server", "pool", "peer")
            and words[1] not in servers
        }
    )  # fmt: skip
    if others:
        problems.append(f"time sources outside the campus NTP: {', '.join(others)}")
    active = [
        u
        for u in ("chrony", "systemd-timesyncd")
        if evidence.run(f"systemctl is-active {u}").stdout.strip() == "active"
    ]
    if not active and not is_container:
        problems.append("no time service (chrony or systemd-timesyncd) is running")
    if is_container and not problems:
        evidence.note(
            "a container keeps the host's clock; the configuration is what can be checked"
        )
    assert not problems, "; ".join(problems)
