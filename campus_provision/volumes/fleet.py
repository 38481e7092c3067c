"""Which PCs and dataset volumes a ``volumes`` command acts on, and how to reach each PC.

The rendered Ansible inventory is the one source: ``inventories/<campus>/hosts.yml`` beside
the spec, or the running lab's (``--lab``). Real Ansible resolves it
(``ansible-inventory -i … --list``), so group_vars, host vars and their precedence are
Ansible's own, not a second implementation of them. A PC is a target when its merged
variables hold ``campus_host_datasets``; its connection comes from the usual ``ansible_*``
variables (``ansible_host``, ``ansible_user``, ``ansible_port``,
``ansible_ssh_private_key_file``, ``ansible_ssh_common_args``/``_extra_args`` — the lab's
are ``-F <ssh_config>``), and an ``--admin`` login becomes root through ``sudo -n``.

API (stable; later changes are additive):

- :func:`inventory_path` ``(spec, lab=…, prefix=…) -> Path``: the ``hosts.yml`` to read.
- :func:`load_fleet` ``(inventory, limit=…, datasets=…, admin=…) -> list[Target]``:
  ansible-inventory, then :func:`fleet_from_inventory` (pure: unit tests feed it JSON).
- :class:`Target`: a PC (``host``, ``connection``, ``datasets``, ``pbkdf``);
  :class:`Connection`: how ssh reaches it; :class:`Dataset`: ``id``, ``version``,
  ``label`` (the LUKS label ``<id>@<version>``), ``readers``.
- Every bad input (no inventory, ansible-inventory failing, a ``--limit`` or dataset that
  selects nothing) is one :class:`~campus_provision.volumes.VolumeError` naming what to fix.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campus_provision.hostkeys import ssh_options
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf

INVENTORY_FILE = "hosts.yml"
INVENTORY_TIMEOUT = 120.0
# The role's key-slot cost variables (campus_data_volume defaults; see its argument_specs).
_PBKDF_VARS = {
    "pbkdf": "campus_data_volume_pbkdf",
    "memory_kib": "campus_data_volume_pbkdf_memory",
    "iter_time_ms": "campus_data_volume_iter_time",
    "force_iterations": "campus_data_volume_pbkdf_force_iterations",
}


@dataclass(frozen=True)
class Connection:
    """How ssh reaches one PC, and whether commands need ``sudo -n`` to be root there."""

    host: str  # the inventory name, for messages
    address: str
    user: str = "root"
    port: int | None = None
    identity_file: str | None = None
    ssh_args: tuple[str, ...] = ()  # ansible_ssh_common_args + _extra_args, split

    @property
    def become(self) -> bool:
        """True when the login is not root: every command then runs under ``sudo -n``."""
        return self.user != "root"


@dataclass(frozen=True)
class Dataset:
    """One dataset volume a PC holds (from ``campus_host_datasets``)."""

    id: str
    version: str
    readers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The LUKS label the role gives the volume: ``<id>@<version>``."""
        return f"{self.id}@{self.version}"


@dataclass(frozen=True)
class Target:
    """One PC and the selected dataset volumes on it."""

    host: str
    connection: Connection
    datasets: tuple[Dataset, ...]
    pbkdf: Pbkdf = field(default_factory=Pbkdf)
    mirror_url: str | None = None  # campus_mirror_url: where --from-mirror fetches


def inventory_path(spec: Path, *, lab: bool = False, prefix: str | None = None) -> Path:
    """The rendered ``hosts.yml`` for ``spec``: beside it, or the running lab's (``--lab``).

    Raises VolumeError naming the file (and how to make it) when it is not there.
    """
    if lab:
        from campus_provision.lab.state import DEFAULT_PREFIX, LabPaths, state_dir_from_env  # noqa: PLC0415

        path = LabPaths(state_dir_from_env(), prefix or DEFAULT_PREFIX).inventory / INVENTORY_FILE
        hint = f"start the lab with 'campus-provision lab up {spec}'"
    else:
        path = spec.parent / INVENTORY_FILE
        hint = f"render it with 'campus-provision render {spec}'"
    if not path.is_file():
        raise VolumeError(f"{path}: no inventory here; {hint}")
    return path


def _ansible_inventory() -> str:
    beside = Path(sys.executable).parent / "ansible-inventory"
    found = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    if not found:
        raise VolumeError(
            "ansible-inventory not found (beside this Python or on PATH); run 'make setup'"
        )
    return found


