"""Escrow: every volume key in one bundle under its own passphrase, and back, byte for byte."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from campus_provision.keys import KeyStoreError
from campus_provision.keys.escrow import ESCROW_PURPOSE, export_escrow, import_escrow
from campus_provision.keys.volumes import VolumeKey, VolumeKeystore, list_volume_keys
from tests.conftest import snapshot
from tests.keys.conftest import OTHER_PASSPHRASE, PASSPHRASE, Sealed

ESCROW = "an escrow passphrase kept in the safe"


@pytest.fixture(scope="session")
def bundle(sealed_template: Sealed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session keystore's escrow bundle (every ``sealed`` copy holds the same keys)."""
    out = tmp_path_factory.mktemp("escrow") / "campus.escrow"
    assert export_escrow(VolumeKeystore(sealed_template.keys_dir, PASSPHRASE), out, ESCROW) == 3
    return out


def test_round_trip_restores_every_key_byte_exact(
    sealed: Sealed, bundle: Path, tmp_path: Path
) -> None:
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    envelope = json.loads(bundle.read_text())
    assert envelope["purpose"] == ESCROW_PURPOSE
    assert envelope["meta"]["keys"] == "3"
    source = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    originals = {(k.volume_id, k.key_id): source.secret(k.volume_id, k.key_id)
                 for k in source.keys(None)}  # fmt: skip
    assert not any(text in bundle.read_bytes() for text in originals.values())

    # Restored elsewhere, under another keystore passphrase.
    target = VolumeKeystore(tmp_path / "restored", OTHER_PASSPHRASE)
    assert import_escrow(bundle, ESCROW, target) == 3
    restored = target.keys()
    assert [(k.volume_id, k.key_id, k.created) for k in restored] == [
        (k.volume_id, k.key_id, k.created) for k in list_volume_keys(sealed.keys_dir)
    ]
    assert {(k.volume_id, k.key_id): target.secret(k.volume_id, k.key_id)
            for k in restored} == originals  # fmt: skip
    assert all(stat.S_IMODE(k.path.stat().st_mode) == 0o600 for k in restored)


def test_import_restores_only_what_is_missing(sealed: Sealed, bundle: Path) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    lost = sealed.new.path.read_bytes()
    sealed.new.path.unlink()
    sealed.other.path.unlink()
    assert import_escrow(bundle, ESCROW, store) == 2
    assert store.current("h1/ds1") == sealed.new
    assert store.keys() == [sealed.old, sealed.new, sealed.other]
    assert sealed.new.path.read_bytes() != lost  # resealed: a fresh salt and nonce
    before = snapshot(sealed.keys_dir)
    assert import_escrow(bundle, ESCROW, store) == 0
    assert snapshot(sealed.keys_dir) == before


def test_wrong_escrow_passphrase_is_one_error_and_writes_nothing(
    bundle: Path, tmp_path: Path
) -> None:
    target = VolumeKeystore(tmp_path / "restored", PASSPHRASE)
    with pytest.raises(KeyStoreError, match=f"^wrong passphrase for {bundle}$"):
        import_escrow(bundle, "not the escrow passphrase", target)
    assert not (tmp_path / "restored").exists()


def test_import_refuses_a_conflicting_key_and_writes_nothing(
    sealed: Sealed, bundle: Path, tmp_path: Path
) -> None:
    target = VolumeKeystore(tmp_path / "restored", PASSPHRASE)
    # A different key under the id of one in the bundle (say, from a botched manual restore).
    clash = VolumeKey("h1/ds1", sealed.new.key_id, sealed.new.created, Path("elsewhere"))
    target.restore(clash, base64.b64encode(b"\x07" * 64))
    before = snapshot(tmp_path / "restored")
    with pytest.raises(KeyStoreError, match=r"holds another key than .* not overwritten"):
        import_escrow(bundle, ESCROW, target)
    assert snapshot(tmp_path / "restored") == before


def test_the_escrow_passphrase_must_be_its_own(sealed: Sealed, tmp_path: Path) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    with pytest.raises(KeyStoreError, match="is the keystore passphrase"):
        export_escrow(store, tmp_path / "x.escrow", PASSPHRASE)
    with pytest.raises(KeyStoreError, match="too short"):
        export_escrow(store, tmp_path / "x.escrow", "short")
    assert not (tmp_path / "x.escrow").exists()


def test_export_refuses_an_existing_file_and_an_empty_keystore(
    bundle: Path, sealed: Sealed, tmp_path: Path
) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    before = bundle.read_bytes()
    with pytest.raises(KeyStoreError, match="exists already; choose another file or pass --force"):
        export_escrow(store, bundle, ESCROW)
    assert bundle.read_bytes() == before
    with pytest.raises(KeyStoreError, match="no volume keys to escrow"):
        export_escrow(VolumeKeystore(tmp_path / "empty", PASSPHRASE), tmp_path / "e", ESCROW)


def test_a_volume_key_file_is_not_an_escrow_bundle(sealed: Sealed, tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="holds a key for 'campus-provision volume key v1'"):
        import_escrow(sealed.old.path, ESCROW, VolumeKeystore(tmp_path / "r", PASSPHRASE))
