"""Where a lab keeps its files, and the record of what it has made.

A lab is named by a prefix (``cpl`` by default): its namespaces, its directory and its
cgroups all carry it, so two labs cannot collide and ``lab down`` removes exactly its own.
The base image cache is shared by all labs under the same state directory.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campus_provision.errors import LabError
from campus_provision.hostkeys import known_hosts_file

DEFAULT_STATE_DIR = Path("/var/lib/campus-provision/lab")
DEFAULT_PREFIX = "cpl"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,5}")


def state_dir_from_env() -> Path:
    """The state directory: ``CAMPUS_LAB_STATE`` or the default."""
    return Path(os.environ.get("CAMPUS_LAB_STATE", str(DEFAULT_STATE_DIR)))


@dataclass(frozen=True)
class LabPaths:
    """The files and names of one lab."""

    state_dir: Path
    prefix: str

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise LabError(
                f"lab prefix '{self.prefix}': 1-6 lower-case letters and digits, a letter first"
            )

    @property
    def images(self) -> Path:
        return self.state_dir / "images"

    @property
    def root(self) -> Path:
        """This lab's directory; everything of the run lives below it."""
        return self.state_dir / f"lab-{self.prefix}"

    @property
    def record(self) -> Path:
        return self.root / "lab.json"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        """The lab inventory's own known_hosts: ssh records each host's key there at start."""
        return known_hosts_file(self.inventory)

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    def host_dir(self, name: str) -> Path:
        return self.root / "hosts" / name

    @property
    def campus_ns(self) -> str:
        return f"{self.prefix}-campus"

    @property
    def outside_ns(self) -> str:
        return f"{self.prefix}-outside"

    def host_ns(self, index: int) -> str:
        return f"{self.prefix}-h{index}"

    @property
    def marker(self) -> str:
        """A string in the command line of every process the lab starts."""
        return f"{self.root}/"

    def cgroup_dirs(self, name: str) -> list[Path]:
        """Per-container cgroups (nspawn --keep-unit would share the caller's, '/')."""
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():  # unified hierarchy only
            return [base / "campus-lab" / self.prefix / name]
        return [base / h / "campus-lab" / self.prefix / name for h in ("unified", "systemd")]

    def cgroup_roots(self) -> list[Path]:
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():
            return [base / "campus-lab" / self.prefix]
        return [base / h / "campus-lab" / self.prefix for h in ("unified", "systemd")]


def read_record(paths: LabPaths) -> dict[str, Any] | None:
    """The record of a lab that is (or was) up, or None."""
    try:
        data = json.loads(paths.record.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(paths: LabPaths, data: dict[str, Any]) -> None:
    """Replace the lab record atomically."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lab-", dir=paths.root)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    Path(tmp).replace(paths.record)
