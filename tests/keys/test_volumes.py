"""The volume keystore: layout, modes, listing, unsealing, and every way a key fails to open."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import pytest

from campus_provision.keys import KeyStoreError
from campus_provision.keys.sealed import read_envelope, seal
from campus_provision.keys.volumes import (
    KEYFILE_BYTES,
    SECRET_BYTES,
    VOLUME_PURPOSE,
    VolumeKey,
    VolumeKeystore,
    list_volume_keys,
    open_volume_keystore,
    split_volume_id,
    volume_id,
)
from tests.conftest import snapshot
from tests.keys.conftest import OTHER_PASSPHRASE, PASSPHRASE, Sealed


def test_volume_id_joins_safe_names() -> None:
    assert volume_id("sgm-a01", "card-spending-2025") == "sgm-a01/card-spending-2025"
    assert split_volume_id("sgm-a01/card-spending-2025") == ("sgm-a01", "card-spending-2025")


@pytest.mark.parametrize(
    ("hostname", "dataset"),
    [("SGM-A01", "ds"), ("..", "ds"), ("h1", "../ds"), ("h1", "ds/x"), ("-h", "ds"),
     ("h1", "1ds"), ("", "ds"), ("h1", ""), ("h1\n", "ds"), ("h1", "ds\n")],
)  # fmt: skip
def test_volume_id_refuses_unsafe_names(hostname: str, dataset: str) -> None:
    with pytest.raises(KeyStoreError, match="not a"):
        volume_id(hostname, dataset)
    with pytest.raises(KeyStoreError, match="not a"):
        split_volume_id(f"{hostname}/{dataset}")


def test_split_volume_id_wants_a_slash() -> None:
    with pytest.raises(KeyStoreError, match=r"expected <hostname>/<dataset-id>"):
        split_volume_id("h1")


def test_round_trip_gives_cryptsetups_keyfile_and_nothing_in_the_clear(sealed: Sealed) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    secrets = {k.key_id: store.secret(k.volume_id, k.key_id) for k in (sealed.old, sealed.new)}
    assert len(set(secrets.values())) == 2
    for key_id, text in secrets.items():
        assert len(text) == KEYFILE_BYTES and text.isascii() and not text.endswith(b"\n")
        assert len(base64.b64decode(text, validate=True)) == SECRET_BYTES
        path = sealed.keys_dir / "volumes" / "h1" / "ds1" / f"{key_id}.key"
        assert text not in path.read_bytes()
        assert text.decode() not in repr(store) + repr(sealed.new)
    assert PASSPHRASE not in repr(store)
    assert re.fullmatch(r"vk-\d{8}T\d{6}Z-[0-9a-f]{8}", sealed.new.key_id)
    assert sealed.new.path == sealed.keys_dir / "volumes/h1/ds1" / f"{sealed.new.key_id}.key"
    meta = read_envelope(sealed.new.path.read_bytes(), purpose=VOLUME_PURPOSE,
                         source=sealed.new.path)["meta"]  # fmt: skip
    assert meta == {"volume_id": "h1/ds1", "key_id": sealed.new.key_id,
                    "created": sealed.new.created}  # fmt: skip


def test_key_files_are_0600_in_0700_directories(sealed: Sealed) -> None:
    paths = [sealed.keys_dir, *sealed.keys_dir.rglob("*")]
    assert len([p for p in paths if p.is_file()]) == 3
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_listing_needs_no_passphrase_oldest_first(sealed: Sealed) -> None:
    listed = list_volume_keys(sealed.keys_dir)
    assert listed == [sealed.old, sealed.new, sealed.other]
    assert [k.created for k in listed] == sorted(k.created for k in listed)
    store = VolumeKeystore(sealed.keys_dir, "not the passphrase at all")
    assert store.keys("h1/ds1") == [sealed.old, sealed.new]
    assert store.keys("h2/ds2") == [sealed.other]
    assert store.keys("h3/ds1") == []
    assert store.current("h1/ds1") == sealed.new
    assert store.current("h9/ds9") is None
    assert list_volume_keys(sealed.keys_dir / "nowhere") == []


def test_wrong_passphrase_is_one_error_and_changes_nothing(sealed: Sealed) -> None:
    store = VolumeKeystore(sealed.keys_dir, OTHER_PASSPHRASE)
    before = snapshot(sealed.keys_dir)
    for attempt in (
        lambda: store.secret("h1/ds1", sealed.old.key_id),
        lambda: store.create("h1/ds1"),
        lambda: store.remove("h1/ds1", sealed.new.key_id),
    ):
        with pytest.raises(KeyStoreError, match=r"^wrong passphrase for .*\.key$") as caught:
            attempt()
        assert OTHER_PASSPHRASE not in str(caught.value)
    assert snapshot(sealed.keys_dir) == before


def test_tampered_ciphertext_names_the_file(sealed: Sealed) -> None:
    envelope = json.loads(sealed.old.path.read_text())
    ciphertext = bytearray(base64.b64decode(envelope["ciphertext"]))
    ciphertext[5] ^= 0x01
    envelope["ciphertext"] = base64.b64encode(ciphertext).decode()
    sealed.old.path.write_text(json.dumps(envelope))
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    with pytest.raises(KeyStoreError) as caught:
        store.secret("h1/ds1", sealed.old.key_id)
    assert str(caught.value).startswith(f"{sealed.old.path}: damaged or tampered with")


def test_a_key_file_moved_to_another_volume_does_not_open(sealed: Sealed) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    stray = sealed.old.path.parent / sealed.other.path.name
    stray.write_bytes(sealed.other.path.read_bytes())
    message = f"{stray}: holds a key of volume 'h2/ds2', not of 'h1/ds1'"
    with pytest.raises(KeyStoreError, match=re.escape(message)):
        store.secret("h1/ds1", sealed.other.key_id)
    with pytest.raises(KeyStoreError, match=re.escape(message)):
        store.keys()
    # Its meta edited to fit the new place, it still fails: the volume id is associated data.
    envelope = json.loads(stray.read_text())
    envelope["meta"]["volume_id"] = "h1/ds1"
    stray.write_text(json.dumps(envelope))
    with pytest.raises(KeyStoreError, match=re.escape(f"{stray}: damaged or tampered with")):
        store.secret("h1/ds1", sealed.other.key_id)


def test_a_volume_key_is_not_some_other_sealed_secret(sealed: Sealed) -> None:
    meta = {"volume_id": "h1/ds1", "key_id": sealed.old.key_id, "created": sealed.old.created}
    sealed.old.path.write_bytes(seal(b"x" * 64, PASSPHRASE, purpose="something else", meta=meta))
    with pytest.raises(KeyStoreError, match="holds a key for 'something else'"):
        VolumeKeystore(sealed.keys_dir, PASSPHRASE).keys()


def test_create_makes_the_newest_key_current_and_remove_takes_one(sealed: Sealed) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    made = store.create("h1/ds1")
    assert store.current("h1/ds1") == made
    assert store.keys("h1/ds1") == [sealed.old, sealed.new, made]
    store.remove("h1/ds1", made.key_id)
    assert not made.path.exists()
    assert store.keys("h1/ds1") == [sealed.old, sealed.new]
    with pytest.raises(KeyStoreError, match="no such volume key"):
        store.remove("h1/ds1", made.key_id)
    with pytest.raises(KeyStoreError, match="not a volume key id"):
        store.secret("h1/ds1", "../../h2/ds2/x")


def test_create_refuses_a_short_passphrase_or_an_open_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="too short"):
        VolumeKeystore(tmp_path / "k", "short").create("h1/ds1")
    assert not (tmp_path / "k").exists()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(KeyStoreError, match="other users can open this directory"):
        VolumeKeystore(shared, PASSPHRASE).create("h1/ds1")
    assert list(shared.iterdir()) == []


def test_open_volume_keystore_takes_the_passphrase_from_file_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeyStoreError) as caught:
        open_volume_keystore()
    for way in ("--passphrase-file", "CAMPUS_KEYSTORE_PASSPHRASE_FILE",
                "CAMPUS_KEYSTORE_PASSPHRASE"):  # fmt: skip
        assert way in str(caught.value)
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE", OTHER_PASSPHRASE)
    store = open_volume_keystore()
    assert store.keys_dir == tmp_path / "default-keys"
    assert store.uses_passphrase(OTHER_PASSPHRASE)
    env_file, arg_file = tmp_path / "env-pass", tmp_path / "arg-pass"
    env_file.write_text(PASSPHRASE + "\n")
    arg_file.write_text("the one given for this call\nsecond line ignored\n")
    env_file.chmod(0o600)
    arg_file.chmod(0o600)
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", str(env_file))
    assert open_volume_keystore().uses_passphrase(PASSPHRASE)
    store = open_volume_keystore(tmp_path / "k", arg_file)
    assert store.keys_dir == tmp_path / "k"
    assert store.uses_passphrase("the one given for this call")
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", str(tmp_path / "missing"))
    with pytest.raises(KeyStoreError, match="cannot read the passphrase file"):
        open_volume_keystore()


def test_restore_refuses_to_replace_a_key_file(sealed: Sealed) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    key = VolumeKey("h1/ds1", sealed.old.key_id, sealed.old.created, Path("bundle"))
    before = snapshot(sealed.keys_dir)
    with pytest.raises(KeyStoreError, match="exists already"):
        store.restore(key, base64.b64encode(b"k" * 64))
    assert snapshot(sealed.keys_dir) == before
