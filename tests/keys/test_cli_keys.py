"""``campus-provision keys``: passphrase sources, init/show/check/export-pubkey, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.keys.signing import KEY_FILE, PUB_FILE, fingerprint, load_public_key
from tests.conftest import snapshot
from tests.keys.conftest import PASSPHRASE, Sealed

COMMANDS = [
    ["keys", "init"],
    ["keys", "show"],
    ["keys", "check"],
    ["keys", "export-pubkey"],
    ["keys", "volumes"],
    ["keys", "volume-create"],
    ["keys", "reseal"],
    ["keys", "escrow", "export"],
    ["keys", "escrow", "import"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_gives_an_example(command: list[str], cli: Callable[..., Result]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example: campus-provision " + " ".join(command) in " ".join(result.stdout.split())


def test_init_from_the_environment_then_show_and_export(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keys = tmp_path / "keys"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    result = cli("keys", "init", "--keys-dir", keys, env=env)
    assert result.exit_code == 0, result.output
    fp = fingerprint(load_public_key(keys))
    assert fp in result.stdout
    assert PASSPHRASE not in result.output

    shown = cli("keys", "show", "--keys-dir", keys)
    assert shown.exit_code == 0
    assert f"fingerprint: {fp}" in shown.stdout
    assert str(keys / KEY_FILE) in shown.stdout and str(keys / PUB_FILE) in shown.stdout

    printed = cli("keys", "export-pubkey", "--keys-dir", keys)
    assert printed.exit_code == 0
    assert printed.stdout == (keys / PUB_FILE).read_text()

    out = tmp_path / "for-auditors" / "seoul.pub"
    out.parent.mkdir()
    written = cli("keys", "export-pubkey", "--keys-dir", keys, "--out", out)
    assert written.exit_code == 0
    assert fingerprint(load_public_key(out)) == fp
    assert out.stat().st_mode & 0o777 == 0o644


def test_default_keys_dir_comes_from_the_environment(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    assert cli("keys", "init", env=env).exit_code == 0
    assert (tmp_path / "default-keys" / KEY_FILE).is_file()


def test_init_from_a_passphrase_file(tmp_path: Path, cli: Callable[..., Result]) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    keys = tmp_path / "keys"
    result = cli("keys", "init", "--keys-dir", keys, "--passphrase-file", secret)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    check = cli("keys", "check", "--keys-dir", keys, "--passphrase-file", secret)
    assert check.exit_code == 0, check.output
    assert "passphrase OK" in check.stdout


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
@pytest.mark.parametrize("how", ["--passphrase-file", "environment", "--escrow-passphrase-file"])
def test_a_passphrase_file_others_can_open_is_refused(
    tmp_path: Path, cli: Callable[..., Result], sealed: Sealed, mode: int, how: str
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(mode)
    good = tmp_path / "good"
    good.write_text(PASSPHRASE + "\n")
    good.chmod(0o600)
    bundle = tmp_path / "escrow.bundle"
    env: dict[str, str] = {}
    if how == "--passphrase-file":
        args = ["keys", "volume-create", "h9/ds9", "--passphrase-file", secret]
    elif how == "environment":
        args = ["keys", "volume-create", "h9/ds9"]
        env = {"CAMPUS_KEYSTORE_PASSPHRASE_FILE": str(secret)}
    else:
        args = ["keys", "escrow", "export", bundle, "--passphrase-file", good,
                "--escrow-passphrase-file", secret]  # fmt: skip
    before = snapshot(sealed.keys_dir)
    result = cli(*args, "--keys-dir", sealed.keys_dir, env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"{secret}: the passphrase file is open to other users (mode {mode:04o}); "
        f"run 'chmod 600 {secret}'"
    ]
    assert result.stdout == ""
    assert snapshot(sealed.keys_dir) == before and not bundle.exists()


def test_the_passphrase_file_wins_over_the_environment(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    keys = tmp_path / "keys"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": "the other passphrase"}
    assert (
        cli("keys", "init", "--keys-dir", keys, "--passphrase-file", secret, env=env).exit_code == 0
    )
    assert (
        cli(
            "keys", "check", "--keys-dir", keys, env={"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
        ).exit_code
        == 0
    )
    # The file named by $CAMPUS_KEYSTORE_PASSPHRASE_FILE wins over $CAMPUS_KEYSTORE_PASSPHRASE.
    env["CAMPUS_KEYSTORE_PASSPHRASE_FILE"] = str(secret)
    assert cli("keys", "check", "--keys-dir", keys, env=env).exit_code == 0


def test_init_prompts_twice_with_hidden_input(tmp_path: Path, cli: Callable[..., Result]) -> None:
    keys = tmp_path / "keys"
    result = cli("keys", "init", "--keys-dir", keys, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    assert PASSPHRASE not in result.output
    mismatch = cli(
        "keys", "init", "--keys-dir", tmp_path / "k2", input=f"{PASSPHRASE}\nsomething else\n"
    )
    assert mismatch.exit_code != 0
    assert not (tmp_path / "k2" / KEY_FILE).exists()


def test_the_passphrase_cannot_be_given_as_an_argument(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    result = cli("keys", "init", "--keys-dir", tmp_path / "k", "--passphrase", PASSPHRASE)
    assert result.exit_code == 2
    assert "No such option" in result.output
    assert not (tmp_path / "k").exists()


def test_wrong_passphrase_is_one_line_exit_1_and_changes_nothing(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keys = tmp_path / "keys"
    assert (
        cli(
            "keys", "init", "--keys-dir", keys, env={"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
        ).exit_code
        == 0
    )
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    result = cli(
        "keys", "check", "--keys-dir", keys, env={"CAMPUS_KEYSTORE_PASSPHRASE": "wrong passphrase!"}
    )
    assert result.exit_code == 1
    assert result.stderr == f"wrong passphrase for {keys / KEY_FILE}\n"
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == before


def test_tampered_key_file_is_one_clear_line(tmp_path: Path, cli: Callable[..., Result]) -> None:
    keys = tmp_path / "keys"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    assert cli("keys", "init", "--keys-dir", keys, env=env).exit_code == 0
    text = (keys / KEY_FILE).read_text()
    # Swap the first two characters of the base64 ciphertext: still base64, different bytes.
    start = text.index('"ciphertext": "') + len('"ciphertext": "')
    swapped = text[start + 1] + text[start] if text[start] != text[start + 1] else "AB"
    (keys / KEY_FILE).write_text(text[:start] + swapped + text[start + 2 :])
    result = cli("keys", "check", "--keys-dir", keys, env=env)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{keys / KEY_FILE}: damaged or tampered with")


def test_init_refuses_to_replace_a_key_before_asking_for_a_passphrase(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keys = tmp_path / "keys"
    assert (
        cli(
            "keys", "init", "--keys-dir", keys, env={"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
        ).exit_code
        == 0
    )
    result = cli("keys", "init", "--keys-dir", keys)  # no passphrase source: would prompt
    assert result.exit_code == 1
    assert "already exists; pass --force" in result.stderr
    assert "Passphrase" not in result.output


def test_show_without_a_key_says_how_to_make_one(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    result = cli("keys", "show", "--keys-dir", tmp_path / "none")
    assert result.exit_code == 1
    assert "campus-provision keys init" in result.stderr


def test_a_stale_signing_pub_is_reported_and_export_pubkey_repairs_it(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    keys = tmp_path / "keys"
    env = {"CAMPUS_KEYSTORE_PASSPHRASE": PASSPHRASE}
    assert cli("keys", "init", "--keys-dir", keys, env=env).exit_code == 0
    good = (keys / PUB_FILE).read_text()
    other = tmp_path / "other"
    assert cli("keys", "init", "--keys-dir", other, env=env).exit_code == 0
    (keys / PUB_FILE).write_text((other / PUB_FILE).read_text())  # e.g. a half-done --force

    stale = cli("keys", "show", "--keys-dir", keys)
    assert stale.exit_code == 1
    assert "is not the signing key's" in stale.stderr and "export-pubkey --out" in stale.stderr
    repaired = cli("keys", "export-pubkey", "--keys-dir", keys, "--out", keys / PUB_FILE)
    assert repaired.exit_code == 0, repaired.output
    assert (keys / PUB_FILE).read_text() == good
    assert cli("keys", "show", "--keys-dir", keys).exit_code == 0
