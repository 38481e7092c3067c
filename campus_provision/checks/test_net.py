"""NET: nothing leaves a PC but traffic to the spec's campus services; only admin SSH comes in.

These checks really try to connect, from the PC: to an address outside the campus (must
fail) and to each allowed service (must succeed). They do not just read the ruleset.
"""

from __future__ import annotations

import json
from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled
from campus_provision.shell import quote

OUTSIDE_PORTS = (80, 443, 53, 22)
CONNECT_SECONDS = 3


def _tcp(evidence: Evidence, targets: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of ``targets`` accept a TCP connection from the host, all probed at once.

    Probes run concurrently so a locked-down PC (every attempt times out) costs one
    timeout, not one per port.
    """
    if not targets:
        return set()
    # Each value is quoted where it enters a shell word, twice for the inner bash -c.
    probes = " ".join(
        f"(timeout {CONNECT_SECONDS} bash -c {quote(f'exec 3<>/dev/tcp/{quote(a)}/{int(p)}')} "
        f"2>/dev/null && echo {quote(f'open {a} {p}')} || echo {quote(f'closed {a} {p}')}) &"
        for a, p in sorted(set(targets))
    )
    result = evidence.run(f"{probes} wait")
    opened = set()
    for line in result.stdout.splitlines():
        state, _, rest = line.partition(" ")
        address, _, port = rest.partition(" ")
        if state == "open":
            opened.add((address, int(port)))
    return opened


def test_CP_NET_01_outbound_denied_by_default(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, probe_address: str
) -> None:
    family_enabled(hostvars, "NET")
    opened = _tcp(evidence, [(probe_address, p) for p in OUTSIDE_PORTS])
    reached = [f"tcp/{p}" for p in OUTSIDE_PORTS if (probe_address, p) in opened]
    if evidence.run(f"ping -c 1 -W {CONNECT_SECONDS} {quote(probe_address)}").rc == 0:
        reached.append("icmp")
    assert not reached, f"{probe_address} (outside the campus) is reachable: {', '.join(reached)}"


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
        rules = json.loads(ruleset.stdout or "{}").get("nftables", [])
    except json.JSONDecodeError:
        rules = []
    inputs = [r["chain"] for r in rules if "chain" in r and r["chain"].get("hook") == "input"]
    if not inputs:
        problems.append("no nftables input chain: inbound traffic is not filtered")
    elif not any(c.get("policy") == "drop" for c in inputs):
        problems.append("no input chain with policy drop")
    elif admin not in ruleset.stdout and admin.split("/")[0] not in ruleset.stdout:
        problems.append(f"the input rules do not restrict SSH to the admin network {admin}")
    assert not problems, "; ".join(problems)
