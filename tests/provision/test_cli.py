"""``campus-provision provision``: errors, the live failure lines, the summary, a real run."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from rich.console import Console
from rich.progress import Progress

from campus_provision.cli import provision as provision_cli
from campus_provision.cli.common import console
from campus_provision.cli.provision import _Follow, duration, print_summary
from campus_provision.provision import Event, HostSummary, RunResult
from tests.conftest import EXAMPLE

SECRET = "cli-Secret-93ab1e"  # noqa: S105 - a test marker

# Runs on the rendered inventory's hosts without SSH: the play connects locally.
LOCAL_PLAYBOOK = f"""\
---
- name: Provision locally
  hosts: workstations
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Probe
      ansible.builtin.command: "true"
      changed_when: false
    - name: Keep a secret | CP-ACC-01
      ansible.builtin.command: "sh -c 'echo {SECRET}; exit 1'"
      no_log: true
      when: inventory_hostname == "sgm-a02"
    - name: Break one
      ansible.builtin.fail:
        msg: "broken [on purpose]"
      when: inventory_hostname == "sgm-a03"
"""


def test_help_says_what_and_gives_an_example(run_cli: Callable[..., Result]) -> None:
    result = run_cli("provision", "--help")
    assert result.exit_code == 0
    assert "Example: campus-provision provision " in " ".join(result.stdout.split())


def test_a_missing_spec_is_one_line_and_exit_2(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    result = run_cli("provision", tmp_path / "nope.yml")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"{tmp_path / 'nope.yml'}:1: (file): no such file"
    ]


def test_a_missing_playbook_is_one_line(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    spec = tmp_path / "campus.yml"
    shutil.copy(EXAMPLE, spec)
    result = run_cli(
        "provision", spec, "--playbook", tmp_path / "no.yml", "--run-dir", tmp_path / "r"
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"{tmp_path / 'no.yml'}: no such playbook"


def _summary(**kw: object) -> HostSummary:
    base: dict[str, object] = {"host": "pc1", "ok": 5, "changed": 2, "failed": 0,
                               "unreachable": 0, "skipped": 1, "seconds": 3.25,
                               "reason": None, "failed_task": None}  # fmt: skip
    base.update(kw)
    return HostSummary(**base)  # type: ignore[arg-type]


def test_summary_table_names_each_host_and_why_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = Console(width=200, file=io.StringIO(), highlight=False, soft_wrap=True)
    monkeypatch.setattr(provision_cli, "console", wide)
    result = RunResult(
        rc=2,
        hosts=(
            _summary(),
            _summary(
                host="sgm-a02",
                ok=1,
                changed=0,
                failed=1,
                seconds=75,
                reason="pc is [broken]",
                failed_task="campus_usb : Block storage",
            ),
            _summary(
                host="sgm-a03",
                ok=0,
                changed=0,
                unreachable=1,
                seconds=10,
                reason="no route to host",
                failed_task="Gathering Facts",
            ),
        ),
        run_dir=tmp_path,
        seconds=81,
    )
    print_summary(result)
    out = wide.file.getvalue()  # type: ignore[attr-defined]
    for word in ("host", "changed", "unreachable", "pc1", "3.2s", "1m15s", "sgm-a02", "[broken]",
                 "campus_usb : Block storage", "no route to host"):  # fmt: skip
        assert word in out, word
    assert (
        f"FAILED: 3 hosts, changed 2, failed 1, unreachable 1 in 1m21s; run dir {tmp_path}" in out
    )
    assert "exited" not in out  # the hosts say why


def test_a_failed_run_without_host_failures_names_the_log(tmp_path: Path) -> None:
    (tmp_path / "ansible.log").write_text("[ERROR]: the role 'campus_x' was not found\n")
    with console.capture() as cap:
        print_summary(RunResult(rc=1, hosts=(), run_dir=tmp_path, seconds=1.0))
    out = " ".join(cap.get().split())
    assert "FAILED: 0 hosts" in out
    assert "ansible-playbook exited 1: the role 'campus_x' was not found; see" in out
    assert str(tmp_path / "ansible.log") in out


def test_failures_are_printed_as_they_happen() -> None:
    with console.capture() as cap, Progress(console=console, transient=True) as bar:
        follow = _Follow(bar)
        for event in (
            Event(kind="play", play="Lock down", hosts=2),
            Event(kind="task", task="campus_usb : Block storage"),
            Event(kind="ok", host="pc1", task="campus_usb : Block storage"),
            Event(kind="failed", host="pc2", task="campus_usb : Block storage", msg="[no] luck"),
            Event(kind="unreachable", host="pc3", task="Gathering Facts", msg="timed out"),
        ):
            follow(event)
        assert bar.tasks[0].completed == 3
    out = cap.get()
    assert "FAILED pc2: campus_usb : Block storage: [no] luck" in out
    assert "UNREACHABLE pc3: Gathering Facts: timed out" in out


def test_duration() -> None:
    assert [duration(s) for s in (0.04, 59.9, 60, 3599, 3600, 7325)] == [
        "0.0s", "59.9s", "1m00s", "59m59s", "1h00m", "2h02m"
    ]  # fmt: skip


def test_provision_renders_runs_and_summarizes(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    spec = tmp_path / "seoul" / "campus.yml"
    spec.parent.mkdir()
    shutil.copy(EXAMPLE, spec)
    playbook = tmp_path / "local.yml"
    playbook.write_text(LOCAL_PLAYBOOK)
    run_dir = tmp_path / "run"
    result = run_cli(
        "provision", spec, "--playbook", playbook, "--run-dir", run_dir,
        "--limit", "sgm-a01,sgm-a02,sgm-a03", "--login", "inventory",
    )  # fmt: skip
    out = result.output
    assert result.exit_code == 1, out
    assert (spec.parent / "hosts.yml").is_file()  # rendered first
    assert "rendered the inventory" in out
    assert "FAILED sgm-a02: Keep a secret | CP-ACC-01: output hidden (no_log)" in out
    assert "FAILED sgm-a03: Break one: broken [on purpose]" in out
    assert "FAILED: 3 hosts, changed 0, failed 2, unreachable 0" in out
    assert "forks = 25" in (run_dir / "ansible.cfg").read_text()  # 98 hosts in the inventory
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ok"] is False and summary["check"] is False
    hosts = {h["host"]: h for h in summary["hosts"]}
    assert set(hosts) == {"sgm-a01", "sgm-a02", "sgm-a03"}
    assert hosts["sgm-a03"]["failed"] == 1 and hosts["sgm-a01"]["failed"] == 0
    assert hosts["sgm-a03"]["reason"] == "broken [on purpose]"
    assert SECRET not in out
    for path in run_dir.rglob("*"):
        assert SECRET.encode() not in path.read_bytes(), path


def test_lab_that_is_not_up_is_one_line(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPUS_LAB_STATE", str(tmp_path / "state"))
    result = run_cli("provision", EXAMPLE, "--lab", "--prefix", "t1")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "lab 't1' is not up; run 'campus-provision lab up SPEC' first"
    ]


def test_verify_unlocks_the_key_before_the_run(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    spec = tmp_path / "campus.yml"
    shutil.copy(EXAMPLE, spec)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("not the one\n")
    passphrase.chmod(0o600)
    run_dir = tmp_path / "run"
    result = run_cli("provision", spec, "--verify", "--keys-dir", tmp_path / "keys",
                     "--passphrase-file", passphrase, "--run-dir", run_dir)  # fmt: skip
    assert result.exit_code != 0
    assert "no signing key" in result.output
    assert not run_dir.exists()  # nothing ran


def test_the_site_playbook_needs_a_bundle(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    spec = tmp_path / "campus.yml"
    shutil.copy(EXAMPLE, spec)
    result = run_cli("provision", spec, "--run-dir", tmp_path / "run")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("provision needs --bundle DIR")
    not_a_bundle = run_cli("provision", spec, "--bundle", tmp_path, "--run-dir", tmp_path / "r")
    assert not_a_bundle.exit_code == 1
    assert not_a_bundle.output.splitlines()[-1] == (
        f"{tmp_path}: not a bundle (no bundle.json); see 'bundle build'"
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()


def test_a_host_not_run_is_in_the_table_and_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = Console(width=200, file=io.StringIO(), highlight=False, soft_wrap=True)
    monkeypatch.setattr(provision_cli, "console", wide)
    reason = "not run: the play 'Campus log hosts' failed on every host, Ansible stopped"
    result = RunResult(
        rc=4,
        hosts=(_summary(host="sgm-a01", ok=0, changed=0, skipped=0, seconds=0, reason=reason,
                        not_run=True),),
        run_dir=tmp_path,
        seconds=5,
    )  # fmt: skip
    print_summary(result)
    out = wide.file.getvalue()  # type: ignore[attr-defined]
    assert reason in out
    assert "FAILED: 1 hosts, changed 0, failed 0, unreachable 0, not run 1 in 5.0s" in out
    assert not result.ok()


def test_a_host_refused_over_its_host_key_is_told_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = Console(width=300, file=io.StringIO(), highlight=False, soft_wrap=True)
    monkeypatch.setattr(provision_cli, "console", wide)
    said = "Failed to connect to the host via ssh: Host key verification failed."
    result = RunResult(
        rc=4,
        hosts=(_summary(host="sgm-a01", ok=0, changed=0, skipped=0, seconds=0, reason=said,
                        unreachable=1),),
        run_dir=tmp_path,
        seconds=5,
    )  # fmt: skip
    print_summary(result, inventory=tmp_path / "seoul" / "hosts.yml")
    out = wide.file.getvalue()  # type: ignore[attr-defined]
    assert f"sgm-a01: its SSH host key is not in {tmp_path}/seoul/known_hosts" in out
    assert "campus-provision hosts trust SPEC --limit HOST" in out
