"""run_playbook with the real ansible-playbook against local hosts.

Four inventory hosts: pc1, pc2 and pc4 run locally, pc3 is an SSH host at a closed port
(unreachable). The runs are module-scoped and shared between the assertions: each costs
a few seconds.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.errors import ProvisionError
from campus_provision.provision import Event, HostSummary, RunResult, run_playbook

# Strings that must never be written anywhere a run leaves files.
NO_LOG_SECRET = "nolog-Secret-4f1c9a"  # noqa: S105 - a test marker
EXTRA_SECRET = "xv-Secret-77d0b2"  # noqa: S105 - a test marker

PLAYBOOK = """\
---
- name: Provision the test PCs
  hosts: all
  gather_facts: false
  roles:
    - demo

- name: Second play
  hosts: all
  gather_facts: false
  tasks:
    - name: Only the survivors
      ansible.builtin.debug:
        msg: survived
"""

TASKS = f"""\
---
- name: Write the marker file
  ansible.builtin.copy:
    content: "{{{{ inventory_hostname }}}}\\n"
    dest: "{{{{ out_dir }}}}/{{{{ inventory_hostname }}}}.txt"
    mode: "0644"
  tags: [write]
- name: Probe
  ansible.builtin.command: "true"
  changed_when: false
  tags: [probe]
- name: Never
  ansible.builtin.debug:
    msg: never
  when: false
- name: Use the extra-vars secret quietly
  ansible.builtin.assert:
    that: campus_secret is match('^xv-')
    quiet: true
- name: Handle a secret
  ansible.builtin.command: "echo {NO_LOG_SECRET}"
  changed_when: false
  no_log: true
- name: Fail with a secret
  ansible.builtin.command: "sh -c 'echo {NO_LOG_SECRET} >&2; exit 3'"
  no_log: true
  when: inventory_hostname == "pc4"
- name: Break pc2
  ansible.builtin.fail:
    msg: "pc2 is broken on purpose"
  when: inventory_hostname == "pc2"
- name: Carry on
  ansible.builtin.debug:
    msg: still here
- name: Recover from a failure
  block:
    - name: Fail and be rescued
      ansible.builtin.fail:
        msg: "rescued later"
      when: inventory_hostname == "pc1"
  rescue:
    - name: Rescue
      ansible.builtin.debug:
        msg: rescued
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Project:
    """A tiny playbook with its role, an inventory, and where the PCs write files."""

    root: Path
    playbook: Path
    inventory: Path

    def out_dir(self, name: str) -> Path:
        path = self.root / "out" / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("provision")
    (root / "roles" / "demo" / "tasks").mkdir(parents=True)
    (root / "roles" / "demo" / "tasks" / "main.yml").write_text(TASKS)
    (root / "site.yml").write_text(PLAYBOOK)
    (root / "inventory").mkdir()
    (root / "inventory" / "hosts.yml").write_text(
        f"""\
---
all:
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  children:
    local_pcs:
      vars:
        ansible_connection: local
      hosts:
        pc1:
        pc2:
        pc4:
    far_pcs:
      hosts:
        pc3:
          ansible_connection: ssh
          ansible_host: 127.0.0.1
          ansible_port: {_closed_port()}
"""
    )
    return Project(root, root / "site.yml", root / "inventory" / "hosts.yml")


def _processes_mentioning(text: str) -> list[list[str]]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(text in a for a in args):
            found.append(args)
    return found


@dataclass
class Observed:
    """A run, its events, and what was seen of it from outside while it ran."""

    result: RunResult
    events: list[Event]
    out_dir: Path
    argvs: list[list[str]]
    extra_modes: list[int]


def _observe(project: Project, name: str, **kwargs: Any) -> Observed:
    run_dir = project.root / "runs" / name
    out_dir = project.out_dir(name)
    events: list[Event] = []
    argvs: list[list[str]] = []
    extra_modes: list[int] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind == "play" and sum(e.kind == "play" for e in events) == 1:
            # ansible-playbook is running: look at it from outside, once
            argvs.extend(_processes_mentioning(str(project.playbook)))
            extra_modes.extend(
                stat.S_IMODE(p.stat().st_mode) for p in run_dir.glob(".extra-vars-*")
            )

    result = run_playbook(
        project.playbook,
        project.inventory,
        run_dir,
        extra_vars={"out_dir": str(out_dir), "campus_secret": EXTRA_SECRET},
        on_event=on_event,
        **kwargs,
    )
    return Observed(result, events, out_dir, argvs, extra_modes)


@pytest.fixture(scope="module")
def full(project: Project) -> Observed:
    return _observe(project, "full")


@pytest.fixture(scope="module")
def checked(project: Project) -> Observed:
    return _observe(project, "check", check=True, limit="pc1")


