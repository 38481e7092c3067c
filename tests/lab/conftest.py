"""Lab fixtures: real Debian hosts in namespaces; lab tests fail (never skip) without root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import LabHost
from campus_provision.lab.state import LabPaths, state_dir_from_env
from campus_provision.provision.events import parse_event
from campus_provision.provision.runner import RunResult
from tests.conftest import EXAMPLE

if TYPE_CHECKING:
    from tests.lab.volume_vm import VolumeVm

VENV_BIN = Path(sys.executable).parent


def require_lab() -> None:
    """Fail with the reason when the lab cannot run here (a skipped lab test proves nothing)."""
    if os.geteuid() != 0:
        pytest.fail(
            "lab tests need root (namespaces, mounts, containers): run 'sudo make test-lab'"
        )
    missing = [t for t in (*control.HOST_TOOLS, *control.VM_TOOLS) if shutil.which(t) is None]
    if missing:
        pytest.fail(f"lab tests need host tools {missing}: run 'make lab-deps'")


def lab_paths(prefix: str) -> LabPaths:
    return LabPaths(state_dir_from_env(), prefix)


def ssh(paths: LabPaths, host: LabHost, command: str, *, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``command`` as root on a lab host (root's SSH, or the lab admin's and sudo)."""
    return control.run_on(paths, host, command, input=input, timeout=timeout)


@pytest.fixture(scope="module")
def nspawn_lab() -> Iterator[tuple[LabPaths, UpResult]]:
    """The example campus with one nspawn PC per site, plus every service host."""
    require_lab()
    paths = lab_paths("cpt")
    control.down(paths)
    result = control.up(EXAMPLE, paths, per_site=1, progress=print)
    try:
        yield paths, result
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


@pytest.fixture(scope="module")
def vm_lab() -> Iterator[tuple[LabPaths, UpResult]]:
    """One QEMU PC (Sangam) plus the service hosts."""
    require_lab()
    paths = lab_paths("cpv")
    control.down(paths)
    result = control.up(EXAMPLE, paths, per_site=1, driver="qemu", sites=["sangam"], progress=print)
    try:
        yield paths, result
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


@pytest.fixture(scope="session")
def volume_vm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolumeVm]:
    """The QEMU PC the volume modules share (see tests/lab/volume_vm.py)."""
    from tests.lab.volume_vm import volume_vm  # noqa: PLC0415 - it imports this module

    yield from volume_vm(tmp_path_factory)


SMALL_PROFILES = """software_profiles:
  analyst:
    title: Small test profile (R and pandas)
    packages:
      - r-base-core=4.2.2.20221110-2
      - python3-pandas=1.5.3+dfsg-2
  kiosk:
    title: Small test kiosk
    packages:
      - python3-pandas=1.5.3+dfsg-2
"""


def small_spec(directory: Path) -> Path:
    """The example campus with small software profiles, so lab bundles build in seconds."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("software_profiles:\n")
    end = text.index("\n# --- Datasets")
    spec = directory / "campus.yml"
    spec.write_text(text[:start] + SMALL_PROFILES + text[end:], encoding="utf-8")
    return spec


def login_inventory(paths: LabPaths, directory: Path, limit: str = "all") -> Path:
    """The lab inventory with each host's login: the lab admin (sudo) or, if fresh, root."""
    from campus_provision.provision.bootstrap import choose_users, overlay_inventory  # noqa: PLC0415

    inventory = paths.inventory / "hosts.yml"
    users = choose_users(inventory, limit, control.lab_admin(paths))
    return overlay_inventory(inventory, directory, users)


def tasks_with(run: RunResult, kind: str) -> dict[str, set[str]]:
    """Per host, the tasks whose result was ``kind`` ("changed", "skipped", ...), from the
    run's events.jsonl, without their control ids."""
    found: dict[str, set[str]] = {}
    for line in (run.run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        event = parse_event(line)
        if event is not None and event.kind == kind and event.host and event.task:
            found.setdefault(event.host, set()).add(event.task.partition(" | ")[0])
    return found


def changed_tasks(run: RunResult) -> dict[str, set[str]]:
    """Per host, the tasks that reported changed."""
    return tasks_with(run, "changed")
