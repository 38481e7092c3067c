"""Keys on the controller: the campus evidence-signing key and the volume keystore.

Every secret here is encrypted at rest under a key derived from the operator's
passphrase (see :mod:`campus_provision.keys.sealed`); nothing in this package logs,
prints or puts a secret in an exception message.
"""

from __future__ import annotations

from campus_provision.errors import CampusProvisionError


class KeyStoreError(CampusProvisionError):
    """Raised when a key file cannot be created, read or unlocked.

    A wrong passphrase; a key file whose authentication tag fails (damaged or tampered
    with); a malformed key file or one of an unknown format; a missing key or public
    key; ``keys init`` over an existing key without ``--force``; a keys directory that
    other users can open; an empty or too-short passphrase, or no source for one; a volume
    key file found in another volume's directory; an unsafe volume or key id; an escrow
    bundle that cannot be opened, or whose key clashes with a different key already here.
    """


class PassphraseFileModeError(KeyStoreError):
    """Raised when a passphrase file may be opened by users other than its owner.

    Any group or other permission bit: the file is refused before it is read, wherever a
    passphrase file is read (``--passphrase-file``, ``--escrow-passphrase-file``,
    ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE``, the Ansible lookup). Exit code 2, as for bad
    usage: the fix is a ``chmod 600``, not a retry.
    """

    exit_code = 2


__all__ = ["KeyStoreError", "PassphraseFileModeError"]
