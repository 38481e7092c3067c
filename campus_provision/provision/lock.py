"""One provisioning run per inventory at a time, whoever starts it.

Two ``provision`` runs on the same hosts would interleave their tasks (two apt runs on one
PC, two sshd restarts); the second is refused instead, naming the run that holds the lock.
The lock is an ``flock`` on ``.campus-provision.lock`` beside the inventory (next to
``hosts.yml``, outside render's generations, so the same file for every user and every
render), created 0600. The kernel releases it when the holder exits, however it exits: a
crashed run never leaves a stale lock behind.

A run that cannot take the lock does not start: a lock path that is a symlink, a
directory or another kind of file, a lock file others may write, or a directory where it
cannot be made is one error naming the path. There is no fallback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from campus_provision.errors import ProvisionError
from campus_provision.render.files import GENERATIONS

LOCK_NAME = ".campus-provision.lock"


def lock_path(inventory: Path) -> Path:
    """The lock file of ``inventory``: beside it, in the folder render writes to."""
    directory = inventory.absolute().parent
    if directory.parent.name == GENERATIONS:  # a path inside one generation: its folder's
        directory = directory.parent.parent
    return directory / LOCK_NAME


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another run"
    if not isinstance(info, dict):
        return "another run"
    return f"pid {info.get('pid', '?')}, started {info.get('started', '?')}"


def _why(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be opened as the lock, in words."""
    plain = {
        errno.ELOOP: "it is a symlink, and the lock must be a plain file",
        errno.EISDIR: "it is a directory, and the lock must be a plain file",
        errno.ENOENT: f"there is no directory {path.parent}",
        errno.ENOTDIR: f"{path.parent} is not a directory",
    }
    if exc.errno in plain:
        return plain[exc.errno]
    if exc.errno in (errno.EACCES, errno.EPERM):
        try:
            info = path.lstat()
        except OSError:
            return f"{path.parent} is not writable by uid {os.geteuid()}"
        return (
            f"permission denied (owned by uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):04o}; this is uid {os.geteuid()})"
        )
    return exc.strerror or str(exc)


def _refuse(path: Path, why: str) -> ProvisionError:
    return ProvisionError(f"{path}: cannot take the run lock: {why}; not running unlocked")


def _open(path: Path) -> int:
    """The lock file's descriptor, created 0600 if missing; ProvisionError if it will not do."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise _refuse(path, _why(path, exc)) from None
    info = os.fstat(fd)
    why = None
    if not stat.S_ISREG(info.st_mode):
        why = "it is not a plain file"
    elif stat.S_IMODE(info.st_mode) & 0o077:
        why = (
            f"its mode is {stat.S_IMODE(info.st_mode):04o} (owner uid {info.st_uid}), "
            f"and a run lock must be 0600; chmod 600 {path}, or remove it"
        )
    if why is not None:
        os.close(fd)
        raise _refuse(path, why)
    return fd


@contextlib.contextmanager
def inventory_lock(inventory: Path, what: str = "provision") -> Iterator[Path]:
    """Hold the run lock of ``inventory``; ProvisionError at once if it cannot be held."""
    path = lock_path(inventory)
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProvisionError(
                f"another run is provisioning {inventory} ({_holder(path)}; lock {path}); "
                "wait for it to finish, or stop it, then run this again"
            ) from None
        except OSError as exc:
            raise _refuse(path, exc.strerror or str(exc)) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = json.dumps({"pid": os.getpid(), "started": started, "what": what})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
