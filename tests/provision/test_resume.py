"""A play that fails on every host does not orphan the hosts of the plays after it.

Ansible ends the playbook there; the runner runs the plays it never started on their
hosts, and any host still left out is in the summary as "not run". A fake
ansible-playbook writes the callback's events (``fake_ansible``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from campus_provision.provision import run_playbook
from tests.conftest import EXAMPLE
from tests.provision import fake_ansible
from tests.provision.fake_ansible import play, result, stats, task

PCS = ["sgm-a01", "sgm-a02", "sgm-a03"]
LOGS = ["sgm-log1", "sgm-log2"]
LOCKDOWN = "Lock down campus workstations"
APT = "campus_apt_client : Trust the archive key"
STOPPED = "not run: the play 'Campus log hosts' failed on every host, Ansible stopped"

# Every log host is down: Ansible stops after their play and says which plays never ran.
FIRST: list[dict[str, Any]] = [
    *play("Campus mirrors", 1),
    task("campus_mirror : Publish the bundle", 1000.0),
    result("changed", "sgm-mirror", "campus_mirror : Publish the bundle", 1001.0),
    *play("Campus log hosts", 2),
    task(APT, 1002.0),
    result("unreachable", "sgm-log1", APT, 1003.0, msg="ssh: connect to host: No route"),
    result("unreachable", "sgm-log2", APT, 1003.0, msg="ssh: connect to host: No route"),
    {"kind": "not_run", "play": "Campus time servers", "targets": [], "time": 1004.0},
    {"kind": "not_run", "play": LOCKDOWN, "targets": PCS, "time": 1004.0},
    stats("sgm-mirror", ok=1, changed=1),
    stats("sgm-log1", unreachable=1),
    stats("sgm-log2", unreachable=1),
]
# The round on the PCs alone: the earlier plays match none of them.
SECOND: list[dict[str, Any]] = [
    *play("Campus mirrors", 0),
    *play("Campus log hosts", 0),
    *play("Campus time servers", 0),
    *play(LOCKDOWN, 3),
    task(APT, 1010.0),
    *(result("changed", pc, APT, 1011.0) for pc in PCS),
    *(stats(pc, ok=1, changed=1) for pc in PCS),
]


def _provision(run_cli: Callable[..., Result], tmp_path: Path, *extra: object) -> Result:
    spec = tmp_path / "seoul" / "campus.yml"
    spec.parent.mkdir()
    shutil.copy(EXAMPLE, spec)
    playbook = tmp_path / "site.yml"
    playbook.write_text("---\n[]\n")
    return run_cli("provision", spec, "--playbook", playbook, "--run-dir", tmp_path / "run",
                   "--login", "inventory", *extra)  # fmt: skip


def test_the_pcs_run_after_every_log_host_failed(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_ansible.install(tmp_path / "fake", [(FIRST, 4), (SECOND, 0)])
    fake_ansible.use(fake, monkeypatch)
    res = _provision(run_cli, tmp_path, "--check", "--tags", "apt")
    out = res.output
    assert res.exit_code == 1, out
    assert (
        "Ansible stopped: the play 'Campus log hosts' failed on every host; running the "
        "plays it never started, on the 3 hosts they target"
    ) in out
    first, second = fake.calls()
    # The second round: the same run, limited to the PCs the stopped plays target.
    assert second[second.index("--limit") + 1] == f"@{tmp_path / 'run' / 'resume-1.limit'}"
    assert (tmp_path / "run" / "resume-1.limit").read_text().split() == PCS
    at = second.index("--limit")
    assert second[:at] + second[at + 2 :] == first  # --check, --tags, the playbook...
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    hosts = {h["host"]: h for h in summary["hosts"]}
    assert set(hosts) == {"sgm-mirror", *LOGS, *PCS}
    for pc in PCS:
        assert (hosts[pc]["changed"], hosts[pc]["not_run"], hosts[pc]["reason"]) == (1, False, None)
    assert hosts["sgm-log1"]["unreachable"] == 1
    assert summary["rc"] == 4 and summary["ok"] is False
    assert summary["plays_without_hosts"] == []  # the second round's empty plays are its own
    assert "plays with no host" not in out
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert [t["task"] for t in timings] == ["round 1", "round 0"]  # both rounds, slowest first
    assert "FAILED: 6 hosts, changed 4, failed 0, unreachable 2" in out


def test_hosts_no_round_reached_are_listed_as_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second round stops the same way (it never does with Ansible): no third round,
    # and the PCs are in the summary with why they were not run.
    fake = fake_ansible.install(tmp_path / "fake", [(FIRST, 4)])
    fake_ansible.use(fake, monkeypatch)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n" + "".join(f"    {h}:\n" for h in PCS))
    playbook = tmp_path / "site.yml"
    playbook.write_text("---\n[]\n")
    run = run_playbook(playbook, inventory, tmp_path / "run")
    assert len(fake.calls()) == 2
    pcs = [h for h in run.hosts if h.host in PCS]
    assert [(h.host, h.not_run, h.reason, h.ok) for h in pcs] == [
        (pc, True, STOPPED, 0) for pc in PCS
    ]
    assert not run.ok()
