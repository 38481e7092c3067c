"""A directory of .debs turned into an apt repository: pool, Packages, Release.

``apt-ftparchive`` (package apt-utils) writes the indices: the same code Debian's own
small archives use, so apt on the PCs reads exactly what it expects.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from campus_provision.bundle.tools import run

FTPARCHIVE_TIMEOUT = 1800.0


@dataclass(frozen=True)
class DebInfo:
    """The control fields of one .deb that place it in the pool, and its digest."""

    name: str
    version: str
    arch: str
    source: str
    path: Path  # where it is now
    sha256: str
    size: int

    def pool_path(self, component: str) -> str:
        """``pool/<component>/<prefix>/<source>/<name>_<version>_<arch>.deb``, as Debian."""
        prefix = self.source[:4] if self.source.startswith("lib") else self.source[:1]
        version = self.version.split(":", 1)[-1]  # the epoch is not in file names
        return f"pool/{component}/{prefix}/{self.source}/{self.name}_{version}_{self.arch}.deb"


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Debian control stanzas (``Packages``, ``Release``) as dicts; continuation lines kept."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def scan_debs(directory: Path) -> list[DebInfo]:
    """Every .deb directly in ``directory`` with its control fields (one apt-ftparchive run)."""
    text = run(
        ["apt-ftparchive", "packages", "."], cwd=directory, timeout=FTPARCHIVE_TIMEOUT
    ).stdout.decode("utf-8", "replace")
    infos = []
    for st in parse_stanzas(text):
        source = st.get("Source", st["Package"]).split(" ", 1)[0]
        infos.append(
            DebInfo(
                name=st["Package"],
                version=st["Version"],
                arch=st["Architecture"],
                source=source,
                path=directory / st["Filename"].removeprefix("./"),
                sha256=st["SHA256"],
                size=int(st["Size"]),
            )
        )
    return infos


def write_indices(root: Path, *, suite: str, component: str, arch: str, label: str) -> Path:
    """Write ``Packages``, ``Packages.gz`` and ``Release`` for ``root/pool``; return dists/SUITE."""
    dist = root / "dists" / suite
    binary = dist / component / f"binary-{arch}"
    binary.mkdir(parents=True, exist_ok=True)
    packages = run(
        ["apt-ftparchive", "packages", f"pool/{component}"], cwd=root, timeout=FTPARCHIVE_TIMEOUT
    ).stdout
    (binary / "Packages").write_bytes(packages)
    # mtime 0: the same Packages gives the same Packages.gz.
    (binary / "Packages.gz").write_bytes(gzip.compress(packages, 9, mtime=0))
    fields = {
        "Origin": "campus-provision",
        "Label": label,
        "Suite": suite,
        "Codename": suite,
        "Architectures": arch,
        "Components": component,
        "Description": f"{label}: offline {suite} packages for the air-gapped campus",
    }
    options = [f"-oAPT::FTPArchive::Release::{key}={value}" for key, value in fields.items()]
    release = run(
        ["apt-ftparchive", *options, "release", "."], cwd=dist, timeout=FTPARCHIVE_TIMEOUT
    ).stdout
    (dist / "Release").write_bytes(release)
    return dist


def release_hashes(release_text: str) -> dict[str, tuple[str, int]]:
    """``path -> (sha256, size)`` from a Release file's SHA256 field."""
    stanzas = parse_stanzas(release_text)
    if not stanzas or "SHA256" not in stanzas[0]:
        return {}
    hashes: dict[str, tuple[str, int]] = {}
    for line in stanzas[0]["SHA256"].splitlines():
        parts = line.split()
        if len(parts) == 3:
            hashes[parts[2]] = (parts[0], int(parts[1]))
    return hashes
