"""SSH host keys, one ``known_hosts`` per inventory, checked on every connection.

Module arguments (LUKS keys among them) go to whatever answers at a PC's address, so a
run must know the PC by its host key. Each inventory keeps its own ``known_hosts`` beside
its ``hosts.yml`` (two inventories may use the same addresses: the lab's and a campus's),
and every SSH connection of provision, verify and the volume commands is made with
``StrictHostKeyChecking=yes`` against it: an unknown or changed key stops that host, with
ssh's words and :func:`hint`'s.

IT staff add a PC's key with ``campus-provision hosts trust`` after comparing the
fingerprints it shows with the PC's own (its console, or the installer's record). The lab
records its hosts' keys itself when it starts them (its own private namespaces).
"""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from pathlib import Path

from campus_provision.errors import HostKeyError
from campus_provision.keys.atomic import write_atomic
from campus_provision.spec import Campus

KNOWN_HOSTS = "known_hosts"
SCAN_SECONDS = 5
_FAILED = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED")


def known_hosts_file(inventory: Path) -> Path:
    """The ``known_hosts`` of an inventory (its ``hosts.yml``, or its directory).

    Absolute, without resolving links: the inventory's own directory, wherever its files
    point to.
    """
    path = inventory if inventory.is_absolute() else Path.cwd() / inventory
    return (path.parent if path.suffix in (".yml", ".yaml") else path) / KNOWN_HOSTS


def ssh_options(inventory: Path) -> list[str]:
    """The ssh options every connection to a host of ``inventory`` is made with."""
    return [
        "-o",
        f"UserKnownHostsFile={known_hosts_file(inventory)}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]


def hint(message: str, inventory: Path) -> str | None:
    """What to do when ssh refused a host over its key (None: it did not)."""
    if not any(words in message for words in _FAILED):
        return None
    return (
        f"its SSH host key is not in {known_hosts_file(inventory)}, or has changed: compare "
        "the PC's key fingerprint with 'campus-provision hosts trust SPEC --limit HOST', "
        "which records it"
    )


@dataclass(frozen=True)
class ScannedKey:
    """One host key as a host presented it."""

    host: str
    address: str
    line: str  # the known_hosts line: "ADDRESS TYPE BASE64"
    fingerprint: str  # "ED25519 SHA256:..."


def _fingerprint(line: str) -> str:
    done = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line + "\n", text=True,
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    if done.returncode != 0:
        raise HostKeyError(f"ssh-keygen cannot read a scanned key: {done.stderr.strip()}")
    bits, digest, *rest = done.stdout.split()
    return f"{rest[-1].strip('()')} {digest} ({bits} bits)"


def scan(hosts: dict[str, str]) -> list[ScannedKey]:
    """The host keys each host (name → address) presents, read with ``ssh-keyscan``."""
    keys: list[ScannedKey] = []
    for host, address in sorted(hosts.items()):
        done = subprocess.run(
            ["ssh-keyscan", "-T", str(SCAN_SECONDS), "-t", "ed25519,ecdsa,rsa", "--", address],
            capture_output=True, text=True, timeout=SCAN_SECONDS * 4 + 10, check=False,
        )  # fmt: skip
        lines = [ln for ln in done.stdout.splitlines() if ln and not ln.startswith("#")]
        if not lines:
            raise HostKeyError(f"{host} ({address}): no SSH host key could be read (ssh-keyscan)")
        keys += [ScannedKey(host, address, ln, _fingerprint(ln)) for ln in lines]
    return keys


def recorded(inventory: Path) -> list[str]:
    """The lines of the inventory's known_hosts (none when it has none yet)."""
    path = known_hosts_file(inventory)
    try:
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def trust(inventory: Path, keys: list[ScannedKey], *, replace: bool = False) -> list[str]:
    """Record ``keys`` in the inventory's known_hosts; the addresses whose keys changed.

    A key that differs from the one recorded for its address is refused (a HostKeyError
    naming the addresses) unless ``replace``: a changed key is what an attack looks like.
    """
    lines = recorded(inventory)
    by_address: dict[str, set[str]] = {}
    for ln in lines:
        address, _, key = ln.partition(" ")
        by_address.setdefault(address, set()).add(key)
    scanned: dict[str, set[str]] = {}
    for k in keys:
        scanned.setdefault(k.address, set()).add(k.line.partition(" ")[2])
    changed = sorted(a for a, new in scanned.items() if a in by_address and new != by_address[a])
    if changed and not replace:
        raise HostKeyError(
            f"{known_hosts_file(inventory)}: the host keys of {', '.join(changed)} differ from "
            "the recorded ones; if the PCs were reinstalled, check their fingerprints and "
            "run again with --replace"
        )
    kept = [ln for ln in lines if ln.partition(" ")[0] not in scanned]
    text = "\n".join([*kept, *(k.line for k in keys)]) + "\n"
    write_atomic(known_hosts_file(inventory), text.encode(), mode=0o644)
    return changed


def campus_hosts(campus: Campus, limit: str | None = None) -> dict[str, str]:
    """The campus's PCs and service hosts (name → address), those matching ``limit``.

    ``limit`` is comma-separated host names or shell patterns (``sgm-a0*``); one that
    matches nothing is a HostKeyError, so a typo never reads as "nothing to trust".
    """
    every = {w.hostname: str(w.ip) for w in campus.workstations}
    every |= {s.hostname: str(s.ip) for s in campus.services}
    if not limit:
        return every
    chosen: dict[str, str] = {}
    for pattern in (p.strip() for p in limit.split(",") if p.strip()):
        found = {h: a for h, a in every.items() if fnmatch.fnmatchcase(h, pattern)}
        if not found:
            raise HostKeyError(f"--limit {pattern}: no PC or service host of the campus")
        chosen |= found
    return chosen
