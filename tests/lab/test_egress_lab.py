"""campus_egress on real lab PCs: NET checks fail before, pass after, SSH survives, changed=0."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import OUTSIDE_HOST
from campus_provision.lab.state import LabPaths
from campus_provision.verify.results import ControlResult
from campus_provision.verify.runner import Target, run_checks
from tests.conftest import EXAMPLE, ROOT
from tests.lab.conftest import VENV_BIN, lab_paths, require_lab, ssh

pytestmark = pytest.mark.lab
Lab = tuple[LabPaths, UpResult]
CONTROLS = ("CP-NET-01", "CP-NET-03")


@pytest.fixture(scope="module")
def egress_lab() -> Iterator[Lab]:
    require_lab()
    paths = lab_paths("cpe")
    control.down(paths)
    result = control.up(EXAMPLE, paths, per_site=1)
    try:
        yield paths, result
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


def playbook(paths: LabPaths, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}  # fmt: skip
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(paths.inventory / "hosts.yml"),
         str(ROOT / "playbooks" / "site.yml"), "--tags", "campus_egress", "--limit", "workstations", *extra],
        capture_output=True, text=True, timeout=900, check=False, env=env, cwd=ROOT,
    )  # fmt: skip


def recap(output: str) -> dict[str, dict[str, int]]:
    stats = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        stats[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return stats


def results(paths: LabPaths, result: UpResult, tmp: Path) -> dict[tuple[str, str], ControlResult]:
    target = Target(inventory=paths.inventory / "hosts.yml", campus=result.plan.campus,
                    spec_sha256="0" * 64, controls=CONTROLS, workers=2)  # fmt: skip
    return {(r.host, r.control): r for r in run_checks(target, tmp / "junit.xml").results}


def statuses(paths: LabPaths, result: UpResult, tmp: Path) -> dict[tuple[str, str], str]:
    return {k: r.status for k, r in results(paths, result, tmp).items()}


def test_egress_role_turns_the_net_checks_green(egress_lab: Lab, tmp_path: Path) -> None:
    paths, result = egress_lab
    before = results(paths, result, tmp_path)
    assert {r.status for r in before.values()} == {"fail"}, before
    # On a bare PC every probe gets out: TCP, the outside's UDP echo and ping.
    net_01 = [r for (_, control), r in before.items() if control == "CP-NET-01"]
    assert len(net_01) == 2, before
    for message in (r.message for r in net_01):
        assert "reachable: tcp/80, tcp/443, tcp/53, tcp/22, udp/53, udp/123, udp/443, icmp" in (
            message
        ), message

    check = playbook(paths, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]

    first = playbook(paths)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert all(s["changed"] > 0 and s["failed"] == 0 for s in recap(first.stdout).values())

    after = statuses(paths, result, tmp_path)
    assert set(after.values()) == {"pass"}, after

    second = playbook(paths)
    assert second.returncode == 0
    assert {h: s["changed"] for h, s in recap(second.stdout).items()} == dict.fromkeys(
        recap(second.stdout), 0
    )


def test_admin_ssh_still_works_and_outside_stays_closed(egress_lab: Lab) -> None:
    paths, result = egress_lab
    host = result.plan.host("sgm-a01")
    out = ssh(paths, host, f"nft list chain inet campus_egress output >/dev/null && "
              f"timeout 3 bash -c 'exec 3<>/dev/tcp/{OUTSIDE_HOST}/443' && echo open || echo closed")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "closed"
