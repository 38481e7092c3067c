"""PRN: no print service: paper leaves the room as easily as a USB stick."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled


def test_CP_PRN_01_no_print_service(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "PRN")
    problems = []
    for unit in ("cups.service", "cups.socket", "cups-browsed.service"):
        active = evidence.run(f"systemctl is-active {unit}").stdout.strip()
        enabled = evidence.run(f"systemctl is-enabled {unit} 2>/dev/null").stdout.strip()
        if active == "active" or enabled == "enabled":
            problems.append(f"{unit} is {active}, {enabled}")
    listening = evidence.run("ss -H -tln 'sport = :631'")
    if listening.stdout.strip():
        problems.append("something listens on the IPP port 631")
    if not problems:
        evidence.note("no CUPS unit active or enabled, nothing on port 631")
    assert not problems, "; ".join(problems)
