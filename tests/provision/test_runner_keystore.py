"""run_playbook hands ansible-playbook the keystore passphrase as a 0600 file, never itself.

ansible-playbook is :mod:`tests.fake_playbook`'s fake, found on PATH; the tests read its dump.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campus_provision.errors import ProvisionError
from campus_provision.keys import PassphraseFileModeError
from campus_provision.keys.passphrase import KeystoreAccess
from campus_provision.provision import run_playbook
from tests.fake_playbook import assert_passphrase_only_as_a_file, install_fake_ansible_playbook

SECRET = "keystore-Passphrase-9c1e77 with spaces"  # noqa: S105 - a test marker


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    playbook = tmp_path / "site.yml"
    playbook.write_text("---\n- hosts: all\n  tasks: []\n", encoding="utf-8")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    pc1:\n", encoding="utf-8")
    return playbook, inventory


def test_a_passphrase_in_the_environment_reaches_the_playbook_as_a_private_file(
    project: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump_file = install_fake_ansible_playbook(tmp_path, monkeypatch)
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE", SECRET)
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", raising=False)
    result = run_playbook(*project, tmp_path / "run")
    assert result.rc == 0
    dump = json.loads(dump_file.read_text())
    given = assert_passphrase_only_as_a_file(dump, SECRET)
    assert dump["dir_mode"] == 0o700
    assert not given.exists() and not given.parent.exists()  # removed after the run


def test_a_typed_passphrase_goes_as_a_file_removed_even_when_the_run_fails(
    project: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump_file = install_fake_ansible_playbook(tmp_path, monkeypatch)
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE", raising=False)
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", raising=False)
    access = KeystoreAccess(keys_dir=tmp_path / "keys", passphrase=SECRET)
    monkeypatch.setenv("FAKE_PLAYBOOK_RC", "4")
    assert run_playbook(*project, tmp_path / "run", keystore=access).rc == 4
    dump = json.loads(dump_file.read_text())
    given = assert_passphrase_only_as_a_file(dump, SECRET)
    assert dump["environ"]["CAMPUS_KEYS_DIR"] == str(tmp_path / "keys")
    assert not given.parent.exists()
    # Stopped by its timeout: an exception out of run_playbook, the file gone all the same.
    monkeypatch.setenv("FAKE_PLAYBOOK_SLEEP", "30")
    with pytest.raises(ProvisionError, match="did not finish within"):
        run_playbook(*project, tmp_path / "run2", keystore=access, timeout=1)
    dump = json.loads(dump_file.read_text())
    assert not Path(dump["file"]).parent.exists()


def test_the_operators_own_file_is_passed_as_it_is(
    project: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump_file = install_fake_ansible_playbook(tmp_path, monkeypatch)
    own = tmp_path / "own-pass"
    own.write_text(SECRET + "\n")
    own.chmod(0o600)
    # Given for the command wins over the environment's file and passphrase.
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE", "another passphrase entirely")
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", str(tmp_path / "elsewhere"))
    run_playbook(*project, tmp_path / "run", keystore=KeystoreAccess(passphrase_file=own))
    dump = json.loads(dump_file.read_text())
    assert assert_passphrase_only_as_a_file(dump, SECRET) == own
    assert "another passphrase entirely" not in json.dumps(dump)
    assert own.read_text() == SECRET + "\n"  # left where it was


def test_an_own_file_others_can_read_is_refused_before_the_run(
    project: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump_file = install_fake_ansible_playbook(tmp_path, monkeypatch)
    own = tmp_path / "own-pass"
    own.write_text(SECRET + "\n")
    own.chmod(0o644)
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", str(own))
    with pytest.raises(PassphraseFileModeError, match=r"open to other users \(mode 0644\)"):
        run_playbook(*project, tmp_path / "run")
    assert not dump_file.exists() and not (tmp_path / "run").exists()


def test_provision_on_a_log_hands_its_passphrase_file_to_the_playbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The piped (CI) path of the CLI passes --keys-dir and --passphrase-file on, too."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from campus_provision.cli import app  # noqa: PLC0415
    from tests.conftest import EXAMPLE  # noqa: PLC0415

    dump = install_fake_ansible_playbook(tmp_path, monkeypatch)
    spec = tmp_path / "seoul" / "campus.yml"
    spec.parent.mkdir()
    spec.write_bytes(EXAMPLE.read_bytes())
    playbook = tmp_path / "site.yml"
    playbook.write_text("---\n[]\n")
    secret = tmp_path / "passphrase"
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o600)
    keys = tmp_path / "keys"
    result = CliRunner().invoke(
        app,
        ["provision", str(spec), "--playbook", str(playbook), "--run-dir", str(tmp_path / "run"),
         "--login", "inventory", "--keys-dir", str(keys), "--passphrase-file", str(secret)],
    )  # fmt: skip
    assert dump.exists(), result.output
    given = json.loads(dump.read_text())
    assert given["file"] == str(secret)
    assert given["environ"]["CAMPUS_KEYS_DIR"] == str(keys)
    assert "CAMPUS_KEYSTORE_PASSPHRASE" not in given["environ"]
