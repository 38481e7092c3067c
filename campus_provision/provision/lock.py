"""One provisioning run per inventory at a time.

Two ``provision`` runs on the same hosts would interleave their tasks (two apt runs on one
PC, two sshd restarts); the second is refused instead, naming the run that holds the lock.
The lock is an ``flock`` on a file named after the inventory's absolute path, in a
directory private to the user, so it is released by the kernel when the holder exits,
however it exits: a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from campus_provision.errors import ProvisionError
from campus_provision.provision.ansiblecfg import control_path_dir


def lock_path(inventory: Path) -> Path:
    """The lock file of ``inventory`` (one per absolute path)."""
    key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
    return control_path_dir() / f"run-{key}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another run"
    if not isinstance(info, dict):
        return "another run"
    return f"pid {info.get('pid', '?')}, started {info.get('started', '?')}"


@contextlib.contextmanager
def inventory_lock(inventory: Path, what: str = "provision") -> Iterator[Path]:
    """Hold the run lock of ``inventory``; ProvisionError at once if another run holds it."""
    path = lock_path(inventory)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProvisionError(
                f"another run is provisioning {inventory} ({_holder(path)}); wait for it to "
                "finish, or stop it, then run this again"
            ) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = json.dumps({"pid": os.getpid(), "started": started, "what": what})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
