"""Where the keystore passphrase comes from when nobody types it: a file or the environment.

The same three sources serve the CLI and the Ansible lookup plugin, so an operator who sets
them once for a session unlocks keys in both: a passphrase file named for the one command,
else ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``, else ``$CAMPUS_KEYSTORE_PASSPHRASE``. There is
never a command-line argument carrying the passphrase itself (it would show in ``ps``).

A passphrase file that other users may open (any group or other permission bit) is
refused wherever one is read, as ssh refuses such a private key. A child process (an
ansible-playbook run) is never given the passphrase itself in its environment, only the
path of a file holding it (:func:`child_environment`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from campus_provision.keys import KeyStoreError, PassphraseFileModeError
from campus_provision.keys.signing import KEYS_DIR_ENV

PASSPHRASE_ENV = "CAMPUS_KEYSTORE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
PASSPHRASE_FILE_ENV = "CAMPUS_KEYSTORE_PASSPHRASE_FILE"  # noqa: S105 - likewise
CHILD_FILE = "passphrase"  # the name of the handed-over file in its private directory


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


@dataclass(frozen=True)
class KeystoreAccess:
    """What a child process needs to open the keystore, as a command knows it.

    ``keys_dir``: the keys directory (None: the child finds it as this process would).
    ``passphrase_file``: a file the operator named for this command. ``passphrase``: the
    passphrase itself (typed at a prompt); it goes to the child only as a file.
    """

    keys_dir: Path | None = None
    passphrase_file: Path | None = None
    passphrase: str | None = field(default=None, repr=False)


def _private_base() -> str | None:
    """A per-user directory in memory for the handed-over file, if this system has one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir() and os.access(runtime, os.W_OK):
        return runtime
    return None  # tempfile's default ($TMPDIR, /tmp)


@contextlib.contextmanager
def child_environment(
    environ: Mapping[str, str], access: KeystoreAccess | None = None
) -> Iterator[dict[str, str]]:
    """``environ`` as a child process gets it: the passphrase only as a file's path.

    ``$CAMPUS_KEYSTORE_PASSPHRASE`` is never passed on. The child gets
    ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``: the operator's own file when there is one
    (``access.passphrase_file``, else the variable already set; checked here first, so a
    file others can read is refused before anything starts), else a 0600 file in a 0700
    directory of its own holding ``access.passphrase`` or the variable's value, removed
    when the block ends, however it ends. ``access.keys_dir`` becomes ``$CAMPUS_KEYS_DIR``.
    """
    access = access or KeystoreAccess()
    env = {k: v for k, v in environ.items() if k != PASSPHRASE_ENV}
    if access.keys_dir is not None:
        env[KEYS_DIR_ENV] = str(access.keys_dir.absolute())
    given = access.passphrase_file or (
        Path(environ[PASSPHRASE_FILE_ENV]) if environ.get(PASSPHRASE_FILE_ENV) else None
    )
    if given is not None:
        read_passphrase_file(given)  # refused here, in one line, rather than in the child
        env[PASSPHRASE_FILE_ENV] = str(given.absolute())
        yield env
        return
    secret = access.passphrase if access.passphrase is not None else environ.get(PASSPHRASE_ENV)
    if not secret:
        env.pop(PASSPHRASE_FILE_ENV, None)  # set but empty: nothing to hand over
        yield env
        return
    directory = Path(tempfile.mkdtemp(prefix="campus-keystore-", dir=_private_base()))
    try:
        directory.chmod(0o700)
        path = directory / CHILD_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
        env[PASSPHRASE_FILE_ENV] = str(path)
        yield env
    finally:
        shutil.rmtree(directory, ignore_errors=True)
