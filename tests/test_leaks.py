"""The secrets scan finds a planted secret in every spelling, in files and in ``ps``."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

from campus_provision.bundle.archivekey import ARCHIVE_KEY_FILE, ARCHIVE_PURPOSE
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.sealed import seal
from campus_provision.keys.signing import init_signing_key
from campus_provision.keys.volumes import VolumeKeystore
from tests.leaks import PsSampler, keys_dir_secrets, scan_files

PASSPHRASE = "a passphrase for the leak scan test"  # noqa: S105 - a test fixture


def _keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    init_signing_key(keys, PASSPHRASE)
    archive = b"\x95\x01\x02" + bytes(range(200))  # stands for gpg's exported secret key
    sealed = seal(archive, PASSPHRASE, purpose=ARCHIVE_PURPOSE, meta={"fingerprint": "F" * 40})
    write_atomic(keys / ARCHIVE_KEY_FILE, sealed, 0o600)
    VolumeKeystore(keys, PASSPHRASE).create("sgm-a01/card-spending-2025")
    return keys


def test_every_secret_of_a_keys_dir_is_found_in_every_spelling(tmp_path: Path) -> None:
    secrets = keys_dir_secrets(_keys(tmp_path), PASSPHRASE)
    labels = [s.label for s in secrets]
    assert labels[:3] == ["keystore passphrase", "evidence-signing key",
                          "archive key (OpenPGP secret key)"]  # fmt: skip
    assert sum(label.startswith("volume key sgm-a01/card-spending-2025") for label in labels) == 2
    clean = tmp_path / "artefacts"
    (clean / "run").mkdir(parents=True)
    (clean / "run" / "log.txt").write_text("nothing to see; key id k-0001\n", encoding="utf-8")
    assert scan_files([clean], secrets) == []
    for secret in secrets:
        for how, needle in secret.spellings():
            planted = tmp_path / "planted.log"
            planted.write_bytes(b"before " + needle + b" after")
            leaks = scan_files([planted], secrets)
            assert any(leak.secret == secret.label for leak in leaks), (secret.label, how)
            assert all(s.value not in str(leak).encode() for leak in leaks for s in secrets)


def test_a_secret_in_a_process_argv_is_caught_by_the_ps_sampler(tmp_path: Path) -> None:
    secrets = keys_dir_secrets(_keys(tmp_path), PASSPHRASE)
    volume_key = next(s for s in secrets if s.label.startswith("volume key"))
    sampler = PsSampler(interval=0.1, limit=200).start()
    try:
        for _ in range(100):  # the first snapshot, before the careless command
            if sampler.snapshots:
                break
            time.sleep(0.05)
        assert sampler.snapshots and sampler.scan(secrets) == []
        # What a careless command line would do: the key in argv, for a second.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)",
                                  volume_key.value.decode()])  # fmt: skip
        child.wait(timeout=30)
        time.sleep(0.3)
    finally:
        sampler.stop()
    leaks = sampler.scan(secrets)
    # The key text, and the raw key whose base64 the text is.
    assert {leak.secret for leak in leaks} == {volume_key.label, f"{volume_key.label} (raw)"}
    assert 1 <= len(sampler.snapshots) <= 200
    assert base64.b64decode(volume_key.value)  # a real key, not a stand-in
