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

SELECT_SECONDS = 30


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
    assert not problems, "; ".join(problems)
    if is_container:
        not_applicable(
            "the configuration names only the campus NTP; a container keeps the host's clock, "
            "so whether it follows campus time can only be proved on the PC's own"
        )
    # Selection, not configuration: chrony marks the source it follows with '^*'. Just
    # after a start it needs a few polls (iburst): wait for it, boundedly, in one command.
    sources = evidence.run(
        f"for i in $(seq {SELECT_SECONDS}); do chronyc -n sources 2>/dev/null | "
        "grep -q '^\\^\\*' && break; sleep 1; done; chronyc -n sources && chronyc -n tracking"
    )
    if sources.rc != 0 or "Reference ID" not in sources.stdout:
        problems.append("chrony does not answer (chronyc sources/tracking): no time service")
    else:
        selected = [
            words[1] for line in sources.stdout.splitlines()
            if line.startswith("^*") and len(words := line.split()) > 1
        ]  # fmt: skip
        if not selected:
            problems.append(f"chrony has selected no source within {SELECT_SECONDS} s")
        elif selected[0] not in servers:
            problems.append(f"chrony follows {selected[0]}, not the campus NTP")
        else:
            evidence.note(f"chrony follows the campus NTP {selected[0]}")
    assert not problems, "; ".join(problems)
