"""NET: nothing leaves a PC but traffic to the spec's campus services; only admin SSH comes in.

These checks really try to connect, from the PC: to an address outside the campus (must
fail) and to each allowed service (must succeed). They do not just read the ruleset.
"""

from __future__ import annotations

import json
from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled

OUTSIDE_PORTS = (80, 443, 53, 22)
CONNECT_SECONDS = 3


def _tcp(evidence: Evidence, address: str, port: int) -> bool:
    """True when a TCP connection from the host to address:port is established."""
    probe = f"timeout {CONNECT_SECONDS} bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>&1"
    return bool(evidence.run(probe).rc == 0)


def test_CP_NET_01_outbound_denied_by_default(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, probe_address: str
) -> None:
    family_enabled(hostvars, "NET")
    reached = [f"tcp/{p}" for p in OUTSIDE_PORTS if _tcp(evidence, probe_address, p)]
    if evidence.run(f"ping -c 1 -W {CONNECT_SECONDS} {probe_address}").rc == 0:
        reached.append("icmp")
    assert not reached, f"{probe_address} (outside the campus) is reachable: {', '.join(reached)}"


def test_CP_NET_02_only_campus_services_reachable(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "NET")
    services = hostvars.get("campus_site_services", [])
    unreachable, leaks = [], []
    probed_ssh: set[str] = set()
    for svc in services:
        tcp_ports = [p["port"] for p in svc["ports"] if p["proto"] == "tcp"]
        for port in tcp_ports:
            if not _tcp(evidence, svc["ip"], port):
                unreachable.append(f"{svc['name']} {svc['ip']}:{port}/tcp")
        # The service host's other ports are not on the allowlist: SSH, for one.
        if 22 in tcp_ports or svc["ip"] in probed_ssh:
            continue
        probed_ssh.add(svc["ip"])
        if _tcp(evidence, svc["ip"], 22):
            leaks.append(f"{svc['host']} {svc['ip']}:22/tcp (not a listed service)")
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
