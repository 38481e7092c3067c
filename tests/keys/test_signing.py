"""The signing key: sealed at rest, unlocked only by its passphrase, tamper-evident."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from campus_provision.keys import KeyStoreError, atomic
from campus_provision.keys.signing import (
    KEY_FILE,
    PUB_FILE,
    default_keys_dir,
    fingerprint,
    init_signing_key,
    keys_dir_public_key,
    load_public_key,
    load_signing_key,
)

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test fixture


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave files world-writable: modes must not depend on it."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_round_trip_signs_and_verifies_with_the_published_key(keys_dir: Path) -> None:
    info = init_signing_key(keys_dir, PASSPHRASE)
    private = load_signing_key(keys_dir, PASSPHRASE)
    message = b"manifest bytes"
    signature = private.sign(message)
    for source in (keys_dir, keys_dir / PUB_FILE):
        pub = load_public_key(source)
        pub.verify(signature, message)
        assert fingerprint(pub) == info.fingerprint
    assert fingerprint(private.public_key()) == info.fingerprint
    assert len(info.fingerprint) == 16
    int(info.fingerprint, 16)


def test_public_key_file_is_a_fingerprint_comment_and_one_base64_line(keys_dir: Path) -> None:
    info = init_signing_key(keys_dir, PASSPHRASE)
    lines = (keys_dir / PUB_FILE).read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("#") and info.fingerprint in lines[0]
    assert len(base64.b64decode(lines[1], validate=True)) == 32


def test_fingerprint_is_sha256_of_the_raw_public_key() -> None:
    pub = Ed25519PrivateKey.generate().public_key()
    raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert fingerprint(pub) == hashlib.sha256(raw).hexdigest()[:16]


@pytest.mark.scrypt_cost
def test_key_file_format(keys_dir: Path) -> None:
    """At the production cost: scrypt n >= 2^17 with r=8 (128 MiB a derivation)."""
    init_signing_key(keys_dir, PASSPHRASE)
    data = json.loads((keys_dir / KEY_FILE).read_text())
    assert data["format"] == "campus-provision/sealed/v1"
    assert data["purpose"] == "campus-provision signing key v1"
    assert data["kdf"]["name"] == "scrypt"
    assert data["kdf"]["n"] >= 2**17
    assert (data["kdf"]["r"], data["kdf"]["p"]) == (8, 1)
    assert load_signing_key(keys_dir, PASSPHRASE) is not None
    assert len(base64.b64decode(data["kdf"]["salt"])) == 16
    assert data["cipher"]["name"] == "AES-256-GCM"
    assert len(base64.b64decode(data["cipher"]["nonce"])) == 12
    # 32 bytes of key + the 16-byte GCM tag.
    assert len(base64.b64decode(data["ciphertext"])) == 48


def test_a_fresh_salt_and_nonce_every_time(tmp_path: Path) -> None:
    a = json.loads((init_signing_key(tmp_path / "a", PASSPHRASE).key_file).read_text())
    b = json.loads((init_signing_key(tmp_path / "b", PASSPHRASE).key_file).read_text())
    assert a["kdf"]["salt"] != b["kdf"]["salt"]
    assert a["cipher"]["nonce"] != b["cipher"]["nonce"]


def test_neither_the_passphrase_nor_the_private_key_is_in_the_file(keys_dir: Path) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    data = (keys_dir / KEY_FILE).read_bytes()
    raw = load_signing_key(keys_dir, PASSPHRASE).private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    for secret in (PASSPHRASE.encode(), raw, base64.b64encode(raw), raw.hex().encode()):
        assert secret not in data
    assert PASSPHRASE.encode() not in (keys_dir / PUB_FILE).read_bytes()


def test_wrong_passphrase_is_one_clear_line_and_changes_nothing(keys_dir: Path) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    before = {p.name: p.read_bytes() for p in keys_dir.iterdir()}
    with pytest.raises(KeyStoreError) as caught:
        load_signing_key(keys_dir, "not the passphrase at all")
    assert caught.value.lines() == [f"wrong passphrase for {keys_dir / KEY_FILE}"]
    assert caught.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in keys_dir.iterdir()} == before


def _edit_key_file(keys_dir: Path, edit: str) -> None:
    path = keys_dir / KEY_FILE
    data = json.loads(path.read_text())
    if edit == "ciphertext":
        raw = bytearray(base64.b64decode(data["ciphertext"]))
        raw[5] ^= 0x01
        data["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    elif edit == "tag":
        raw = bytearray(base64.b64decode(data["ciphertext"]))
        raw[-1] ^= 0x80
        data["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    elif edit == "nonce":
        raw = bytearray(base64.b64decode(data["cipher"]["nonce"]))
        raw[0] ^= 0x01
        data["cipher"]["nonce"] = base64.b64encode(bytes(raw)).decode()
    elif edit == "public_key":
        other = Ed25519PrivateKey.generate().public_key()
        data["meta"]["public_key"] = base64.b64encode(
            other.public_bytes(Encoding.Raw, PublicFormat.Raw)
        ).decode()
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit", ["ciphertext", "tag", "nonce", "public_key"])
def test_tampered_key_file_fails_its_authentication_tag(keys_dir: Path, edit: str) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    _edit_key_file(keys_dir, edit)
    with pytest.raises(KeyStoreError) as caught:
        load_signing_key(keys_dir, PASSPHRASE)
    (line,) = caught.value.lines()
    assert line.startswith(f"{keys_dir / KEY_FILE}: damaged or tampered with")
    assert "authentication tag" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xff garbage", "not a campus-provision key file (not JSON)"),
        (b'{"format": "other/v9"}', "not a campus-provision key file (format 'other/v9'"),
        (b"[]", "not a campus-provision key file"),
    ],
)
def test_a_file_that_is_not_a_key_file_says_so(
    keys_dir: Path, content: bytes, message: str
) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    (keys_dir / KEY_FILE).write_bytes(content)
    with pytest.raises(KeyStoreError, match="not a campus-provision key file") as caught:
        load_signing_key(keys_dir, PASSPHRASE)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("n", "r"),
    [(2**30, 8), (2**20, 8), (2**19, 16)],  # 128 * n * r: 1 TiB, 1 GiB, 1 GiB of memory
)
def test_a_crafted_scrypt_cost_is_refused_before_any_work(keys_dir: Path, n: int, r: int) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    data = json.loads((keys_dir / KEY_FILE).read_text())
    data["kdf"]["n"], data["kdf"]["r"] = n, r
    (keys_dir / KEY_FILE).write_text(json.dumps(data))
    started = time.monotonic()
    with pytest.raises(KeyStoreError, match="scrypt parameters out of range"):
        load_signing_key(keys_dir, PASSPHRASE)
    assert time.monotonic() - started < 0.5


def test_modes_are_0600_0644_0700_whatever_the_umask(keys_dir: Path, loose_umask: None) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    assert mode(keys_dir) == 0o700
    assert mode(keys_dir / KEY_FILE) == 0o600
    assert mode(keys_dir / PUB_FILE) == 0o644


def test_a_keys_dir_others_can_open_is_refused(keys_dir: Path) -> None:
    keys_dir.mkdir(mode=0o755)
    keys_dir.chmod(0o755)
    with pytest.raises(KeyStoreError, match=r"other users can open this directory \(mode 0755\)"):
        init_signing_key(keys_dir, PASSPHRASE)
    assert list(keys_dir.iterdir()) == []


def test_a_short_passphrase_is_refused(keys_dir: Path) -> None:
    with pytest.raises(KeyStoreError, match="at least 12 characters") as caught:
        init_signing_key(keys_dir, "short")
    assert "short" not in str(caught.value).replace("too short", "")
    assert not keys_dir.exists()


def test_an_existing_key_is_kept_without_force_and_retired_with_it(keys_dir: Path) -> None:
    first = init_signing_key(keys_dir, PASSPHRASE)
    before = (keys_dir / KEY_FILE).read_bytes()
    with pytest.raises(KeyStoreError, match="already exists; pass --force"):
        init_signing_key(keys_dir, PASSPHRASE)
    assert (keys_dir / KEY_FILE).read_bytes() == before

    second = init_signing_key(keys_dir, "another good passphrase", force=True)
    assert second.fingerprint != first.fingerprint
    retired = keys_dir / "retired"
    assert mode(retired) == 0o700
    assert (retired / f"{first.fingerprint}.{KEY_FILE}").read_bytes() == before
    assert mode(retired / f"{first.fingerprint}.{KEY_FILE}") == 0o600
    old = load_public_key(retired / f"{first.fingerprint}.{PUB_FILE}")
    assert fingerprint(old) == first.fingerprint
    assert fingerprint(load_signing_key(keys_dir, "another good passphrase").public_key()) == (
        second.fingerprint
    )


def test_a_failed_write_leaves_the_old_key_and_no_temp_file(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    before = (keys_dir / KEY_FILE).read_bytes()
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        # Fail the write of the new signing.key itself, after its bytes are on disk.
        real_fsync(fd)
        written = Path(f"/proc/self/fd/{fd}").readlink()
        if written.parent == keys_dir and written.name.startswith(f".{KEY_FILE}."):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(KeyStoreError, match="cannot write the signing key: No space left"):
        init_signing_key(keys_dir, PASSPHRASE, force=True)
    monkeypatch.undo()
    assert (keys_dir / KEY_FILE).read_bytes() == before
    load_signing_key(keys_dir, PASSPHRASE)
    leftovers = [p.name for p in keys_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_public_key_from_pem_and_bad_public_keys(tmp_path: Path) -> None:
    pub = Ed25519PrivateKey.generate().public_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    assert fingerprint(load_public_key(pem)) == fingerprint(pub)

    bad = tmp_path / "bad.pub"
    bad.write_text("# comment\nbm90IDMyIGJ5dGVz\n")
    with pytest.raises(KeyStoreError, match="not an Ed25519 public key"):
        load_public_key(bad)
    bad.write_text("not base64 !!\n")
    with pytest.raises(KeyStoreError, match="not base64"):
        load_public_key(bad)
    with pytest.raises(KeyStoreError, match="no such public key file"):
        load_public_key(tmp_path / "absent.pub")


def test_keys_dir_public_key_notices_a_mismatched_signing_pub(keys_dir: Path) -> None:
    init_signing_key(keys_dir, PASSPHRASE)
    other = Ed25519PrivateKey.generate().public_key()
    (keys_dir / PUB_FILE).write_text(
        base64.b64encode(other.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode() + "\n"
    )
    with pytest.raises(KeyStoreError, match="is not the signing key's"):
        keys_dir_public_key(keys_dir)
    (keys_dir / PUB_FILE).unlink()  # e.g. a crash between init's two writes
    assert keys_dir_public_key(keys_dir) == load_signing_key(keys_dir, PASSPHRASE).public_key()


def test_default_keys_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(tmp_path / "k"))
    assert default_keys_dir() == tmp_path / "k"
    monkeypatch.delenv("CAMPUS_KEYS_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_keys_dir() == tmp_path / "cfg" / "campus-provision" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_keys_dir() == Path.home() / ".config" / "campus-provision" / "keys"
