"""Where the keystore passphrase comes from when nobody types it: a file or the environment.

The same three sources serve the CLI and the Ansible lookup plugin, so an operator who sets
them once for a session unlocks keys in both: a passphrase file named for the one command,
else ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``, else ``$CAMPUS_KEYSTORE_PASSPHRASE``. There is
never a command-line argument carrying the passphrase itself (it would show in ``ps``).

A passphrase file that other users may open (any group or other permission bit) is
refused wherever one is read, as ssh refuses such a private key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from campus_provision.keys import KeyStoreError, PassphraseFileModeError

PASSPHRASE_ENV = "CAMPUS_KEYSTORE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
PASSPHRASE_FILE_ENV = "CAMPUS_KEYSTORE_PASSPHRASE_FILE"  # noqa: S105 - likewise


def read_passphrase_file(path: Path) -> str:
    """The first line of ``path``.

    PassphraseFileModeError when users other than the owner may open it (checked on the
    open file, so it cannot be swapped between the check and the read); KeyStoreError when
    it is unreadable, not UTF-8 or its first line is empty.
    """
    try:
        with path.open("rb") as fh:
            mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
            if mode & 0o077:
                raise PassphraseFileModeError(
                    f"{path}: the passphrase file is open to other users (mode {mode:04o}); "
                    f"run 'chmod 600 {path}'"
                )
            data = fh.read()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the passphrase file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # No detail from the decoder: it would quote bytes of the secret.
        raise KeyStoreError(f"{path}: the passphrase file is not UTF-8") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise KeyStoreError(f"{path}: the first line (the passphrase) is empty")
    return lines[0]


def environment_passphrase_file() -> Path | None:
    """``$CAMPUS_KEYSTORE_PASSPHRASE_FILE`` as a path, if set (KeyStoreError when empty)."""
    value = os.environ.get(PASSPHRASE_FILE_ENV)
    if value is None:
        return None
    if not value:
        raise KeyStoreError(f"${PASSPHRASE_FILE_ENV} is set but empty")
    return Path(value)


def environment_passphrase() -> str | None:
    """``$CAMPUS_KEYSTORE_PASSPHRASE``, if set (KeyStoreError when set but empty)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None and not value:
        raise KeyStoreError(f"${PASSPHRASE_ENV} is set but empty")
    return value


def passphrase_without_prompt(passphrase_file: Path | None = None) -> str:
    """``passphrase_file``, else the two environment variables; else a KeyStoreError.

    For what cannot prompt (an Ansible lookup run by ansible-playbook's workers).
    """
    path = passphrase_file or environment_passphrase_file()
    if path is not None:
        return read_passphrase_file(path)
    value = environment_passphrase()
    if value is None:
        raise KeyStoreError(
            "no keystore passphrase: give a passphrase file (--passphrase-file), or set "
            f"${PASSPHRASE_FILE_ENV} to a file holding it, or set ${PASSPHRASE_ENV}"
        )
    return value
