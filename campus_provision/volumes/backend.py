"""What rotation does to one LUKS2 volume, as a handful of cryptsetup commands.

Every operation is one ``cryptsetup`` command whose keys arrive on stdin, never in argv:
``--key-file=-`` reads exactly :data:`KEYFILE_BYTES` bytes, and where a second key is
needed (``luksAddKey``) the new key follows on the same stdin, read as ``/dev/stdin``
with ``--new-keyfile-size``. No temp file, no extra descriptor: the same argv runs locally
or as one SSH command with 176 bytes on its stdin, which is all the SSH backend will add.

The key file a PC unlocks with at boot (``/etc/cryptsetup-keys.d/<id>.key``) belongs to
the backend too: rotation replaces it, atomically, and asks whether it holds a key by
sending the key (a PC never sends one back).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.volumes import KEYFILE_BYTES
from campus_provision.volumes import VolumeError

# cryptsetup's exit code for "no key available with this passphrase".
EXIT_WRONG_KEY = 2
LUKS2_SLOTS = 32
# Where cryptsetup lives when sbin is not on an operator's PATH.
_SBIN = "/usr/sbin:/sbin"
_SLOT_UNLOCKED = re.compile(r"^Key slot (\d+) unlocked\.$", re.MULTILINE)
_SLOT_CREATED = re.compile(r"^Key slot (\d+) created\.$", re.MULTILINE)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


class VolumeBackend(Protocol):
    """The operations rotation needs on one volume; keys are keyfile text (88 bytes)."""

    @property
    def where(self) -> str:
        """The volume, for messages (a path, or host:device)."""
        ...

    def key_opens(self, key: bytes) -> bool:
        """Whether ``key`` opens any keyslot."""
        ...

    def slot_of(self, key: bytes) -> int | None:
        """The keyslot ``key`` opens, or None."""
        ...

    def active_slots(self) -> list[int]:
        """The active keyslots, ascending."""
        ...

    def add_key(self, existing_key: bytes, new_key: bytes) -> int:
        """Add ``new_key`` in a free slot, authorised by ``existing_key``; the new slot."""
        ...

    def kill_slot(self, slot: int, authorising_key: bytes) -> None:
        """Wipe ``slot``; ``authorising_key`` must open another slot. No-op if inactive."""
        ...

    def install_keyfile(self, key: bytes) -> None:
        """Atomically make the volume's key file (what unlocks it at boot) hold ``key``."""
        ...

    def keyfile_holds(self, key: bytes) -> bool:
        """Whether the volume's key file holds exactly ``key``."""
        ...


@dataclass(frozen=True)
class Pbkdf:
    """The cost of a new keyslot (the role's defaults; tests pass a cheap one)."""

    pbkdf: str = "argon2id"
    memory_kib: int = 1048576
    iter_time_ms: int = 2000
    force_iterations: int = 0

    def args(self) -> list[str]:
        cost = (
            ["--pbkdf-force-iterations", str(self.force_iterations)]
            if self.force_iterations
            else ["--iter-time", str(self.iter_time_ms)]
        )
        return ["--pbkdf", self.pbkdf, "--pbkdf-memory", str(self.memory_kib), *cost]


@dataclass(frozen=True)
class Result:
    """How one cryptsetup command ended (its output never holds a key)."""

    returncode: int
    stdout: str
    stderr: str


def check_key(key: bytes) -> bytes:
    """``key`` if it is keyfile text: 88 bytes of base64 (else VolumeError, key not shown)."""
    if len(key) != KEYFILE_BYTES or not _BASE64.fullmatch(key):
        raise VolumeError(f"not a volume key: expected {KEYFILE_BYTES} bytes of base64 text")
    return key


