"""Fixtures and hooks shared by the checks: expectations, evidence, result records.

Runs inside the pytest process that ``campus-provision verify`` starts. Each result is
appended as one JSON line to ``$CAMPUS_VERIFY_RESULTS`` on the controller, with the
check's evidence (the commands it ran and what they printed).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from campus_provision.shell import ip_address, quote

EVIDENCE_LIMIT = 4000  # characters of output kept per command
PEERS = 2  # other PCs each PC tries to reach (lateral traffic)
_ROLE = {"worker": False}
_CONTROL_RE = re.compile(r"test_(CP_[A-Z]+_\d{2})")
# What ssh itself says when it never ran the command (exit 255), not the command's words.
_SSH_FAILED = re.compile(
    r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known"
    r"|ssh: connect to host|Permission denied \(|kex_exchange_identification|Connection closed by"
    r"|Connection timed out|Could not resolve hostname|ProxyCommand|Connection refused"
)

# What sudo says when it refuses the login its become (the command never ran as root).
_SUDO_REFUSED = re.compile(
    r"^sudo: (a terminal is required|a password is required|no tty present|sorry, you must have)"
    r"|is not in the sudoers file|is not allowed to execute",
    re.MULTILINE,
)


@dataclass
class Evidence:
    """What a check did on the host, for the auditor: commands, results, notes."""

    host: Any
    lines: list[str] = field(default_factory=list)

    def run(self, command: str) -> Any:
        """Run ``command`` on the host (no exception on failure) and record it.

        A command that never reached the host (ssh itself failed: exit 255 with ssh's own
        words), or that sudo refused to run as root, ends the check as an error: its empty
        output is no finding.
        """
        try:
            result = self.host.run(command)
        except RuntimeError as exc:  # testinfra's ssh backend raises on ssh's own exit 255
            said = str(exc).replace("\\r\\n", "\n").replace("\\n", "\n")
            if not _SSH_FAILED.search(said):
                raise
            self._ssh_failed(command, said)
        if result.rc == 255 and _SSH_FAILED.search(result.stderr):
            self._ssh_failed(command, result.stderr)
        refused = _SUDO_REFUSED.search(result.stderr) if result.rc != 0 else None
        if refused:
            self.lines.append(
                f"$ {command}\n{result.stderr.strip()[-EVIDENCE_LIMIT:]}\n(exit {result.rc})"
            )
            probe_failed(f"sudo refused to run the probe as root: {refused[0].strip()}")
        out = (result.stdout + result.stderr).strip()
        if len(out) > EVIDENCE_LIMIT:
            out = out[:EVIDENCE_LIMIT] + f"\n... ({len(out) - EVIDENCE_LIMIT} more characters)"
        self.lines.append(
            f"$ {command}\n{out}\n(exit {result.rc})" if out else f"$ {command}\n(exit {result.rc})"
        )
        return result

    def _ssh_failed(self, command: str, said: str) -> None:
        found = _SSH_FAILED.search(said)
        self.lines.append(f"$ {command}\n{said.strip()[-EVIDENCE_LIMIT:]}\n(exit 255)")
        probe_failed(f"ssh could not run the probe on the host: {found[0] if found else said}")

    def run_on(self, other: Any, name: str, command: str) -> Any:
        """Run ``command`` on another host (a log host, say), recorded as done there."""
        there = Evidence(other)
        result = there.run(command)
        self.lines += [f"[on {name}] {line}" if i == 0 else line
                       for i, line in enumerate(there.lines)]  # fmt: skip
        return result

    def note(self, text: str) -> None:
        """Record a finding in words."""
        self.lines.append(f"# {text}")

    def text(self) -> str:
        return "\n".join(self.lines)


_EVIDENCE = pytest.StashKey[Evidence]()


@pytest.fixture
def evidence(host: Any, request: pytest.FixtureRequest) -> Evidence:
    """The evidence recorder for this control on this host (read when the report is made)."""
    ev = Evidence(host)
    request.node.stash[_EVIDENCE] = ev
    return ev


@pytest.fixture(scope="module")
def hostvars(host: Any) -> dict[str, Any]:
    """This host's inventory variables: what the spec expects of it."""
    variables: dict[str, Any] = host.ansible.get_variables()
    return variables


