"""``campus-provision keys volumes|volume-create|escrow``: listings, prompts, and no secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.keys.volumes import VolumeKeystore, list_volume_keys
from tests.conftest import snapshot
from tests.keys.conftest import OTHER_PASSPHRASE, PASSPHRASE, Sealed

ESCROW = "an escrow passphrase kept in the safe"


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _secrets(keys_dir: Path) -> list[str]:
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    return [store.secret(k.volume_id, k.key_id).decode() for k in list_volume_keys(keys_dir)]


def test_volumes_lists_keys_without_a_passphrase(
    sealed: Sealed, cli: Callable[..., Result]
) -> None:
    result = cli("keys", "volumes", "--keys-dir", sealed.keys_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for key in (sealed.old, sealed.new, sealed.other):
        (line,) = [ln for ln in lines if key.key_id in ln]
        assert key.volume_id in line and key.created in line
        assert ("yes" in line) == (key != sealed.old)
    only = cli("keys", "volumes", "--keys-dir", sealed.keys_dir, "--volume", "h2/ds2")
    assert only.exit_code == 0
    assert sealed.other.key_id in only.stdout and sealed.old.key_id not in only.stdout
    assert not any(s in result.output + only.output for s in _secrets(sealed.keys_dir))


def test_volumes_on_an_empty_keystore_and_a_bad_volume(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    empty = cli("keys", "volumes")
    assert empty.exit_code == 0
    assert f"no volume keys in {tmp_path / 'default-keys'}" in empty.stdout
    bad = cli("keys", "volumes", "--volume", "../etc")
    assert bad.exit_code == 2
    assert "not a hostname" in " ".join(bad.output.split())


def test_volume_create_prompts_twice_for_a_new_keystore_and_says_no_secret(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keys = tmp_path / "keys"
    made = cli("keys", "volume-create", "h1/ds1", "--keys-dir", keys,
               input=f"{PASSPHRASE}\n{PASSPHRASE}\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "Keystore passphrase" in made.output and "Repeat for confirmation" in made.output
    (key,) = VolumeKeystore(keys, PASSPHRASE).keys()
    assert f"volume key {key.key_id} created for h1/ds1" in made.stdout
    # A second key: the passphrase from the environment, proved against the first key.
    again = cli("keys", "volume-create", "h1/ds1", "--keys-dir", keys,
                env={"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE})  # fmt: skip
    assert again.exit_code == 0, again.output
    output = made.output + again.output
    assert PASSPHRASE not in output
    assert not any(s in output for s in _secrets(keys))
    wrong = cli("keys", "volume-create", "h1/ds1", "--keys-dir", keys,
                env={"CAMPUS_KEYSTORE_PASSPHRASE": OTHER_PASSPHRASE})  # fmt: skip
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("wrong passphrase for ")
    assert len(VolumeKeystore(keys, PASSPHRASE).keys()) == 2


def test_escrow_export_then_import_with_passphrase_files(
    sealed: Sealed, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keystore_file = _secret_file(tmp_path / "keystore-pass", PASSPHRASE)
    escrow_file = _secret_file(tmp_path / "escrow-pass", ESCROW)
    out = tmp_path / "campus.escrow"
    exported = cli("keys", "escrow", "export", out, "--keys-dir", sealed.keys_dir,
                   "--passphrase-file", keystore_file,
                   "--escrow-passphrase-file", escrow_file)  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert f"{out}: 3 volume keys escrowed" in exported.stdout
    again = cli("keys", "escrow", "export", out, "--keys-dir", sealed.keys_dir)
    assert again.exit_code == 1
    assert "exists already" in again.stderr and "passphrase" not in again.stdout.lower()

    restored = tmp_path / "restored"
    imported = cli("keys", "escrow", "import", out, "--keys-dir", restored,
                   "--passphrase-file", keystore_file,
                   "--escrow-passphrase-file", escrow_file)  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert f"{out}: 3 volume keys restored into {restored}" in imported.stdout
    secrets = _secrets(sealed.keys_dir)
    assert _secrets(restored) == secrets
    output = exported.output + imported.output
    assert not any(s in output for s in [*secrets, PASSPHRASE, ESCROW])


def test_escrow_export_prompts_and_confirms_the_escrow_passphrase(
    sealed: Sealed, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    out = tmp_path / "campus.escrow"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    mismatch = cli("keys", "escrow", "export", out, "--keys-dir", sealed.keys_dir,
                   input=f"{ESCROW}\nsomething else entirely\n", env=env)  # fmt: skip
    assert mismatch.exit_code != 0
    assert not out.exists()
    result = cli("keys", "escrow", "export", out, "--keys-dir", sealed.keys_dir,
                 input=f"{ESCROW}\n{ESCROW}\n", env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Escrow passphrase" in result.output and "Repeat for confirmation" in result.output
    assert ESCROW not in result.output


def test_escrow_import_with_a_wrong_passphrase_is_one_line(
    sealed: Sealed, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    out = tmp_path / "campus.escrow"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    assert cli("keys", "escrow", "export", out, "--keys-dir", sealed.keys_dir,
               "--escrow-passphrase-file", _secret_file(tmp_path / "e", ESCROW),
               env=env).exit_code == 0  # fmt: skip
    before = snapshot(sealed.keys_dir)
    result = cli("keys", "escrow", "import", out, "--keys-dir", sealed.keys_dir,
                 input="not the escrow passphrase\n", env=env)  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"wrong passphrase for {out}\n"
    assert snapshot(sealed.keys_dir) == before


@pytest.mark.parametrize("option", ["--escrow-passphrase", "--passphrase"])
def test_passphrases_cannot_be_given_as_arguments(
    option: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    result = cli("keys", "escrow", "export", tmp_path / "out", option, ESCROW)
    assert result.exit_code == 2
    assert "No such option" in result.output
