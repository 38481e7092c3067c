"""PKG: software comes only from the signed campus mirror, at the spec's versions."""

from __future__ import annotations

import re
from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable
from campus_provision.shell import quote

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
            opts = f"signed-by={stanza['signed-by']}" if "signed-by" in stanza else ""
            if stanza.get("trusted", "").lower() == "yes":
                opts += " trusted=yes"
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
        elif "trusted=yes" in opts:
            problems.append(f"{file}: {uri} is marked trusted=yes (no signature check)")
        elif "signed-by=" not in opts:
            problems.append(f"{file}: {uri} has no signed-by= archive key")
    assert not problems, "; ".join(problems)


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
