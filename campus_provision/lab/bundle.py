"""The lab's offline bundle: built once per package set, cached, published on the lab mirror.

The lab plays the campus, so it needs what a campus has: a signing key and an archive key
(a lab keystore of its own under the state directory, with a generated passphrase in a
0600 file: lab keys protect nothing real) and a bundle of the software the lab's PCs run.
Building a bundle downloads from Debian's mirror, so it is cached under the state
directory by a hash of what decides its contents (the packages asked for, what the roles
add, the suite, and the keys that sign it); CI rebuilds it only when one of those changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from campus_provision.bundle.build import ROLE_PACKAGES, build_bundle, select_profiles
from campus_provision.bundle.closure import ARCH, MIRROR, SUITE
from campus_provision.bundle.manifest import MANIFEST
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.passphrase import read_passphrase_file
from campus_provision.keys.signing import (
    KEY_FILE,
    PUB_FILE,
    fingerprint,
    init_signing_key,
    load_public_key,
    load_signing_key,
)
from campus_provision.lab.plan import LabPlan

FORMAT = "lab-bundle-v1"
PASSPHRASE_FILE = "passphrase"  # noqa: S105 - a file name; the passphrase is generated


@dataclass(frozen=True)
class LabKeys:
    """The lab's keystore: its directory, passphrase file and signing public key."""

    directory: Path
    passphrase_file: Path

    @property
    def pubkey(self) -> Path:
        return self.directory / PUB_FILE

    def passphrase(self) -> str:
        return read_passphrase_file(self.passphrase_file)


def lab_keys(state_dir: Path) -> LabKeys:
    """The lab keystore under ``state_dir`` (made on first use; kept across labs)."""
    directory = state_dir / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    passphrase_file = directory / PASSPHRASE_FILE
    if not passphrase_file.exists():
        write_atomic(passphrase_file, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
    # The lab's own generated file: kept 0600 (every reader refuses one others may open).
    passphrase_file.chmod(0o600)
    keys = LabKeys(directory, passphrase_file)
    if not (directory / KEY_FILE).exists():
        init_signing_key(directory, keys.passphrase())
    return keys


def lab_profiles(plan: LabPlan) -> list[str]:
    """The software profiles of the lab's PCs (a bundle needs only those)."""
    return sorted({w.profile for w in plan.campus.workstations})


def bundle_key(plan: LabPlan, keys: LabKeys, mirror: str = MIRROR) -> str:
    """What decides a lab bundle's contents, hashed: the cache key."""
    chosen = select_profiles(plan.campus, lab_profiles(plan))
    h = hashlib.sha256()
    parts = [FORMAT, SUITE, ARCH, mirror, ",".join(ROLE_PACKAGES)]
    parts += [f"{name}:{','.join(packages)}" for name, packages in sorted(chosen.items())]
    parts.append(fingerprint(load_public_key(keys.pubkey)))
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_bundle(
    spec: Path,
    plan: LabPlan,
    state_dir: Path,
    *,
    mirror: str = MIRROR,
    progress: Callable[[str], None] | None = None,
) -> tuple[Path, LabKeys, bool]:
    """The cached bundle for ``plan`` (built if needed), its keys, and whether it was built."""
    say = progress or (lambda _: None)
    keys = lab_keys(state_dir)
    key = bundle_key(plan, keys, mirror)
    out = state_dir / "bundles" / key
    with _locked(state_dir / "bundles" / f"{key}.lock"):
        if (out / MANIFEST).is_file():
            say(f"bundle {key}: cached ({out})")
            return out, keys, False
        profiles = lab_profiles(plan)
        say(f"bundle {key}: building for profiles {', '.join(profiles)} from {mirror}")
        passphrase = keys.passphrase()
        build_bundle(
            spec,
            plan.campus,
            out,
            signing_key=load_signing_key(keys.directory, passphrase),
            keys_dir=keys.directory,
            passphrase=passphrase,
            profiles=profiles,
            mirror=mirror,
            force=out.exists(),
        )
    return out, keys, True
