"""Secrets scans: every secret of a keys directory, in every spelling, looked for everywhere.

The secrets are what a campus must never let out of its keystore: the keystore passphrase,
the evidence-signing key, the archive key (the OpenPGP key apt trusts) and every volume key.
Each is looked for as it is, in hex and in base64 (and, for text keys, the hex and base64 of
the text), so a key that was encoded on its way into a log is found too.

The places are files (run directories, evidence, inventories, journals, captured output)
and ``ps`` snapshots taken while the runs went on: :class:`PsSampler` takes them in a
thread, a bounded number of times, from the controller, which sees every process of the
lab's containers too (they share its kernel).
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from campus_provision.bundle.archivekey import ARCHIVE_KEY_FILE, ARCHIVE_PURPOSE
from campus_provision.keys.sealed import unseal
from campus_provision.keys.signing import load_signing_key
from campus_provision.keys.volumes import VolumeKeystore

# Shorter needles than this match by chance in large binary files.
MIN_NEEDLE = 16


@dataclass(frozen=True)
class Secret:
    label: str  # what it is, never the secret itself
    value: bytes

    def spellings(self) -> list[tuple[str, bytes]]:
        b64 = base64.b64encode(self.value)
        found = [("raw", self.value), ("hex", self.value.hex().encode()), ("base64", b64),
                 ("base64 (unpadded)", b64.rstrip(b"="))]  # fmt: skip
        return [(how, s) for how, s in found if len(s) >= MIN_NEEDLE]


@dataclass(frozen=True)
class Leak:
    where: str
    secret: str
    spelling: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.spelling}) in {self.where}"


def keys_dir_secrets(keys_dir: Path, passphrase: str) -> list[Secret]:
    """Every secret a keys directory holds, unsealed: passphrase, signing, archive, volumes."""
    found = [Secret("keystore passphrase", passphrase.encode())]
    signing = load_signing_key(keys_dir, passphrase).private_bytes_raw()
    found.append(Secret("evidence-signing key", signing))
    archive = keys_dir / ARCHIVE_KEY_FILE
    if archive.exists():
        secret = unseal(archive.read_bytes(), passphrase, purpose=ARCHIVE_PURPOSE, source=archive)
        found.append(Secret("archive key (OpenPGP secret key)", secret))
    store = VolumeKeystore(keys_dir, passphrase)
    for key in store.keys(volume_id=None):
        text = store.secret(key.volume_id, key.key_id)
        label = f"volume key {key.volume_id} {key.key_id}"
        found += [Secret(label, text), Secret(f"{label} (raw)", base64.b64decode(text))]
    return found


def scan_bytes(where: str, data: bytes, secrets: Iterable[Secret]) -> list[Leak]:
    return [
        Leak(where, s.label, how)
        for s in secrets
        for how, needle in s.spellings()
        if needle in data
    ]


def scan_files(roots: Iterable[Path], secrets: Iterable[Secret]) -> list[Leak]:
    """Leaks in every regular file under ``roots`` (symlinks not followed)."""
    wanted = list(secrets)
    leaks: list[Leak] = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and not path.is_symlink():
                leaks += scan_bytes(str(path), path.read_bytes(), wanted)
    return leaks


@dataclass
class PsSampler:
    """``ps`` snapshots every ``interval`` s while it runs, at most ``limit`` of them."""

    interval: float = 0.5
    limit: int = 20000
    snapshots: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while len(self.snapshots) < self.limit and not self._stop.is_set():
            done = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True,
                                  timeout=30, check=False)  # fmt: skip
            self.snapshots.append(done.stdout)
            self._stop.wait(self.interval)

    def start(self) -> PsSampler:
        self._thread = threading.Thread(target=self._run, name="ps-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def scan(self, secrets: Iterable[Secret]) -> list[Leak]:
        wanted = list(secrets)
        return [
            leak
            for i, snap in enumerate(self.snapshots)
            for leak in scan_bytes(f"ps snapshot {i}", snap, wanted)
        ]
