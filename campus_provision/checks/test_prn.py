"""PRN: no print service: paper leaves the room as easily as a USB stick."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    listening_ports,
    unit_states,
)


def test_CP_PRN_01_no_print_service(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "PRN")
    problems = []
    units = ("cups.service", "cups.socket", "cups-browsed.service")
    for unit, (active, enabled) in unit_states(evidence, units).items():
        if active == "active" or enabled == "enabled":
            problems.append(f"{unit} is {active}, {enabled or 'not installed'}")
    if any(p.rpartition(":")[2] == "631" for p in listening_ports(evidence)):
        problems.append("something listens on the IPP port 631")
    if not problems:
        evidence.note("no CUPS unit active or enabled, nothing on port 631 (ssh's 22 seen)")
    assert not problems, "; ".join(problems)
