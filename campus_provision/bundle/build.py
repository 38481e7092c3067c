"""``bundle build``: from the spec's software profiles to a signed offline apt repository.

The bundle is assembled in a temporary directory beside ``--out`` and renamed into
place only when complete and signed: a failure at any step (mirror unreachable, a bad
pin, a wrong passphrase) leaves no half-written bundle under the final name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campus_provision.bundle import BundleError, BundleSpecError
from campus_provision.bundle.archivekey import unlocked
from campus_provision.bundle.closure import (
    ARCH,
    COMPONENT,
    MIRROR,
    SUITE,
    AptWorkspace,
    requests_for,
)
from campus_provision.bundle.manifest import (
    ARCHIVE_KEYRING,
    MANIFEST,
    SIGNATURE,
    FileEntry,
    Manifest,
    PackageEntry,
    sha256_file,
    sign,
)
from campus_provision.bundle.repo import scan_debs, write_indices
from campus_provision.bundle.tools import tool
from campus_provision.spec import Campus

# What the roles install on a PC or the mirror, whatever the profiles: the egress
# firewall, audit, volumes, time, logging (and its rotation), AppArmor, AIDE, the console
# password policy; what Ansible's apt module installs on first use (python3-apt and its
# data); nginx, which serves the mirror.
ROLE_PACKAGES: tuple[str, ...] = (
    "nftables",
    "auditd",
    "cryptsetup",
    "fdisk",  # sfdisk: campus_data_volume partitions the data disk
    "acl",  # setfacl: campus_data_volume gives the reader groups read access
    "chrony",
    "rsyslog",
    "logrotate",
    "apparmor",
    "aide",
    "libpam-pwquality",  # campus_accounts: the console password policy (CP-ACC-04)
    "libpwquality-tools",  # pwscore: CP-ACC-04 probes the policy with it
    "cracklib-runtime",  # the dictionary; only recommended, and the closure leaves those out
    "python3-apt",
    "python-apt-common",
    "distro-info-data",
    "nginx",
)


class BuildProgress(Protocol):
    """Where a build reports its phases (the CLI shows them with rich)."""

    def phase(self, name: str, total: int | None) -> None:
        """A new phase begins; ``total`` steps when known."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current phase are done."""


class _Silent:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


@dataclass(frozen=True)
class BuildResult:
    """What a build made: where, and its manifest."""

    out: Path
    manifest: Manifest
    total_bytes: int


def select_profiles(campus: Campus, names: Sequence[str] | None) -> dict[str, list[str]]:
    """The apt spellings of each chosen profile's packages (all profiles when ``names`` is None)."""
    profiles = campus.software_profiles
    chosen = list(profiles) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in profiles]
    if unknown:
        raise BundleSpecError(
            [
                f"--profiles: no software profile {n!r} in the spec "
                f"(it has: {', '.join(sorted(profiles))})"
                for n in unknown
            ]
        )
    return {n: [str(p) for p in profiles[n].packages] for n in chosen}


def build_bundle(
    spec_path: Path,
    campus: Campus,
    out: Path,
    *,
    signing_key: Ed25519PrivateKey,
    keys_dir: Path,
    passphrase: str,
    profiles: Sequence[str] | None = None,
    extras: Sequence[str] = (),
    mirror: str = MIRROR,
    force: bool = False,
    progress: BuildProgress | None = None,
) -> BuildResult:
    """Resolve, download, index and sign a bundle for ``campus`` into ``out``."""
    report = progress or _Silent()
    for name in ("apt-get", "apt-ftparchive", "gpg", "gpgconf"):
        tool(name)
    chosen = select_profiles(campus, profiles)
    _check_out(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        workspace = AptWorkspace(tmp / ".work", mirror)
        requests = requests_for(chosen, ROLE_PACKAGES, extras)
        report.phase("resolve", len(requests) + 1)
        workspace.update()
        report.advance()
        problems: list[str] = []
        closure: set[tuple[str, str]] = set()
        for request in requests:
            try:
                closure.update(workspace.resolve(request))
            except BundleSpecError as exc:
                problems += exc.problems
            report.advance()
        if problems:
            raise BundleSpecError(problems)
        report.phase("download", len(closure))
        for request in requests:
            workspace.download(request, report.advance)
        manifest = assemble(
            tmp,
            workspace.archives,
            signing_key=signing_key,
            keys_dir=keys_dir,
            passphrase=passphrase,
            campus_name=campus.campus.name,
            spec_sha256=hashlib.sha256(spec_path.read_bytes()).hexdigest(),
            profiles=list(chosen),
            extras=list(extras),
            progress=report,
        )
        got = {(p.name, p.version) for p in manifest.packages}
        if missing := sorted(closure - got):
            raise BundleError(
                f"apt resolved but did not download {len(missing)} packages, e.g. "
                f"{missing[0][0]}={missing[0][1]}"
            )
        shutil.rmtree(tmp / ".work")
        _move_into_place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(p.size for p in manifest.packages) + sum(f.size for f in manifest.files)
    return BuildResult(out, manifest, total)


def _check_out(out: Path, force: bool) -> None:
    if not out.parent.is_dir():
        raise BundleError(f"{out.parent}: no such directory for --out")
    if out.exists() and not force:
        raise BundleError(f"{out}: already exists; pass --force to replace it")


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    old: Path | None = None
    if out.exists():
        if not force:
            raise BundleError(f"{out}: appeared while building; not replaced")
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the mirror's web server reads it
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def assemble(
    root: Path,
    debs: Path,
    *,
    signing_key: Ed25519PrivateKey,
    keys_dir: Path,
    passphrase: str,
    campus_name: str,
    spec_sha256: str,
    profiles: Sequence[str],
    extras: Sequence[str] = (),
    progress: BuildProgress | None = None,
) -> Manifest:
    """Turn the .debs in ``debs`` into a signed repository and manifest under ``root``.

    The .debs are moved into ``root/pool``; ``root`` then holds the whole bundle.
    """
    report = progress or _Silent()
    infos = scan_debs(debs)
    report.phase("index", len(infos) + 1)
    packages = []
    for info in infos:
        rel = info.pool_path(COMPONENT)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(info.path, target)
        packages.append(
            PackageEntry(info.name, info.version, info.arch, rel, info.sha256, info.size)
        )
        report.advance()
    dist = write_indices(
        root, suite=SUITE, component=COMPONENT, arch=ARCH, label=f"{campus_name} campus mirror"
    )
    report.advance()
    report.phase("sign", 2)
    with unlocked(keys_dir, passphrase, campus_name) as signer:
        signer.sign_release(dist / "Release")
        (root / ARCHIVE_KEYRING).write_bytes(signer.public_keyring())
        fingerprint = signer.fingerprint
    report.advance()
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("pool/", ".work/")):
            continue
        digest, size = sha256_file(path)
        files.append(FileEntry(rel, digest, size))
    manifest = Manifest(
        suite=SUITE,
        component=COMPONENT,
        arch=ARCH,
        built=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        campus=campus_name,
        spec_sha256=spec_sha256,
        profiles=tuple(profiles),
        extras=tuple(extras),
        archive_key=fingerprint,
        packages=tuple(sorted(packages)),
        files=tuple(files),
    )
    data = manifest.to_bytes()
    (root / MANIFEST).write_bytes(data)
    (root / SIGNATURE).write_bytes(sign(data, signing_key))
    with contextlib.suppress(OSError):
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    report.advance()
    return manifest
