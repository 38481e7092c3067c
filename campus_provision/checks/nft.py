"""Read an nftables ruleset (``nft -j list ruleset``) for what it lets in, rule by rule.

CP-NET-03 asks what a packet meets, not which strings the ruleset holds: an input chain
with policy drop is only as strict as its accept rules, and one ``tcp dport 22 accept``
without a source match undoes the admin-network restriction above it.

nftables semantics used here: a packet goes through every base chain of its hook, and a
drop anywhere is final, so inbound traffic is restricted when at least one input base
chain drops by policy and accepts only what is listed below.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Any

SAFE_STATES = {"established", "related"}
ND_TYPES = {"nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert"}


@dataclass(frozen=True)
class Chain:
    """An input base chain and what is wrong with it (nothing: it restricts inbound)."""

    name: str  # family table chain
    policy: str
    problems: tuple[str, ...]


def _values(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return list(right) if isinstance(right, list) else [right]


def _network(right: Any) -> IPv4Network | None:
    """The source a match names, as a network (an address is a /32)."""
    try:
        if isinstance(right, dict) and "prefix" in right:
            p = right["prefix"]
            net = ip_network(f"{p['addr']}/{p['len']}", strict=False)
        elif isinstance(right, str):
            net = ip_network(right, strict=False)
        else:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return net if isinstance(net, IPv4Network) else None


def _admits_only_safe(expr: list[dict[str, Any]], admin: IPv4Network, ssh_port: int) -> bool:
    """Whether an accept rule's matches confine it to what NET-03 allows."""
    source = port = False
    for item in expr:
        match = item.get("match")
        if not isinstance(match, dict) or match.get("op") not in ("==", "in"):
            continue
        left, right = match.get("left") or {}, match.get("right")
        meta = left.get("meta", {}).get("key") if isinstance(left, dict) else None
        if meta in ("iif", "iifname") and _values(right) == ["lo"]:
            return True
        if left.get("ct", {}).get("key") == "state" and set(_values(right)) <= SAFE_STATES:
            return True
        payload = left.get("payload", {})
        if payload.get("protocol") == "icmpv6" and payload.get("field") == "type":
            return set(_values(right)) <= ND_TYPES
        if payload.get("protocol") == "ip" and payload.get("field") == "saddr":
            nets = [_network(v) for v in _values(right)]
            source = bool(nets) and all(n is not None and n.subnet_of(admin) for n in nets)
        if payload.get("field") == "dport" and payload.get("protocol") == "tcp":
            port = _values(right) == [ssh_port]
    return source and port


def _describe(rule: dict[str, Any]) -> str:
    comment = f' "{rule["comment"]}"' if rule.get("comment") else ""
    return f"rule {rule.get('handle', '?')}{comment}"


def input_chains(ruleset: dict[str, Any], admin_network: str, ssh_port: int = 22) -> list[Chain]:
    """Every input base chain of ``ruleset`` (parsed ``nft -j`` output) with its problems."""
    admin = IPv4Network(admin_network, strict=False)
    items = ruleset.get("nftables", [])
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in items:
        c = item.get("chain")
        if isinstance(c, dict) and c.get("hook") == "input":
            chains[(c["family"], c["table"], c["name"])] = c
    problems: dict[tuple[str, str, str], list[str]] = {key: [] for key in chains}
    for item in items:
        rule = item.get("rule")
        if not isinstance(rule, dict):
            continue
        key = (rule.get("family"), rule.get("table"), rule.get("chain"))
        if key not in chains:
            continue
        expr = rule.get("expr") or []
        verdicts = [v for v in ("accept", "jump", "goto") for e in expr if v in e]
        if "jump" in verdicts or "goto" in verdicts:
            problems[key].append(f"{_describe(rule)} hands packets to another chain")
        elif "accept" in verdicts and not _admits_only_safe(expr, admin, ssh_port):
            problems[key].append(
                f"{_describe(rule)} accepts traffic beyond SSH from {admin_network}"
            )
    return [
        Chain(" ".join(key), str(c.get("policy", "accept")), tuple(problems[key]))
        for key, c in chains.items()
    ]


def inbound_problems(ruleset: dict[str, Any], admin_network: str, ssh_port: int = 22) -> list[str]:
    """Why inbound traffic is not restricted to SSH from the admin network (empty: it is)."""
    chains = input_chains(ruleset, admin_network, ssh_port)
    if not chains:
        return ["no nftables input chain: inbound traffic is not filtered"]
    dropping = [c for c in chains if c.policy == "drop"]
    if not dropping:
        return ["no input chain with policy drop"]
    if any(not c.problems for c in dropping):
        return []
    return [f"{c.name}: {p}" for c in dropping for p in c.problems]
