"""``bundle verify``: is this bundle exactly what the campus key signed, and will apt trust it?

Each problem is one line: a file missing, extra or altered (against ``bundle.json``), a
signature that does not verify (``bundle.json.sig`` with the campus Ed25519 key, the
Release signatures with the bundle's archive key), or an index that disagrees with the
Release file or the pool.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from campus_provision.bundle.archivekey import verify_signatures
from campus_provision.bundle.manifest import (
    ARCHIVE_KEYRING,
    MANIFEST,
    SIGNATURE,
    Manifest,
    read_manifest,
    sha256_file,
    signature_ok,
)
from campus_provision.bundle.repo import parse_stanzas, release_hashes


def verify_bundle(root: Path, pub: Ed25519PublicKey) -> tuple[Manifest, list[str]]:
    """The manifest and every problem found in the bundle at ``root`` (none: it is intact)."""
    data, manifest = read_manifest(root)
    problems: list[str] = []
    sig = root / SIGNATURE
    if not sig.exists():
        problems.append(f"missing: {SIGNATURE} (the manifest is not signed)")
    elif not signature_ok(data, sig.read_bytes(), pub):
        problems.append(f"{MANIFEST}: the signature does not verify with the campus signing key")
    expected = {p.filename: (p.sha256, p.size) for p in manifest.packages}
    expected.update({f.path: (f.sha256, f.size) for f in manifest.files})
    for rel, (digest, size) in sorted(expected.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
            continue
        got_digest, got_size = sha256_file(path)
        if (got_digest, got_size) != (digest, size):
            problems.append(
                f"altered: {rel} (sha256 {got_digest[:16]}…, {got_size} bytes; "
                f"signed {digest[:16]}…, {size} bytes)"
            )
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    problems += [f"extra: {rel}" for rel in sorted(present - set(expected) - {MANIFEST, SIGNATURE})]
    problems += _apt_problems(root, manifest)
    return manifest, problems


def _apt_problems(root: Path, manifest: Manifest) -> list[str]:
    """What apt on a PC would refuse: bad signatures, indices that disagree."""
    dist = root / "dists" / manifest.suite
    keyring = root / ARCHIVE_KEYRING
    release = dist / "Release"
    if not keyring.is_file() or not release.is_file():
        return []  # already named as missing
    problems: list[str] = []
    if not (dist / "InRelease").exists() and not (dist / "Release.gpg").exists():
        problems.append(
            f"dists/{manifest.suite}: neither InRelease nor Release.gpg: apt refuses it"
        )
    problems += verify_signatures(dist, keyring)
    hashes = release_hashes(release.read_text(encoding="utf-8", errors="replace"))
    packages_rel = f"{manifest.component}/binary-{manifest.arch}/Packages"
    if packages_rel not in hashes:
        problems.append(f"dists/{manifest.suite}/Release: does not list {packages_rel}")
    for rel, (digest, size) in sorted(hashes.items()):
        path = dist / rel
        if path.is_file() and sha256_file(path) != (digest, size):
            problems.append(f"dists/{manifest.suite}/{rel}: does not match its hash in Release")
    packages = dist / packages_rel
    if packages.is_file():
        pool = {p.filename: p.sha256 for p in manifest.packages}
        listed = {
            st.get("Filename", ""): st.get("SHA256", "")
            for st in parse_stanzas(packages.read_text(encoding="utf-8", errors="replace"))
        }
        for rel in sorted(set(pool) - set(listed)):
            problems.append(f"dists/{manifest.suite}/{packages_rel}: does not list {rel}")
        for rel, digest in sorted(listed.items()):
            if rel not in pool:
                problems.append(f"dists/{manifest.suite}/{packages_rel}: lists unsigned {rel}")
            elif pool[rel] != digest:
                problems.append(f"dists/{manifest.suite}/{packages_rel}: wrong SHA256 for {rel}")
    return problems
