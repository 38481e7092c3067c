"""The lab's network: a campus namespace (bridge + router), an outside namespace, host links.

No address is ever placed in the root namespace and nothing links the lab to it: the
controller reaches hosts only through ``ip netns exec <campus> nc``, so lab traffic
cannot leave the namespaces the lab creates.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Interface
from pathlib import Path

from campus_provision.lab.plan import (
    OUTSIDE_HOST,
    OUTSIDE_PORTS,
    OUTSIDE_UDP_PORTS,
    ROUTER_ADMIN,
    UPLINK,
    LabPlan,
    Standin,
)
from campus_provision.lab.proc import run, spawn
from campus_provision.lab.state import LabPaths

BRIDGE = "br0"
BRIDGE_MAC = "02:cb:00:00:ff:00"  # fixed, or the bridge takes its lowest port's MAC


def namespaces() -> set[str]:
    """Names of every network namespace on the machine."""
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()}


def ns_run(ns: str, *cmd: str, check: bool = True) -> str:
    """``ip -n NS`` style helper for commands that take no -n: run inside ``ns``."""
    return run(["ip", "netns", "exec", ns, *cmd], check=check)


def create_campus(paths: LabPaths, plan: LabPlan) -> None:
    """Campus namespace with the LAN bridge (router for every lab network) and the uplink."""
    have = namespaces()
    c, o = paths.campus_ns, paths.outside_ns
    if c in have and o in have:
        return
    for ns in (c, o):
        if ns not in have:
            run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", c, "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge"])
    run(["ip", "-n", c, "addr", "add", str(ROUTER_ADMIN), "dev", BRIDGE])
    for net in plan.networks:
        run(["ip", "-n", c, "addr", "add", f"{net.gateway}/{net.cidr.prefixlen}", "dev", BRIDGE])
    run(["ip", "-n", c, "link", "set", BRIDGE, "up"])
    hosts = list(UPLINK.hosts())
    run(
        [
            "ip",
            "-n",
            c,
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "name",
            "downlink",
            "netns",
            o,
        ]
    )
    run(["ip", "-n", c, "addr", "add", f"{hosts[0]}/{UPLINK.prefixlen}", "dev", "uplink"])
    run(["ip", "-n", o, "addr", "add", f"{hosts[1]}/{UPLINK.prefixlen}", "dev", "downlink"])
    run(["ip", "-n", c, "link", "set", "uplink", "up"])
    run(["ip", "-n", o, "link", "set", "downlink", "up"])
    run(["ip", "-n", c, "route", "add", "default", "via", str(hosts[1])])
    run(["ip", "-n", o, "addr", "add", f"{OUTSIDE_HOST}/32", "dev", "lo"])
    run(["ip", "-n", o, "route", "add", "10.254.0.0/16", "via", str(hosts[0])])
    ns_run(c, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def start_outside(paths: LabPaths) -> int:
    """The outside listeners (TCP 22, 53, 80, 443; UDP 53, 123, 443, echoed)."""
    run_dir = paths.root / "run"
    cmd = [
        "ip",
        "netns",
        "exec",
        paths.outside_ns,
        sys.executable,
        "-m",
        "campus_provision.lab.outside",
    ]
    cmd += ["--lab", str(paths.root) + "/", *(f"--udp={p}" for p in OUTSIDE_UDP_PORTS)]
    # The outside's address is on its loopback: answers must come from it, not the uplink's.
    cmd += [f"--udp-address={OUTSIDE_HOST}"]
    cmd += [str(p) for p in OUTSIDE_PORTS]
    return spawn(cmd, pidfile=run_dir / "outside.pid", log=run_dir / "outside.log")


def standin_pidfile(paths: LabPaths, host: str) -> Path:
    """Where the stand-in listener of service host ``host`` keeps its pid."""
    return paths.root / "run" / f"standin-{host}.pid"


def start_standin(paths: LabPaths, index: int, standin: Standin) -> int:
    """Listeners for a service host's unmanaged services, in that host's own namespace."""
    cmd = ["ip", "netns", "exec", paths.host_ns(index), sys.executable, "-m"]
    cmd += ["campus_provision.lab.outside", "--lab", str(paths.root) + "/"]
    cmd += ["--name", standin.host, *(a for p in standin.udp for a in ("--udp", str(p)))]
    cmd += [str(p) for p in standin.tcp]
    log = paths.root / "run" / f"standin-{standin.host}.log"
    return spawn(cmd, pidfile=standin_pidfile(paths, standin.host), log=log)


def add_host_link(paths: LabPaths, index: int, mac: str, host_ns: str) -> None:
    """A veth from the bridge into the host's own namespace (named eth0 there)."""
    c = paths.campus_ns
    if host_ns not in namespaces():
        run(["ip", "netns", "add", host_ns])
        run(["ip", "-n", host_ns, "link", "set", "lo", "up"])
    peer = f"vh{index}"
    if run(["ip", "-n", c, "link", "show", peer], check=False):
        return
    run(["ip", "-n", c, "link", "add", peer, "type", "veth",
         "peer", "name", "eth0", "netns", host_ns, "address", mac])  # fmt: skip
    run(["ip", "-n", c, "link", "set", peer, "master", BRIDGE, "up"])


def add_tap(paths: LabPaths, index: int) -> str:
    """A tap on the bridge for a VM; returns its name."""
    tap = f"tap{index}"
    c = paths.campus_ns
    if not run(["ip", "-n", c, "link", "show", tap], check=False):
        run(["ip", "-n", c, "tuntap", "add", "dev", tap, "mode", "tap"])
        run(["ip", "-n", c, "link", "set", tap, "master", BRIDGE, "up"])
    return tap


def bridge_port(index: int, driver: str) -> str:
    """The name of host ``index``'s port on the campus bridge (its "switch port")."""
    return f"tap{index}" if driver == "qemu" else f"vh{index}"


def forget_host(paths: LabPaths, address: IPv4Interface) -> None:
    """Flush the router's neighbour entry (a reused IP would stall ~50 s on the old MAC)."""
    if paths.campus_ns in namespaces():
        run(["ip", "-n", paths.campus_ns, "neigh", "flush", "to", str(address.ip)], check=False)


def delete_ns(name: str) -> None:
    """Delete a namespace (its veths go with it)."""
    if name in namespaces():
        run(["ip", "netns", "del", name], check=False)
