"""The lab keystore (no lab needed): its passphrase file is 0600, as every reader demands."""

from __future__ import annotations

import stat
from pathlib import Path

from campus_provision.keys.passphrase import read_passphrase_file
from campus_provision.keys.signing import KEY_FILE
from campus_provision.lab.bundle import lab_keys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_lab_passphrase_file_is_0600_and_opens_the_lab_keys(tmp_path: Path) -> None:
    keys = lab_keys(tmp_path)
    assert mode(keys.passphrase_file) == 0o600 and mode(keys.directory) == 0o700
    assert (keys.directory / KEY_FILE).is_file()
    assert keys.passphrase() == read_passphrase_file(keys.passphrase_file)


def test_a_lab_passphrase_file_left_open_by_an_older_lab_is_closed_again(tmp_path: Path) -> None:
    first = lab_keys(tmp_path)
    first.passphrase_file.chmod(0o644)  # as a hand edit, or a copy, may have left it
    again = lab_keys(tmp_path)
    assert mode(again.passphrase_file) == 0o600
    assert again.passphrase() == first.passphrase()