@pytest.fixture(scope="module")
def is_container(host: Any) -> bool:
    """True for an nspawn container: no kernel, modules or audit of its own."""
    return bool(host.run("systemd-detect-virt --container --quiet").rc == 0)


@pytest.fixture(scope="module")
def probe_address(hostvars: dict[str, Any]) -> str:
    """An address outside the campus that egress checks try to reach (and must not)."""
    address = os.environ.get("CAMPUS_VERIFY_PROBE") or hostvars.get("campus_lab_outside")
    if not address:
        pytest.fail("no probe address: give verify --probe ADDRESS (an address outside the campus)")
    # Checked again here, not only by --probe: the checks also run from other callers, and
    # the address goes into commands on the PC. Not an address is an error, never a pass.
    try:
        return ip_address(str(address))
    except ValueError as exc:
        pytest.fail(f"probe address {exc}: give verify --probe an address outside the campus")


@pytest.fixture(scope="module")
def peers(
    host: Any, hostvars: dict[str, Any], request: pytest.FixtureRequest
) -> list[tuple[str, str]]:
    """Up to two other workstations (name, address), of this PC's site where it has any.

    Read from the inventory verify runs with: lateral probes try to reach them.
    """
    inventory = request.config.option.ansible_inventory
    if not inventory:
        return []
    runner = AnsibleRunner.get_runner(inventory)
    me = host.backend.get_pytest_id().split("://")[-1]
    site = hostvars.get("campus_site")
    found = [
        (runner.get_variables(name).get("campus_site") == site, name, address)
        for name, address in _addresses(runner, "workstations").items()
        if name != me
    ]
    found.sort(key=lambda f: not f[0])
    return [(name, ip) for _, name, ip in found[:PEERS]]


@pytest.fixture(scope="module")
def log_hosts(
    hostvars: dict[str, Any], request: pytest.FixtureRequest
) -> dict[str, tuple[str, Any]]:
    """This PC's campus log hosts: address → (inventory name, testinfra host) to read them.

    A log host the inventory verify runs with does not name is left out: the check then
    says it cannot see what arrived there.
    """
    inventory = request.config.option.ansible_inventory
    wanted = {str(a) for a in hostvars.get("campus_log_hosts") or []}
    if not inventory or not wanted:
        return {}
    runner = AnsibleRunner.get_runner(inventory)
    found = {}
    for name, address in _addresses(runner, "all").items():
        if address in wanted and address not in found:
            found[address] = (name, runner.get_host(name))
    return found


def _addresses(runner: Any, pattern: str) -> dict[str, str]:
    """Host name → ``ansible_host`` for the inventory hosts of ``pattern`` that have one."""
    out = {}
    for name in sorted(runner.get_hosts(pattern)):
        address = runner.get_variables(name).get("ansible_host")
        if address:
            out[name] = str(address)
    return out


def family_enabled(hostvars: dict[str, Any], family: str) -> None:
    """Skip as not applicable when the spec switched the control's family off."""
    families = hostvars.get("campus_control_families", {})
    if families.get(family.lower()) is False:
        pytest.skip(f"not applicable: the {family} family is switched off in the spec")


def not_applicable(reason: str) -> None:
    """Mark the control not applicable on this host, with the reason."""
    pytest.skip(f"not applicable: {reason}")


def probe_failed(why: str) -> NoReturn:
    """End the check as an *error*: its probe could not run, so an absence proves nothing."""
    pytest.fail(f"probe error: {why}; what it did not see is not a pass", pytrace=False)


CONTROL_UNIT = "ssh.service"  # we are logged in over SSH: it must read as active


