"""NET: nothing leaves a PC but traffic to the spec's campus services; only admin SSH comes in.

These checks really try to connect, from the PC: to an address outside the campus (must
fail) and to each allowed service (must succeed). They do not just read the ruleset.
"""

from __future__ import annotations

import json
from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, probe_failed
from campus_provision.checks.nft import inbound_problems

OUTSIDE_PORTS = (80, 443, 53, 22)
CONNECT_SECONDS = 3


def _tcp_states(evidence: Evidence, targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Each target's state as seen from the host: ``open``, ``closed`` or ``error``.

    All probes run at once, so a locked-down PC (every attempt times out) costs one
    timeout, not one per port. Each prints its exit code: 0 connected, 1 refused, 124
    timed out (both ``closed``); anything else (126/127: no ``bash`` or ``timeout``) is an
    ``error``, and so is a target the shell never reported on.
    """
    if not targets:
        return {}
    probes = " ".join(
        f"(timeout {CONNECT_SECONDS} bash -c 'exec 3<>/dev/tcp/{a}/{p}' 2>/dev/null; "
        f'echo "$? {a} {p}") &'
        for a, p in sorted(set(targets))
    )
    result = evidence.run(f"{probes} wait")
    states = dict.fromkeys(targets, "error")
    for line in result.stdout.splitlines():
        code, _, rest = line.partition(" ")
        address, _, port = rest.partition(" ")
        if port.isdigit() and (address, int(port)) in states:
            state = {"0": "open", "1": "closed", "124": "closed"}.get(code, "error")
            states[(address, int(port))] = state
    return states


def _tcp(evidence: Evidence, targets: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of ``targets`` accept a TCP connection from the host."""
    return {t for t, state in _tcp_states(evidence, targets).items() if state == "open"}


def _campus_services(hostvars: dict[str, Any]) -> list[tuple[str, int]]:
    """The PC's allowed TCP services: the positive control of the egress probes."""
    services = hostvars.get("campus_site_services", [])
    found = [
        (str(s["ip"]), int(p["port"])) for s in services for p in s["ports"] if p["proto"] == "tcp"
    ]
    if not found:
        probe_failed("the spec gives this PC no campus TCP service to prove the probe with")
    return sorted(set(found))


def test_CP_NET_01_outbound_denied_by_default(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, probe_address: str
) -> None:
    family_enabled(hostvars, "NET")
    campus = _campus_services(hostvars)
    states = _tcp_states(evidence, [*campus, *((probe_address, p) for p in OUTSIDE_PORTS)])
    reached = [f"tcp/{p}" for p in OUTSIDE_PORTS if states[(probe_address, p)] == "open"]
    # ping proves itself on loopback in the same shell: 0 reply, 1 no reply, else broken.
    ping = evidence.run(
        f'ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; echo "control $?"; '
        f'ping -c 1 -W {CONNECT_SECONDS} {probe_address} >/dev/null 2>&1; echo "outside $?"'
    )
    codes = dict(line.split(" ", 1) for line in ping.stdout.splitlines() if " " in line)
    if codes.get("outside") == "0":
        reached.append("icmp")
    assert not reached, f"{probe_address} (outside the campus) is reachable: {', '.join(reached)}"
    broken = [f"tcp/{p}" for p in OUTSIDE_PORTS if states[(probe_address, p)] == "error"]
    answered = [f"{a}:{p}" for a, p in campus if states[(a, p)] == "open"]
    if not answered:
        probe_failed(
            "the TCP probe reached none of the PC's campus services "
            f"({', '.join(f'{a}:{p}' for a, p in campus)}), its positive control"
        )
    if broken:
        probe_failed(f"the TCP probe did not run for {', '.join(broken)}")
    # 1: no reply; 2: the packet was refused on the way out (nftables' drop answers EPERM)
    if codes.get("control") != "0" or codes.get("outside") not in ("1", "2"):
        probe_failed(
            f"ping did not run as a probe (loopback exit {codes.get('control', 'none')}, "
            f"outside exit {codes.get('outside', 'none')})"
        )
    evidence.note(
        f"campus service {answered[0]} reached by the same probe; "
        f"{probe_address} refused or timed out on every port and ICMP"
    )


def test_CP_NET_02_only_campus_services_reachable(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "NET")
    services = hostvars.get("campus_site_services", [])
    allowed = [(s["ip"], p["port"]) for s in services for p in s["ports"] if p["proto"] == "tcp"]
    # The service hosts' other ports are not on the allowlist: SSH, for one.
    ssh = [(ip, 22) for ip in sorted({s["ip"] for s in services}) if (ip, 22) not in allowed]
    opened = _tcp(evidence, allowed + ssh)
    unreachable = [
        f"{s['name']} {s['ip']}:{p['port']}/tcp"
        for s in services
        for p in s["ports"]
        if p["proto"] == "tcp" and (s["ip"], p["port"]) not in opened
    ]
    hosts = {s["ip"]: s["host"] for s in services}
    leaks = [
        f"{hosts[ip]} {ip}:22/tcp (not a listed service)" for ip, _ in ssh if (ip, 22) in opened
    ]
    udp = [
        f"{s['name']} {p['port']}/udp" for s in services for p in s["ports"] if p["proto"] == "udp"
    ]
    if udp:
        evidence.note(f"UDP services not probed by connect: {', '.join(udp)}")
    problems = [f"unreachable: {', '.join(unreachable)}"] if unreachable else []
    problems += [f"reachable but not allowed: {', '.join(leaks)}"] if leaks else []
    assert not problems, "; ".join(problems)


def test_CP_NET_03_inbound_only_ssh_from_admin_network(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "NET")
    admin = hostvars["campus_admin_network"]
    problems = []
    listening = evidence.run("ss -H -tuln")
    if listening.rc != 0 or not any(
        len(f := line.split()) >= 5 and f[4].rpartition(":")[2] == "22"
        for line in listening.stdout.splitlines()
    ):
        probe_failed(f"ss does not list sshd's port 22 (exit {listening.rc})")
    for line in listening.stdout.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        local = fields[4]
        address, _, port = local.rpartition(":")
        if address.strip("[]").startswith(("127.", "::1")) or address in ("127.0.0.53%lo",):
            continue
        if not (fields[0] == "tcp" and port == "22"):
            problems.append(f"{fields[0]} {local} listens")
    ruleset = evidence.run("nft -j list ruleset")
    try:
        parsed = json.loads(ruleset.stdout)
    except json.JSONDecodeError:
        parsed = None
    if ruleset.rc != 0 or not isinstance(parsed, dict):
        probe_failed(f"nft -j list ruleset gave no ruleset to read (exit {ruleset.rc})")
    problems += inbound_problems(parsed, admin)
    assert not problems, "; ".join(problems)
