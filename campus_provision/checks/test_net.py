"""NET: nothing leaves a PC but traffic to the spec's campus services; only admin SSH comes in.

These checks really try to connect, from the PC: to an address outside the campus (must
fail) and to each allowed service (must succeed). They do not just read the ruleset.
"""

from __future__ import annotations

import json
from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, probe_failed
from campus_provision.checks.nft import inbound_problems
from campus_provision.shell import ip_address

OUTSIDE_PORTS = (80, 443, 53, 22)
OUTSIDE_UDP_PORTS = (53, 123, 443)  # DNS, NTP, QUIC: the UDP ways out
PEER_PROBES = (("tcp", 22), ("icmp", 0))  # every PC listens on 22: the lateral door to try
CONNECT_SECONDS = 3


Probe = tuple[str, str, int]  # (proto, address, port); port 0 for icmp
# A DNS query (id 0x1234, recursion desired) for the root's NS records, as printf octal
# escapes: a campus resolver answers it, so the UDP probe has a positive control.
DNS_QUERY = "".join(f"\\{b:03o}" for b in bytes.fromhex("1234010000010000000000000000020001"))


def _probe_states(evidence: Evidence, probes: list[Probe]) -> dict[Probe, str]:
    """Each probe's result as seen from the host: ``open``, ``closed`` or ``error``.

    All probes run at once in one shell, so a locked-down PC (every attempt times out)
    costs one timeout, not one per port. Each prints its exit code:

    - tcp (bash ``/dev/tcp`` under ``timeout``): 0 connected; 1 refused, 124 timed out;
    - udp (bash ``/dev/udp``: a DNS query for the root's name servers, which a resolver
      answers and the lab's listeners echo, then one byte of any answer read back):
      0 answered; 1 refused (an ICMP unreachable, or the PC's own firewall), 142 (``read``
      timed out) or 124 no answer;
    - icmp (``ping``): 0 answered; 1 no reply, 2 refused on the way out.

    Anything else (126/127: no ``bash``, ``timeout`` or ``ping``) is an ``error``, and so
    is a probe the shell never reported on.
    """
    if not probes:
        return {}
    closed = {"tcp": ("1", "124"), "udp": ("1", "124", "142"), "icmp": ("1", "2")}
    commands = {
        "tcp": "timeout {t} bash -c 'exec 3<>/dev/tcp/{a}/{p}' 2>/dev/null",
        "udp": "timeout {t1} bash -c 'exec 3<>/dev/udp/{a}/{p} && printf \""
        + DNS_QUERY
        + "\" >&3 && read -r -N 1 -t {t} _ <&3' 2>/dev/null",
        "icmp": "ping -c 1 -W {t} {a} >/dev/null 2>&1",
    }
    for _, address, _ in probes:
        try:  # an IP literal holds no shell syntax: the one check that makes it inert here
            ip_address(address)
        except ValueError as exc:
            probe_failed(f"a probe target {exc}")
    shell = " ".join(
        f"({commands[proto].format(t=CONNECT_SECONDS, t1=CONNECT_SECONDS + 1, a=a, p=p)}; "
        f'echo "$? {proto} {a} {p}") &'
        for proto, a, p in sorted(set(probes))
    )
    result = evidence.run(f"{shell} wait")
    states = dict.fromkeys(probes, "error")
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) != 4 or not words[3].isdigit():
            continue
        code, proto, address, port = words
        key = (proto, address, int(port))
        if key in states:
            states[key] = "open" if code == "0" else "closed" if code in closed[proto] else "error"
    return states


def _tcp(evidence: Evidence, targets: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of ``targets`` accept a TCP connection from the host."""
    states = _probe_states(evidence, [("tcp", a, p) for a, p in targets])
    return {(a, p) for (_, a, p), state in states.items() if state == "open"}


def _campus_services(hostvars: dict[str, Any], proto: str) -> list[Probe]:
    """The PC's allowed ``proto`` services: the positive control of the egress probes."""
    services = hostvars.get("campus_site_services", [])
    found = [
        (proto, str(s["ip"]), int(p["port"]))
        for s in services
        for p in s["ports"]
        if p["proto"] == proto
    ]
    if not found:
        probe_failed(
            f"the spec gives this PC no campus {proto.upper()} service to prove the probe with"
        )
    return sorted(set(found))


def _name(probe: Probe) -> str:
    proto, address, port = probe
    return f"{address} {proto}" if proto == "icmp" else f"{address} {proto}/{port}"


def test_CP_NET_01_outbound_denied_by_default(
    host: Any,
    hostvars: dict[str, Any],
    evidence: Evidence,
    probe_address: str,
    peers: list[tuple[str, str]],
) -> None:
    family_enabled(hostvars, "NET")
    campus = _campus_services(hostvars, "tcp")
    campus_udp = _campus_services(hostvars, "udp")
    outside: list[Probe] = [
        *(("tcp", probe_address, p) for p in OUTSIDE_PORTS),
        *(("udp", probe_address, p) for p in OUTSIDE_UDP_PORTS),
        ("icmp", probe_address, 0),
    ]
    lateral: list[Probe] = [(proto, ip, port) for _, ip in peers for proto, port in PEER_PROBES]
    loopback: Probe = ("icmp", "127.0.0.1", 0)  # ping's own positive control
    states = _probe_states(evidence, [*campus, *campus_udp, *outside, *lateral, loopback])
    problems = []
    out = [p[0] if p[0] == "icmp" else f"{p[0]}/{p[2]}" for p in outside if states[p] == "open"]
    if out:
        problems.append(f"{probe_address} (outside the campus) is reachable: {', '.join(out)}")
    names = {ip: name for name, ip in peers}
    side = [f"{names[p[1]]} {_name(p)}" for p in lateral if states[p] == "open"]
    if side:
        problems.append(f"other PCs are reachable: {', '.join(side)}")
    assert not problems, "; ".join(problems)
    for proto, services in (("TCP", campus), ("UDP", campus_udp)):
        if not any(states[p] == "open" for p in services):
            probe_failed(
                f"the {proto} probe reached none of the PC's campus {proto} services "
                f"({', '.join(_name(p) for p in services)}), its positive control"
            )
    if states[loopback] != "open":
        probe_failed(f"ping did not answer on loopback ({states[loopback]}), its positive control")
    broken = [_name(p) for p in [*outside, *lateral] if states[p] == "error"]
    if broken:
        probe_failed(f"these probes did not run: {', '.join(broken)}")
    answered = [next(_name(p) for p in ps if states[p] == "open") for ps in (campus, campus_udp)]
    evidence.note(
        f"campus services {' and '.join(answered)} and loopback ICMP reached by the same probes; "
        f"{probe_address} (TCP, UDP, ICMP) and {len(peers)} other PC(s) refused or timed out"
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
