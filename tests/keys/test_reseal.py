"""Key files sealed at the old scrypt cost (2^15) still open, and writes re-seal them.

These run at the production cost (``scrypt_cost``): the point is what today's cost is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.keys import sealed
from campus_provision.keys.signing import KEY_FILE, init_signing_key, load_signing_key
from campus_provision.keys.volumes import VolumeKeystore, reseal_keys_dir
from tests.conftest import snapshot
from tests.keys.conftest import OTHER_PASSPHRASE, PASSPHRASE

OLD_N = 2**15

pytestmark = pytest.mark.scrypt_cost


def kdf(path: Path) -> dict[str, object]:
    kdf_params: dict[str, object] = json.loads(path.read_text())["kdf"]
    return kdf_params


def meta(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return sealed.read_envelope(data, purpose=json.loads(data)["purpose"], source=path)["meta"]


@pytest.fixture
def old_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, bytes]:
    """A keys dir as the previous version left it: signing key and one volume key at 2^15."""
    keys_dir = tmp_path / "keys"
    with monkeypatch.context() as m:
        m.setattr(sealed, "SCRYPT_N", OLD_N)
        init_signing_key(keys_dir, PASSPHRASE)
        store = VolumeKeystore(keys_dir, PASSPHRASE)
        key = store.create("h1/ds1")
        secret = store.secret("h1/ds1", key.key_id)
    assert store.resealed is not None and store.resealed.files == ()  # nothing was older
    assert sealed.SCRYPT_N >= 2**17
    assert kdf(key.path)["n"] == kdf(keys_dir / KEY_FILE)["n"] == OLD_N
    return keys_dir, key.path, secret


def test_old_files_open_and_read_only_commands_leave_them(
    old_keys: tuple[Path, Path, bytes], cli: Callable[..., Result], tmp_path: Path
) -> None:
    keys_dir, _, secret = old_keys
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    before = snapshot(keys_dir)
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    (key,) = store.keys("h1/ds1")
    assert store.secret("h1/ds1", key.key_id) == secret
    load_signing_key(keys_dir, PASSPHRASE)
    for args in (["keys", "check"], ["keys", "volumes"], ["keys", "show"]):
        result = cli(*args, "--keys-dir", keys_dir,
                     *(["--passphrase-file", pass_file] if args[1] == "check" else []))  # fmt: skip
        assert result.exit_code == 0, result.output
    assert snapshot(keys_dir) == before


def test_a_write_reseals_every_old_file_at_the_new_cost(
    old_keys: tuple[Path, Path, bytes], cli: Callable[..., Result], tmp_path: Path
) -> None:
    keys_dir, key_file, secret = old_keys
    signing_before = load_signing_key(keys_dir, PASSPHRASE)
    metas = {p: meta(p) for p in (key_file, keys_dir / KEY_FILE)}
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    result = cli("keys", "volume-create", "h2/ds2", "--keys-dir", keys_dir,
                 "--passphrase-file", pass_file)  # fmt: skip
    assert result.exit_code == 0, result.output
    for path in (key_file, keys_dir / KEY_FILE):
        assert kdf(path)["n"] == sealed.SCRYPT_N
        assert meta(path) == metas[path]
        assert path.stat().st_mode & 0o777 == 0o600
        assert f"re-sealed {path}" in result.stdout.replace("\n", "")
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    (key,) = store.keys("h1/ds1")
    assert store.secret("h1/ds1", key.key_id) == secret
    signing_after = load_signing_key(keys_dir, PASSPHRASE)
    assert signing_after.public_key() == signing_before.public_key()


def test_keys_reseal_upgrades_what_it_can_and_names_what_it_cannot(
    tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "keys"
    with monkeypatch.context() as m:
        m.setattr(sealed, "SCRYPT_N", OLD_N)
        init_signing_key(keys_dir, OTHER_PASSPHRASE)  # another passphrase than the volumes'
        key = VolumeKeystore(keys_dir, PASSPHRASE).create("h1/ds1")
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    signing_before = (keys_dir / KEY_FILE).read_bytes()
    result = cli("keys", "reseal", "--keys-dir", keys_dir, "--passphrase-file", pass_file)
    assert result.exit_code == 1, result.output
    assert kdf(key.path)["n"] == sealed.SCRYPT_N
    assert (keys_dir / KEY_FILE).read_bytes() == signing_before
    assert result.stderr.splitlines() == [
        f"warning: left at its old scrypt cost: wrong passphrase for {keys_dir / KEY_FILE}"
    ]
    assert reseal_keys_dir(keys_dir, OTHER_PASSPHRASE).files == (keys_dir / KEY_FILE,)
    again = cli("keys", "reseal", "--keys-dir", keys_dir, "--passphrase-file", pass_file)
    assert again.exit_code == 0, again.output
    assert "is at the current scrypt cost" in again.stdout
