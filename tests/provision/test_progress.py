"""``provision`` with its output in a log: plain lines as the run goes, through the real
code path, with a fake ansible-playbook writing the callback's events."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.cli import provision as provision_cli
from campus_provision.provision.events import Event
from campus_provision.provision.progress import ProgressLines
from tests.conftest import EXAMPLE, ROOT
from tests.provision import fake_ansible
from tests.provision.fake_ansible import play, result, stats, task

PCS = ("sgm-a01", "sgm-a02", "sgm-a03")
LIMIT = ",".join(PCS)
LOCKDOWN = "Lock down campus workstations"
USB = "campus_usb : Block storage"

ROUND = [
    *play("Campus mirrors", 0),
    *play("Campus log hosts", 0),
    *play("Campus time servers", 0),
    *play(LOCKDOWN, 3, 1000.0),
    task("campus_apt_client : Trust the archive key", 1000.0),
    result("ok", "sgm-a01", "campus_apt_client : Trust the archive key", 1001.0),
    result("changed", "sgm-a02", "campus_apt_client : Trust the archive key", 1001.0),
    result("ok", "sgm-a03", "campus_apt_client : Trust the archive key", 1001.0),
    task(USB, 1100.0),  # over a minute on: the log hears that the play still runs
    result("changed", "sgm-a01", USB, 1101.0),
    result("failed", "sgm-a02", USB, 1102.0, msg="usb [blocked] by policy"),
    {"kind": "wait"},  # the FAILED line must be out before anything else happens
    result("ok", "sgm-a03", USB, 1103.0),
    stats("sgm-a01", ok=2, changed=1),
    stats("sgm-a02", ok=1, changed=1, failures=1),
    stats("sgm-a03", ok=2),
]

# Runs the CLI in a process of its own with the fake in place of ansible-playbook.
LAUNCH = (
    "import os, sys\n"
    "from campus_provision.provision import runner\n"
    "runner.ansible_playbook = lambda: os.environ['FAKE_ANSIBLE_PLAYBOOK']\n"
    "from campus_provision.cli import app\n"
    "sys.argv[0] = 'campus-provision'\n"
    "app()\n"
)


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "seoul" / "campus.yml"
    spec.parent.mkdir()
    shutil.copy(EXAMPLE, spec)
    return spec


def _playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "site.yml"  # the fake never reads it; provision wants it to exist
    playbook.write_text("---\n[]\n")
    return playbook


def test_a_piped_run_prints_plays_hosts_and_failures_as_they_happen(tmp_path: Path) -> None:
    fake = fake_ansible.install(tmp_path / "fake", [(ROUND, 2)])
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_ANSIBLE_PLAYBOOK=str(fake.script))
    cmd = [sys.executable, "-c", LAUNCH, "provision", str(_spec(tmp_path)),
           "--playbook", str(_playbook(tmp_path)), "--run-dir", str(run_dir),
           "--limit", LIMIT, "--login", "inventory"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for raw in proc.stdout:  # stdout is a pipe, not a terminal
            seen.append(raw.decode().rstrip("\n"))
            if seen[-1].startswith("FAILED sgm-a02"):
                # ansible-playbook is still running (it waits for "go"): the line came at once
                assert proc.poll() is None
                assert '"stats"' not in (run_dir / "events.jsonl").read_text()
                fake.go()
                break
        rest = proc.stdout.read().decode().splitlines()
    finally:
        fake.go()
        proc.wait(timeout=60)
    out = seen + rest
    text = "\n".join(out)
    assert proc.returncode == 1, text
    assert f"play '{LOCKDOWN}': 3 hosts" in out
    assert "  ... 1m40s into play 'Lock down campus workstations', 3 hosts still in it; " \
        f"now at task '{USB}'" in out  # fmt: skip
    assert f"FAILED sgm-a02: {USB}: usb [blocked] by policy" in seen
    # Each host's counts when the play ends, after the failure line.
    host_lines = [ln for ln in rest if ln.startswith("  sgm-a0")]
    assert host_lines == [
        "  sgm-a01: ok 2, changed 1, failed 0, unreachable 0 (1m40s)",
        "  sgm-a02: ok 1, changed 1, failed 1, unreachable 0 (1m42s)",
        "  sgm-a03: ok 2, changed 0, failed 0, unreachable 0 (1m42s)",
    ]
    # Plays with no host are information, said once, after the run.
    note = f"plays with no host in --limit {LIMIT}: Campus mirrors, Campus log hosts, " \
        "Campus time servers"  # fmt: skip
    assert out.count(note) == 1
    assert "no hosts matched" not in text
    assert "'Campus mirrors'" not in text  # no play line for a play without hosts
    assert out.index(note) > out.index(host_lines[-1])
    assert "FAILED: 3 hosts, changed 2, failed 1, unreachable 0" in text


def test_heartbeat_is_at_most_once_a_minute() -> None:
    lines = ProgressLines()
    said = []
    for event in (
        Event(kind="play", play="p", hosts=2, time=0.0),
        Event(kind="task", task="a", time=30.0),
        Event(kind="task", task="b", time=61.0),
        Event(kind="task", task="c", time=100.0),
        Event(kind="task", task="d", time=125.0),
    ):
        said += lines.feed(event)
    assert said == [
        "play 'p': 2 hosts",
        "  ... 1m01s into play 'p', 2 hosts still in it; now at task 'b'",
        "  ... 2m05s into play 'p', 2 hosts still in it; now at task 'd'",
    ]


def test_a_terminal_keeps_the_live_display(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_ansible.install(tmp_path / "fake", [([e for e in ROUND if e["kind"] != "wait"], 2)])
    fake_ansible.use(fake, monkeypatch)
    monkeypatch.setattr(type(provision_cli.console), "is_terminal", property(lambda _: True))
    started = time.monotonic()
    out = run_cli("provision", _spec(tmp_path), "--playbook", _playbook(tmp_path),
                  "--run-dir", tmp_path / "run", "--limit", LIMIT,
                  "--login", "inventory").output  # fmt: skip
    assert time.monotonic() - started < 60
    assert f"FAILED sgm-a02: {USB}: usb [blocked] by policy" in out
    assert f"play '{LOCKDOWN}'" not in out and "  sgm-a01: ok" not in out  # no log lines