@pytest.fixture(scope="module")
def tagged(project: Project) -> Observed:
    return _observe(project, "tags", tags="probe")


def _host(result: RunResult, name: str) -> HostSummary:
    return next(h for h in result.hosts if h.host == name)


def test_counts_per_host_follow_ansibles_recap(full: Observed) -> None:
    pc1 = _host(full.result, "pc1")
    # ok counts the changed task too, as Ansible's recap does; a rescued failure is no failure.
    assert (pc1.ok, pc1.changed, pc1.skipped, pc1.failed, pc1.unreachable) == (7, 1, 3, 0, 0)
    assert pc1.reason is None and pc1.failed_task is None
    assert 0 < pc1.seconds < full.result.seconds
    assert (full.out_dir / "pc1.txt").read_text() == "pc1\n"
    assert [h.host for h in full.result.hosts] == ["pc1", "pc2", "pc3", "pc4"]


def test_a_failing_host_does_not_stop_the_others(full: Observed) -> None:
    pc2 = _host(full.result, "pc2")
    assert pc2.failed == 1
    assert pc2.failed_task == "demo : Break pc2"
    assert pc2.reason == "pc2 is broken on purpose"
    carried_on = [e.host for e in full.events if e.kind == "ok" and e.task == "demo : Carry on"]
    assert carried_on == ["pc1"]
    assert full.result.rc != 0
    assert not full.result.ok()
    assert full.result.total_changed() == 3  # pc1, pc2, pc4 wrote their files


def test_an_unreachable_host_is_named_with_its_reason(full: Observed) -> None:
    pc3 = _host(full.result, "pc3")
    assert pc3.unreachable == 1 and pc3.ok == 0
    assert pc3.failed_task == "demo : Write the marker file"
    assert pc3.reason is not None and "refused" in pc3.reason.lower()
    assert "\n" not in pc3.reason and len(pc3.reason) <= 300


