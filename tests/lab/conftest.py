"""Lab fixtures: real Debian hosts in namespaces; lab tests fail (never skip) without root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING

import pytest
import yaml

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import Driver, LabHost
from campus_provision.lab.state import LabPaths, read_record, state_dir_from_env
from campus_provision.provision.events import parse_event
from campus_provision.provision.runner import RunResult, run_playbook
from campus_provision.verify.results import ControlResult
from campus_provision.verify.runner import Target, run_checks
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


@dataclass(frozen=True)
class Lab:
    """Sangam with its mirror serving the lab bundle, and one play of ``roles`` to run."""

    paths: LabPaths
    result: UpResult
    extra: dict[str, str]  # campus_bundle_dir, campus_signing_pubkey
    roles: tuple[str, ...]

    def host(self, name: str) -> LabHost:
        return self.result.plan.host(name)

    def ssh(self, name: str, command: str, stdin: str | None = None) -> CompletedProcess[str]:
        # Always root's own SSH: these roles leave root login alone, and under TCG load the
        # shared helper's 3 s probe for root can time out and fall back to an admin account
        # that campus_accounts (not in this play) would have created.
        return subprocess.run([*control.ssh_args(self.paths, self.host(name)), command],
                              capture_output=True, text=True, timeout=300, input=stdin,
                              check=False)  # fmt: skip

    def sh(self, name: str, command: str) -> str:
        out = self.ssh(name, command)
        assert out.returncode == 0, f"{name}: {command}: {out.stderr}"
        return out.stdout

    def play(self, tmp: Path, hosts: tuple[str, ...], *, check: bool = False,
             tags: str | None = None, group: str = "workstations",
             roles: tuple[str, ...] | None = None, **extra: object) -> RunResult:  # fmt: skip
        """Run the lab's play (or ``roles`` on ``group``) on ``hosts``; print how long it took."""
        roles = roles or self.roles
        play = [{"name": f"{', '.join(roles)} under test", "hosts": group,
                 "gather_facts": False, "roles": list(roles)}]  # fmt: skip
        playbook = tmp / "play.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
        run = run_playbook(
            playbook, self.paths.inventory / "hosts.yml",
            tmp / f"run-{len(list(tmp.glob('run-*')))}",
            limit=",".join(hosts), check=check, diff=check, tags=tags,
            extra_vars={**self.extra, **extra},
        )  # fmt: skip
        mode = " --check" if check else ""
        print(f"playbook{mode} on {','.join(hosts)}: {run.seconds:.0f} s")
        return run

    def checks(self, tmp: Path, hosts: tuple[str, ...],
               controls: tuple[str, ...]) -> list[ControlResult]:  # fmt: skip
        target = Target(inventory=self.paths.inventory / "hosts.yml",
                        campus=self.result.plan.campus, spec_sha256="0" * 64,
                        limit=",".join(hosts), controls=controls, workers=2)  # fmt: skip
        return run_checks(target, tmp / f"junit-{len(list(tmp.glob('junit-*')))}.xml").results

    def statuses(self, tmp: Path, hosts: tuple[str, ...],
                 controls: tuple[str, ...]) -> dict[tuple[str, str], str]:  # fmt: skip
        return {(r.host, r.control): r.status for r in self.checks(tmp, hosts, controls)}


def sangam_lab(tmp: Path, prefix: str, per_site: int, driver: Driver,
               roles: tuple[str, ...]) -> Iterator[Lab]:  # fmt: skip
    """Sangam with ``per_site`` PCs and its mirror, up for as long as the caller holds it."""
    require_lab()
    paths = lab_paths(prefix)
    control.down(paths)
    started = time.monotonic()
    result = control.up(small_spec(tmp), paths, per_site=per_site, driver=driver,
                        sites=["sangam"], mirror=True, progress=print)  # fmt: skip
    print(f"lab {prefix} up in {time.monotonic() - started:.0f} s")
    record = read_record(paths) or {}
    extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"]}
    try:
        yield Lab(paths, result, extra, roles)
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


def failures(run: RunResult) -> list[tuple[str, str | None, str | None]]:
    """Per failed or unreachable host: the task that failed and why."""
    return [(h.host, h.failed_task, h.reason) for h in run.hosts if h.failed or h.unreachable]


def changed_counts(run: RunResult) -> dict[str, int]:
    return {h.host: h.changed for h in run.hosts}


def changed_log_lines(run: RunResult) -> list[str]:
    """'TASK name: changed: [host]' lines from the run's log, to say what was not idempotent."""
    task, found = "", []
    for line in run.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif line.startswith("changed:"):
            found.append(f"{task}: {line}")
    return found