class CryptsetupBackend(ABC):
    """The operations as cryptsetup argv; subclasses say how a command runs and where."""

    def __init__(self, device: str, pbkdf: Pbkdf) -> None:
        self.device = device
        self.pbkdf = pbkdf

    @property
    @abstractmethod
    def where(self) -> str: ...

    @abstractmethod
    def run(self, args: list[str], stdin: bytes) -> Result:
        """Run ``cryptsetup *args`` with ``stdin``, in the C locale (VolumeError if it cannot)."""

    @abstractmethod
    def install_keyfile(self, key: bytes) -> None: ...

    @abstractmethod
    def keyfile_holds(self, key: bytes) -> bool: ...

    def _fail(self, what: str, result: Result) -> VolumeError:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        return VolumeError(
            f"{self.where}: cryptsetup {what} failed (exit {result.returncode}): {detail}"
        )

    def _test(self, key: bytes) -> Result:
        result = self.run(
            ["open", "--test-passphrase", "--verbose", "--key-file=-",
             f"--keyfile-size={KEYFILE_BYTES}", self.device],
            check_key(key),
        )  # fmt: skip
        if result.returncode not in (0, EXIT_WRONG_KEY):
            raise self._fail("open --test-passphrase", result)
        return result

    def key_opens(self, key: bytes) -> bool:
        return self._test(key).returncode == 0

    def slot_of(self, key: bytes) -> int | None:
        result = self._test(key)
        if result.returncode != 0:
            return None
        found = _SLOT_UNLOCKED.search(result.stdout + result.stderr)
        if found is None:
            raise self._fail("open --test-passphrase (no 'Key slot N unlocked')", result)
        return int(found.group(1))

    def active_slots(self) -> list[int]:
        result = self.run(["luksDump", "--dump-json-metadata", self.device], b"")
        if result.returncode != 0:
            raise self._fail("luksDump", result)
        try:
            return sorted(int(slot) for slot in json.loads(result.stdout)["keyslots"])
        except (ValueError, KeyError, TypeError):
            raise VolumeError(
                f"{self.where}: cryptsetup luksDump --dump-json-metadata gave no keyslots"
            ) from None

    def add_key(self, existing_key: bytes, new_key: bytes) -> int:
        if hmac.compare_digest(check_key(existing_key), check_key(new_key)):
            raise VolumeError(f"{self.where}: the new key is the existing key")
        result = self.run(
            ["luksAddKey", "--batch-mode", "--verbose", "--key-file=-",
             f"--keyfile-size={KEYFILE_BYTES}", f"--new-keyfile-size={KEYFILE_BYTES}",
             *self.pbkdf.args(), self.device, "/dev/stdin"],
            existing_key + new_key,
        )  # fmt: skip
        if result.returncode == EXIT_WRONG_KEY:
            raise VolumeError(f"{self.where}: luksAddKey: the existing key does not open it")
        if result.returncode != 0:
            raise self._fail("luksAddKey", result)
        found = _SLOT_CREATED.search(result.stdout + result.stderr)
        slot = int(found.group(1)) if found else self.slot_of(new_key)
        if slot is None:
            raise VolumeError(f"{self.where}: luksAddKey succeeded but the new key does not open")
        return slot

    def kill_slot(self, slot: int, authorising_key: bytes) -> None:
        # Given a key file, luksKillSlot wants a key of *another* slot (exit 2 otherwise),
        # except when the slot is the last one: then, in batch mode, the slot's own key
        # wipes it. So the last slot is refused here, and cryptsetup checks the rest. (Not
        # a slot_of() first: on a PC every key test costs seconds of argon2.)
        slots = self.active_slots()
        if slot not in slots:
            return
        if slots == [slot]:
            raise VolumeError(f"{self.where}: refusing to kill keyslot {slot}: it is the last")
        result = self.run(
            ["luksKillSlot", "--batch-mode", "--key-file=-", f"--keyfile-size={KEYFILE_BYTES}",
             self.device, str(slot)],
            check_key(authorising_key),
        )  # fmt: skip
        if result.returncode == EXIT_WRONG_KEY:
            raise VolumeError(
                f"{self.where}: not killing keyslot {slot}: the authorising key opens no other slot"
            )
        if result.returncode != 0:
            raise self._fail(f"luksKillSlot {slot}", result)


def find_cryptsetup() -> str:
    """The cryptsetup binary's absolute path (VolumeError naming the package if none)."""
    path = os.environ.get("PATH", os.defpath)
    found = shutil.which("cryptsetup", path=f"{path}:{_SBIN}")
    if found is None:
        raise VolumeError(
            "cryptsetup not found (on PATH, /usr/sbin or /sbin): "
            "install it with 'apt-get install cryptsetup-bin'"
        )
    return found


class LocalFileBackend(CryptsetupBackend):
    """A LUKS2 volume (or detached header) in a file here, its key file beside it.

    The real cryptsetup runs on the file: keyslot operations need no device-mapper.
    """

    def __init__(
        self, header: Path, keyfile: Path, *, pbkdf: Pbkdf | None = None, timeout: float = 300
    ) -> None:
        super().__init__(str(header), pbkdf or Pbkdf())
        self.header = header
        self.keyfile = keyfile
        self.timeout = timeout
        self._cryptsetup = find_cryptsetup()

    @property
    def where(self) -> str:
        return str(self.header)

    def run(self, args: list[str], stdin: bytes) -> Result:
        try:
            done = subprocess.run(  # noqa: S603 - an absolute path, an argument list
                [self._cryptsetup, *args],
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VolumeError(
                f"{self.where}: cryptsetup {args[0]} did not finish in {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise VolumeError(f"{self.where}: cannot run cryptsetup: {exc.strerror}") from None
        return Result(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    def install_keyfile(self, key: bytes) -> None:
        try:
            write_atomic(self.keyfile, check_key(key), 0o600)
        except OSError as exc:
            raise VolumeError(
                f"{self.keyfile}: cannot write the key file: {exc.strerror}"
            ) from None

    def keyfile_holds(self, key: bytes) -> bool:
        try:
            held = self.keyfile.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise VolumeError(f"{self.keyfile}: cannot read the key file: {exc.strerror}") from None
        return hmac.compare_digest(held, check_key(key))
