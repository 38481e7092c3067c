"""PKG: software comes only from the signed campus mirror, at the spec's versions."""

from __future__ import annotations

import re
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    not_applicable,
    probe_failed,
)
from campus_provision.shell import quote

# Source options that switch apt's signature check off or down (deb822 field, one-line option).
INSECURE = ("trusted", "allow-insecure", "allow-weak", "allow-downgrade-to-insecure")
# apt settings that do the same for every source.
INSECURE_APT = (
    "APT::Get::AllowUnauthenticated",
    "Acquire::AllowInsecureRepositories",
    "Acquire::AllowWeakRepositories",
    "Acquire::AllowDowngradeToInsecureRepositories",
)
GLOBAL_KEYRINGS = "/etc/apt/trusted.gpg /etc/apt/trusted.gpg.d/*"
_DEB_LINE = re.compile(r"^\s*deb(-src)?\s+(\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)")


def _sources(evidence: Evidence) -> list[tuple[str, str, str]]:
    """(file, uri, options) for every active apt source, one-line and deb822 styles."""
    found: list[tuple[str, str, str]] = []
    listing = evidence.run(
        "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; "
        'do [ -f "$f" ] && { echo "==> $f"; cat "$f"; }; done'
    )
    current = ""
    stanza: dict[str, str] = {}

    def flush() -> None:
        if stanza.get("uris") and stanza.get("enabled", "yes").lower() != "no":
            opts = " ".join(
                f"{key}={stanza[key].lower() if key in INSECURE else stanza[key]}"
                for key in ("signed-by", *INSECURE)
                if key in stanza
            )
            for uri in stanza["uris"].split():
                found.append((current, uri, opts))
        stanza.clear()

    for line in listing.stdout.splitlines():
        if line.startswith("==> "):
            flush()
            current = line[4:]
            continue
        if current.endswith(".sources"):
            if not line.strip():
                flush()
            elif ":" in line and not line.startswith((" ", "#")):
                key, _, value = line.partition(":")
                stanza[key.strip().lower()] = value.strip()
            continue
        match = _DEB_LINE.match(line)
        if match:
            found.append((current, match["uri"], match["opts"] or ""))
    flush()
    return found


def test_CP_PKG_01_sources_are_the_signed_campus_mirror(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "PKG")
    mirror = hostvars.get("campus_mirror_url")
    assert mirror, "the spec names no mirror this host can reach"
    sources = _sources(evidence)
    assert sources, "no apt source is configured at all"
    problems = []
    for file, uri, opts in sources:
        if uri.rstrip("/") != mirror.rstrip("/") and not uri.startswith(mirror):
            problems.append(f"{file}: {uri} is not the campus mirror {mirror}")
        elif weak := [
            o
            for o in opts.split()
            if o.split("=")[0] in INSECURE and o.split("=")[-1] in ("yes", "true", "1")
        ]:
            problems.append(f"{file}: {uri} is marked {' '.join(weak)} (signature check off)")
        elif "signed-by=" not in opts:
            problems.append(f"{file}: {uri} has no signed-by= archive key")
    problems += _insecure_apt_settings(evidence)
    problems += _global_keys(
        evidence,
        [
            o.split("=", 1)[1]
            for *_, opts in sources
            for o in opts.split()
            if o.startswith("signed-by=")
        ],
    )
    assert not problems, "; ".join(problems)


def _insecure_apt_settings(evidence: Evidence) -> list[str]:
    """apt settings that accept unsigned or weakly signed archives, from ``apt-config dump``."""
    dump = evidence.run("apt-config dump")
    # apt always knows its architecture: a dump without it is no reading of the config.
    if dump.rc != 0 or "APT::Architecture " not in dump.stdout:
        probe_failed(f"apt-config dump did not print apt's configuration (exit {dump.rc})")
    found = []
    for line in dump.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in INSECURE_APT and value.strip('";').lower() in ("1", "yes", "true"):
            found.append(f"apt is configured with {key} {value.strip(';')}")
    return found


def _global_keys(
    evidence: Evidence, signed_by: list[str], globs: str = GLOBAL_KEYRINGS
) -> list[str]:
    """Keys apt trusts for every source (trusted.gpg, trusted.gpg.d) other than the campus key.

    The campus keyring (each source's signed-by file) is hashed in the same command: its
    hash is the positive control, and a global key with the same bytes is no other key.
    """
    files = " ".join(quote(f) for f in sorted(set(signed_by)))
    listing = evidence.run(
        f"for f in {files}; do sha256sum \"$f\" | sed 's/^/campus /'; done; "
        f"for f in {globs}; do "
        '[ -e "$f" ] && sha256sum "$f" | sed "s/^/global /"; done; true'
    )
    campus: set[str] = set()
    global_keys: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        digest, _, path = rest.partition("  ")
        if kind == "campus":
            campus.add(digest)
        elif kind == "global":
            global_keys[path] = digest
    if signed_by and not campus:
        probe_failed("sha256sum could not read the campus archive keyring (its positive control)")
    others = sorted(path for path, digest in global_keys.items() if digest not in campus)
    return [f"apt trusts keys for every source: {', '.join(others)}"] if others else []


def test_CP_PKG_02_profile_software_at_spec_versions(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "PKG")
    packages = hostvars.get("campus_software_packages")
    if not packages:
        not_applicable("this host has no software profile")
    problems = []
    for pkg in packages or []:
        result = evidence.run(f"dpkg-query -W -f '${{Status}}|${{Version}}' {quote(pkg['name'])}")
        status, _, version = result.stdout.partition("|")
        if result.rc != 0 or not status.endswith(" installed"):
            problems.append(f"{pkg['name']} is not installed")
        elif pkg.get("version") and version != pkg["version"]:
            problems.append(f"{pkg['name']} is {version}, the spec pins {pkg['version']}")
    assert not problems, "; ".join(problems)