def test_events_arrive_in_order_with_the_plays_host_count(full: Observed) -> None:
    assert full.events[0].kind == "play"
    # The second play runs only on the host that neither failed nor was unreachable.
    assert [e.hosts for e in full.events if e.kind == "play"] == [4, 1]
    survivors = [e.host for e in full.events if e.task == "Only the survivors" and e.host]
    assert survivors == ["pc1"]
    tasks = [e.task for e in full.events if e.kind == "task"]
    assert tasks[:2] == ["demo : Write the marker file", "demo : Probe"]
    assert {e.host for e in full.events if e.kind == "stats"} == {"pc1", "pc2", "pc3", "pc4"}
    lines = (full.result.run_dir / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(full.events)
    assert all(json.loads(line)["kind"] for line in lines)


def test_a_no_log_result_is_hidden_everywhere(full: Observed) -> None:
    pc4 = _host(full.result, "pc4")
    assert pc4.failed == 1
    assert pc4.failed_task == "demo : Fail with a secret"
    assert pc4.reason == "output hidden (no_log)"
    for path in full.result.run_dir.rglob("*"):
        if path.is_file():
            assert NO_LOG_SECRET.encode() not in path.read_bytes(), path


def test_extra_vars_stay_out_of_argv_and_the_run_dir(full: Observed) -> None:
    mine = [a for a in full.argvs if any(x.endswith("ansible-playbook") for x in a[:2])]
    assert mine, full.argvs
    for argv in full.argvs:
        assert not any(EXTRA_SECRET in a for a in argv), argv
    assert any(a.startswith("@") and ".extra-vars-" in a for a in mine[0])
    assert full.extra_modes == [0o600]
    run_dir = full.result.run_dir
    assert not list(run_dir.glob(".extra-vars-*"))
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert EXTRA_SECRET.encode() not in path.read_bytes(), path


def test_timings_list_every_task_slowest_first(full: Observed) -> None:
    timings = json.loads((full.result.run_dir / "timings.json").read_text())
    names = [t["task"] for t in timings]
    assert "demo : Write the marker file" in names and "demo : Carry on" in names
    seconds = [t["seconds"] for t in timings]
    assert seconds == sorted(seconds, reverse=True)
    write = next(t for t in timings if t["task"] == "demo : Write the marker file")
    assert set(write["hosts"]) == {"pc1", "pc2", "pc3", "pc4"}  # pc3 until unreachable


def test_the_generated_ansible_cfg(full: Observed) -> None:
    cfg = (full.result.run_dir / "ansible.cfg").read_text()
    for line in (
        "pipelining = True",
        "forks = 4",
        "callbacks_enabled = campus_events",
        "retry_files_enabled = False",
        "interpreter_python = auto_silent",
    ):
        assert line in cfg.splitlines(), line
    assert "ControlMaster=auto" in cfg and "ControlPersist=60s" in cfg
    assert "ServerAliveInterval=10 -o ServerAliveCountMax=3" in cfg
    control_dir = next(
        ln.split("=", 1)[1].strip() for ln in cfg.splitlines() if ln.startswith("control_path_dir")
    )
    # Short enough for ssh's socket names (a UNIX socket path has 107 bytes).
    assert len(control_dir) < 40 and Path(control_dir).is_dir()
    assert "ok: [pc1]" in (full.result.run_dir / "ansible.log").read_text()


def test_check_mode_reports_the_change_and_makes_none(checked: Observed) -> None:
    assert [h.host for h in checked.result.hosts] == ["pc1"]  # --limit
    pc1 = checked.result.hosts[0]
    assert pc1.changed == 1 and pc1.failed == 0
    assert not (checked.out_dir / "pc1.txt").exists()
    assert checked.result.ok()


def test_tags_run_only_the_tagged_tasks(tagged: Observed) -> None:
    assert {e.task for e in tagged.events if e.kind == "task"} == {"demo : Probe"}
    assert not list(tagged.out_dir.iterdir())
    assert _host(tagged.result, "pc2").failed == 0  # its failing task is not tagged
    assert _host(tagged.result, "pc1").ok == 1  # nor are the block and the second play


def test_a_missing_playbook_or_inventory_is_one_line(project: Project, tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match=r"nope\.yml: no such playbook$"):
        run_playbook(tmp_path / "nope.yml", project.inventory, tmp_path / "run")
    with pytest.raises(ProvisionError, match=r"hosts\.yml: no such inventory"):
        run_playbook(project.playbook, tmp_path / "hosts.yml", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_past_its_timeout_is_stopped(project: Project, tmp_path: Path) -> None:
    playbook = tmp_path / "slow.yml"
    playbook.write_text(
        "---\n- name: Slow\n  hosts: pc1\n  gather_facts: false\n  tasks:\n"
        "    - name: Sleep\n      ansible.builtin.command: sleep 60\n"
    )
    run_dir = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(ProvisionError, match=r"within 3 s .*ansible\.log"):
        run_playbook(playbook, project.inventory, run_dir, timeout=3)
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 5
    while _processes_mentioning(str(playbook)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(playbook))


def _interrupt(_: Event) -> None:
    raise KeyboardInterrupt


def test_an_interrupted_run_leaves_no_process_and_no_secret(
    project: Project, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_playbook(project.playbook, project.inventory, run_dir, on_event=_interrupt,
                     extra_vars={"out_dir": str(tmp_path), "campus_secret": EXTRA_SECRET})  # fmt: skip
    assert not _processes_mentioning(str(run_dir))
    assert not list(run_dir.glob(".extra-vars-*"))


STOPPING = """\
---
- name: Log hosts
  hosts: pc2
  gather_facts: false
  tasks:
    - name: Fail everywhere
      ansible.builtin.fail:
        msg: "every log host is down"

- name: Time servers
  hosts: pc3
  gather_facts: false
  tasks:
    - name: Reach the far host
      ansible.builtin.ping:

- name: PCs
  hosts: pc1,pc2,pc4
  gather_facts: false
  tasks:
    - name: Lock down
      ansible.builtin.debug:
        msg: locked down
"""


def test_plays_after_one_that_failed_everywhere_still_run(project: Project, tmp_path: Path) -> None:
    # Ansible ends the playbook after "Log hosts" (its one host failed) and again after
    # "Time servers" (its one host unreachable); the runner runs the rest each time.
    playbook = tmp_path / "stopping.yml"
    playbook.write_text(STOPPING)
    events: list[Event] = []
    run = run_playbook(playbook, project.inventory, tmp_path / "run", on_event=events.append)
    not_run = [(e.play, e.targets) for e in events if e.kind == "not_run"]
    assert not_run == [
        ("Time servers", ("pc3",)), ("PCs", ("pc1", "pc4")), ("PCs", ("pc1", "pc4"))
    ]  # fmt: skip
    resumes = [(e.play, e.targets) for e in events if e.kind == "resume"]
    assert resumes == [("Log hosts", ("pc1", "pc3", "pc4")), ("Time servers", ("pc1", "pc4"))]
    locked = [e.host for e in events if e.kind == "ok" and e.task == "Lock down"]
    assert sorted(locked) == ["pc1", "pc4"]  # pc2 failed before: Ansible leaves it out
    by_host = {h.host: h for h in run.hosts}
    assert by_host["pc2"].failed == 1 and by_host["pc2"].reason == "every log host is down"
    assert by_host["pc3"].unreachable == 1
    assert (by_host["pc1"].ok, by_host["pc1"].not_run) == (1, False)
    assert run.rc == 4 and not run.ok()
    assert "locked down" in (run.run_dir / "ansible.log").read_text()