def read_inventory(inventory: Path, limit: str | None = None) -> dict[str, Any]:
    """``ansible-inventory -i INVENTORY --list [--limit LIMIT]`` as JSON (VolumeError if not)."""
    if not inventory.exists():
        raise VolumeError(f"{inventory}: no such inventory")
    cmd = [_ansible_inventory(), "-i", str(inventory), "--list"]
    if limit:
        cmd += ["--limit", limit]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_INVENTORY_UNPARSED_FAILED="1")
    try:
        done = subprocess.run(  # noqa: S603 - an argument list
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=INVENTORY_TIMEOUT,
            check=False,
            # Not the terminal's: without one, ansible-inventory fails on non-blocking stdin.
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise VolumeError(
            f"{inventory}: ansible-inventory did not finish in {INVENTORY_TIMEOUT:g} s"
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise VolumeError(
            f"{inventory}: ansible-inventory failed: {detail[-1] if detail else done.returncode}"
        )
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise VolumeError(f"{inventory}: ansible-inventory printed no JSON") from None
    if not isinstance(data, dict):
        raise VolumeError(f"{inventory}: ansible-inventory printed no inventory")
    return data


def _matches(host: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(host, p) for p in patterns)


def _pbkdf(hostvars: Mapping[str, Any]) -> Pbkdf:
    base = Pbkdf()
    values: dict[str, Any] = {}
    for name, var in _PBKDF_VARS.items():
        value = hostvars.get(var)
        if value is None:
            continue
        default = getattr(base, name)
        try:
            values[name] = type(default)(value)
        except (TypeError, ValueError):
            raise VolumeError(f"{var}: {value!r} is not a {type(default).__name__}") from None
    return Pbkdf(**values)


def _connection(host: str, hostvars: Mapping[str, Any], admin: str | None) -> Connection:
    args: list[str] = []
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        value = hostvars.get(var)
        if value:
            try:
                args += shlex.split(str(value))
            except ValueError as exc:
                raise VolumeError(f"{host}: {var} cannot be split: {exc}") from None
    port = hostvars.get("ansible_port", hostvars.get("ansible_ssh_port"))
    identity = hostvars.get(
        "ansible_ssh_private_key_file", hostvars.get("ansible_private_key_file")
    )
    user = admin or hostvars.get("ansible_user") or hostvars.get("ansible_ssh_user") or "root"
    try:
        port_number = int(port) if port is not None else None
    except (TypeError, ValueError):
        raise VolumeError(f"{host}: ansible_port {port!r} is not a number") from None
    return Connection(
        host=host,
        address=str(hostvars.get("ansible_host") or host),
        user=str(user),
        port=port_number,
        identity_file=str(identity) if identity else None,
        ssh_args=tuple(args),
    )


def _datasets(host: str, hostvars: Mapping[str, Any]) -> tuple[Dataset, ...]:
    raw = hostvars.get("campus_host_datasets") or []
    if not isinstance(raw, list):
        raise VolumeError(f"{host}: campus_host_datasets is not a list")
    found = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not entry.get("id") or entry.get("version") is None:
            raise VolumeError(f"{host}: a campus_host_datasets entry without id and version")
        readers = entry.get("readers") or []
        found.append(Dataset(str(entry["id"]), str(entry["version"]), tuple(map(str, readers))))
    return tuple(found)


def fleet_from_inventory(
    data: Mapping[str, Any],
    *,
    limit: Sequence[str] = (),
    datasets: Sequence[str] = (),
    admin: str | None = None,
    source: str = "the inventory",
    limit_text: str | None = None,
) -> list[Target]:
    """The targets in ``ansible-inventory --list`` output: PCs with datasets, by host name.

    ``limit`` keeps hosts matching any of its shell patterns (``sgm-a0*``); ``datasets``
    keeps only those dataset ids (hosts left with none are dropped). Selecting nothing is a
    VolumeError, so a mistyped name never looks like a fleet with nothing to do.
    """
    hostvars: Mapping[str, Any] = (data.get("_meta") or {}).get("hostvars") or {}
    targets = []
    for host in sorted(hostvars):
        if limit and not _matches(host, limit):
            continue
        chosen = _datasets(host, hostvars[host])
        if datasets:
            chosen = tuple(d for d in chosen if d.id in datasets)
        if chosen:
            vars_ = hostvars[host]
            mirror = vars_.get("campus_mirror_url")
            targets.append(Target(host, _connection(host, vars_, admin), chosen, _pbkdf(vars_),
                                  str(mirror) if mirror else None))  # fmt: skip
    shown = limit_text or ",".join(limit)
    what = f" matching --limit {shown}" if shown else ""
    if not targets:
        which = f" with dataset {', '.join(datasets)}" if datasets else " with datasets"
        raise VolumeError(f"{source}: no PC{which}{what}")
    if datasets:
        found = {d.id for t in targets for d in t.datasets}
        missing = [d for d in datasets if d not in found]
        if missing:
            raise VolumeError(f"{source}: no PC{what} has dataset {', '.join(missing)}")
    return targets


def split_limit(limit: str | None) -> list[str]:
    """``--limit a,b:c`` as patterns (commas or colons, as Ansible takes them)."""
    if not limit:
        return []
    return [p.strip() for p in limit.replace(":", ",").split(",") if p.strip()]


def load_fleet(
    inventory: Path,
    *,
    limit: str | None = None,
    datasets: Sequence[str] = (),
    admin: str | None = None,
) -> list[Target]:
    """The targets of ``inventory``, Ansible resolving its variables and ``limit``.

    ``limit`` means what it means to ansible-playbook (host names, groups, patterns,
    comma-separated); one that matches nothing is a VolumeError naming it.
    """
    data = read_inventory(inventory, limit.strip() if limit else None)
    targets = fleet_from_inventory(
        data, datasets=datasets, admin=admin, source=str(inventory), limit_text=limit
    )
    # Known by their keys in the inventory's known_hosts, as provision and verify know them.
    checked = tuple(ssh_options(inventory))
    return [
        dataclasses.replace(
            t,
            connection=dataclasses.replace(
                t.connection, ssh_args=(*checked, *t.connection.ssh_args)
            ),
        )
        for t in targets
    ]
