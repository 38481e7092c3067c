"""LOG: logs leave the PC for the campus log host, where the PC's user cannot erase them."""

from __future__ import annotations

import secrets
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    active_lines,
    family_enabled,
    names_address,
    not_applicable,
    probe_failed,
)
from campus_provision.shell import quote

DELIVERY_SECONDS = 30
LOG_DIR = "/var/log/campus"  # campus_log_server_dir: one file per sending host


def test_CP_LOG_01_logs_forwarded_to_campus_log_host(
    host: Any,
    hostvars: dict[str, Any],
    evidence: Evidence,
    log_hosts: dict[str, tuple[str, Any]],
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
    problems += _retention_problems(evidence)
    assert not problems, "; ".join(problems)
    problems = _undelivered(evidence, targets, log_hosts)
    assert not problems, "; ".join(problems)


def _undelivered(
    evidence: Evidence,
    targets: list[str],
    log_hosts: dict[str, tuple[str, Any]],
    log_dir: str = LOG_DIR,
    seconds: int = DELIVERY_SECONDS,
) -> list[str]:
    """Delivery, not configuration: a line only this run could have written, looked for on
    every log host within a bound; the log hosts it did not reach (as problems)."""
    unseen = [t for t in targets if t not in log_hosts]
    if unseen:
        probe_failed(
            f"log host {', '.join(unseen)} is not in the inventory: what arrived there "
            "cannot be read"
        )
    token = f"campus-verify-{secrets.token_hex(8)}"
    sent = evidence.run(f"logger -t campus-verify {token} && echo logged")
    if sent.rc != 0 or "logged" not in sent.stdout:
        probe_failed(f"logger could not log a line on this PC (exit {sent.rc})")
    problems = []
    for address in targets:
        name, other = log_hosts[address]
        found = evidence.run_on(
            other, name,
            f"test -d {quote(log_dir)} || exit 3; for i in $(seq {int(seconds)}); do "
            f"grep -rlF -- {token} {quote(log_dir)} && exit 0; sleep 1; done; exit 1",
        )  # fmt: skip
        if found.rc == 1:
            problems.append(
                f"a line logged on this PC did not reach {name} ({address}) within {seconds} s"
            )
        elif found.rc != 0:
            probe_failed(f"{log_dir} on {name} could not be read (exit {found.rc})")
    if not problems:
        evidence.note(f"{token} logged here arrived on {', '.join(targets)}")
    return problems


def _retention_problems(evidence: Evidence) -> list[str]:
    """Logs rotate (logrotate, by its timer) and the journal stays on disk within a cap."""
    run = evidence.run(
        "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' dpkg logrotate 2>&1; "
        "systemctl show -p UnitFileState -p ActiveState logrotate.timer; "
        "systemd-analyze cat-config systemd/journald.conf 2>/dev/null "
        "| grep -E '^(Storage|SystemMaxUse)='; "
        "test -d /var/log/journal && echo 'JournalDir=yes'"
    )
    lines = [line.strip() for line in run.stdout.splitlines()]
    # dpkg itself must read as installed: a dpkg-query that cannot answer is no finding.
    if "dpkg ii" not in lines:
        probe_failed("dpkg-query did not list dpkg as installed, so logrotate's state is unknown")
    said: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            said[key] = value  # the last one wins, as in journald's own reading
    problems = []
    if "logrotate ii" not in lines:
        problems.append("logrotate is not installed: the log files never rotate")
    elif (said.get("UnitFileState"), said.get("ActiveState")) != ("enabled", "active"):
        problems.append(
            f"logrotate.timer is {said.get('UnitFileState')} and {said.get('ActiveState')}, "
            "not enabled and active"
        )
    if said.get("Storage") != "persistent":
        problems.append(f"the journal is not kept on disk (Storage={said.get('Storage', 'auto')})")
    elif said.get("JournalDir") != "yes":
        problems.append("the journal is not kept on disk (no /var/log/journal)")
    if not said.get("SystemMaxUse"):
        problems.append("the journal has no size cap (SystemMaxUse)")
    return problems
