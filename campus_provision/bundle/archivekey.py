"""The campus archive key: the OpenPGP key apt on every PC trusts for the campus mirror.

gpg makes and uses it, in a temporary GNUPGHOME (on tmpfs when there is one) that is
removed, with its agent stopped, as soon as the signatures are made. At rest the key
exists only sealed under the operator's passphrase (``archive.key`` in the keys
directory, see :mod:`campus_provision.keys.sealed`); the gpg key itself has no
passphrase of its own, so gpg never needs one on its command line or from a pinentry.
The secret reaches gpg on stdin.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from campus_provision.bundle import BundleToolError
from campus_provision.bundle.tools import run, tool
from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.sealed import read_envelope, seal, unseal

ARCHIVE_KEY_FILE = "archive.key"
ARCHIVE_PURPOSE = "campus-provision archive key v1"
GPG_TIMEOUT = 120.0


@dataclass(frozen=True)
class ArchiveSigner:
    """An unlocked archive key inside a temporary GNUPGHOME (valid inside ``unlocked``)."""

    home: Path
    fingerprint: str

    def _gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        argv = ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(self.home), *args]
        return run(argv, timeout=GPG_TIMEOUT, stdin=stdin).stdout

    def sign_release(self, release: Path) -> None:
        """Write ``InRelease`` (clearsigned) and ``Release.gpg`` (detached) beside ``release``."""
        common = ["--local-user", self.fingerprint, "--digest-algo", "SHA512", "--yes"]
        self._gpg(
            *common, "--clearsign", "--output", str(release.parent / "InRelease"), str(release)
        )
        self._gpg(
            *common,
            "--armor",
            "--detach-sign",
            "--output",
            str(release.parent / "Release.gpg"),
            str(release),
        )

    def public_keyring(self) -> bytes:
        """The public key as a binary keyring, what apt's ``signed-by=`` takes."""
        return self._gpg("--export", self.fingerprint)


def _scratch_parent() -> str | None:
    # tmpfs: the unprotected secret never reaches a disk. mkdtemp makes a fresh 0700
    # directory there, so the shared location is not a race.
    shm = Path("/dev/shm")  # noqa: S108
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def _gnupg_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="campus-gnupg.", dir=_scratch_parent()))
    try:
        home.chmod(0o700)
        yield home
    finally:
        with contextlib.suppress(BundleToolError):
            if shutil.which("gpgconf"):
                run(["gpgconf", "--homedir", str(home), "--kill", "all"], timeout=30, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _fingerprint(home: Path) -> str:
    out = run(
        ["gpg", "--batch", "--homedir", str(home), "--with-colons", "--list-secret-keys"],
        timeout=GPG_TIMEOUT,
    ).stdout.decode("ascii", "replace")
    fprs = [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")]
    if not fprs:
        raise BundleToolError("gpg holds no secret key after generating or importing one")
    return fprs[0]


def _generate(home: Path, campus: str) -> None:
    uid = f"{campus} campus archive (campus-provision)"
    run(
        ["gpg", "--batch", "--quiet", "--homedir", str(home), "--pinentry-mode", "loopback",
         "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        timeout=GPG_TIMEOUT,
    )  # fmt: skip


@contextlib.contextmanager
def unlocked(keys_dir: Path, passphrase: str, campus: str) -> Iterator[ArchiveSigner]:
    """The archive key, ready to sign; made and sealed into ``keys_dir`` on first use."""
    tool("gpg")
    key_file = keys_dir / ARCHIVE_KEY_FILE
    with _gnupg_home() as home:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home)]
        if key_file.exists():
            data = key_file.read_bytes()
            secret = unseal(data, passphrase, purpose=ARCHIVE_PURPOSE, source=key_file)
            meta = read_envelope(data, purpose=ARCHIVE_PURPOSE, source=key_file)["meta"]
            run([*gpg, "--import"], timeout=GPG_TIMEOUT, stdin=secret)
            fpr = _fingerprint(home)
            if fpr != meta.get("fingerprint"):
                raise KeyStoreError(f"{key_file}: the sealed key is not the one its meta names")
        else:
            if not keys_dir.is_dir():
                raise KeyStoreError(
                    f"{keys_dir}: no keys directory; create the signing key first with "
                    "'campus-provision keys init'"
                )
            _generate(home, campus)
            fpr = _fingerprint(home)
            secret = run(
                [*gpg, "--pinentry-mode", "loopback", "--passphrase", "",
                 "--export-secret-keys", fpr],
                timeout=GPG_TIMEOUT,
            ).stdout  # fmt: skip
            meta = {
                "fingerprint": fpr,
                "algorithm": "ed25519",
                "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            write_atomic(
                key_file, seal(secret, passphrase, purpose=ARCHIVE_PURPOSE, meta=meta), 0o600
            )
        del secret
        yield ArchiveSigner(home, fpr)


def verify_signatures(dist: Path, keyring: Path) -> list[str]:
    """Problems with ``dist``'s ``InRelease`` and ``Release.gpg`` under ``keyring`` (gpgv).

    Also that InRelease signs the same text as ``Release``: apt reads InRelease first.
    """
    problems: list[str] = []
    release = dist / "Release"
    with _gnupg_home() as home:
        base = ["gpgv", "--homedir", str(home), "--keyring", str(keyring.resolve())]
        detached = dist / "Release.gpg"
        if detached.exists() and release.exists():
            proc = run([*base, str(detached), str(release)], timeout=GPG_TIMEOUT, check=False)
            if proc.returncode != 0:
                problems.append(f"{_rel(detached)}: signature does not verify with the archive key")
        inline = dist / "InRelease"
        if inline.exists():
            out = home / "inrelease.txt"
            proc = run([*base, "--output", str(out), str(inline)], timeout=GPG_TIMEOUT, check=False)
            if proc.returncode != 0:
                problems.append(f"{_rel(inline)}: signature does not verify with the archive key")
            elif release.exists() and _norm(out.read_bytes()) != _norm(release.read_bytes()):
                problems.append(f"{_rel(inline)}: signs other text than {_rel(release)}")
    return problems


def _norm(data: bytes) -> bytes:
    # A clearsignature normalises line ends and trailing blanks.
    return b"\n".join(ln.rstrip() for ln in data.splitlines()).rstrip(b"\n")


def _rel(path: Path) -> str:
    return "/".join(path.parts[-3:])