def unit_states(evidence: Evidence, units: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Each unit's (ActiveState, UnitFileState), read in one ``systemctl show``.

    Its positive control is sshd's unit in the same call: it must read as active, so a
    ``systemctl`` that is missing, refused or talking to no manager is an error, not a
    row of "inactive" units. A unit that is not installed reads (inactive, "").
    """
    shown = evidence.run(
        "systemctl show --property=Id,ActiveState,UnitFileState "
        + " ".join(quote(u) for u in (CONTROL_UNIT, *units))
    )
    blocks = [
        dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        for block in shown.stdout.strip().split("\n\n")
    ]
    if shown.rc != 0 or len(blocks) != len(units) + 1:
        probe_failed(f"systemctl show did not answer for every unit (exit {shown.rc})")
    if blocks[0].get("ActiveState") != "active":
        probe_failed(f"systemctl does not see {CONTROL_UNIT} active, though we came in over SSH")
    return {
        unit: (block.get("ActiveState", ""), block.get("UnitFileState", ""))
        for unit, block in zip(units, blocks[1:], strict=True)
    }


def listening_ports(evidence: Evidence) -> list[str]:
    """The local ``address:port`` of each listening TCP socket (``ss -H -tln``).

    Its positive control: sshd's port 22 must be among them (we came in over it).
    """
    listing = evidence.run("ss -H -tln")
    ports = [f[3] for line in listing.stdout.splitlines() if len(f := line.split()) >= 4]
    if listing.rc != 0 or not any(p.rpartition(":")[2] == "22" for p in ports):
        probe_failed(f"ss does not list sshd's port 22 (exit {listing.rc})")
    return ports


def active_lines(text: str) -> list[str]:
    """The lines of a configuration that do something: no blanks, no ``#`` comments."""
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def names_address(lines: list[str], address: str) -> bool:
    """Whether a line names ``address`` whole (10.0.0.1 is not in 10.0.0.11)."""
    pattern = re.compile(rf"(?<![\w.:-]){re.escape(address)}(?![\w.:-])")
    return any(pattern.search(line) for line in lines)


def pytest_configure(config: pytest.Config) -> None:
    # Under xdist, reports reach the controller too: only the controller records them.
    _ROLE["worker"] = hasattr(config, "workerinput")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    status = {"passed": "pass", "skipped": "not_applicable"}.get(report.outcome, "fail")
    if (
        report.outcome == "failed"
        and call.excinfo is not None
        and not call.excinfo.errisinstance(AssertionError)
    ):
        status = "error"
    match = _CONTROL_RE.search(item.name)
    control = match.group(1).replace("_", "-") if match else item.name
    host = getattr(item, "callspec", None)
    host_name = ""
    if host is not None and "_testinfra_host" in host.params:
        host_name = host.params["_testinfra_host"].backend.get_pytest_id().split("://")[-1]
    recorded = item.stash.get(_EVIDENCE, None)
    report.user_properties.append(("evidence", recorded.text() if recorded else ""))
    report.user_properties.append(("campus_status", status))
    report.user_properties.append(("campus_control", control))
    report.user_properties.append(("campus_host", host_name))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if "campus_status" not in props or props.get("campus_logged"):
        return
    if report.when == "teardown":
        return
    path = os.environ.get("CAMPUS_VERIFY_RESULTS")
    if not path or _ROLE["worker"]:
        return
    message = ""
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.outcome == "failed":
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr).splitlines()[-1]
        message = message.removeprefix("AssertionError: ").removeprefix("Failed: ")
    record = {
        "host": props["campus_host"],
        "control": props["campus_control"],
        "status": props["campus_status"],
        "message": message.split("\nassert ")[0].strip(),
        "evidence": props.get("evidence", ""),
        "duration": report.duration,
        "nodeid": report.nodeid,
    }
    with open(path, "a", encoding="utf-8") as fh:  # noqa: PTH123 - one short append
        fh.write(json.dumps(record) + "\n")
