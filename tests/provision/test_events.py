"""The pieces of a run without running Ansible: events, summaries, failure messages, config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from campus_provision.ansible_plugins.callback.campus_events import failure_message
from campus_provision.errors import ProvisionError
from campus_provision.provision.ansiblecfg import (
    LOOKUP_PLUGIN_DIR,
    forks_for,
    inventory_hosts,
    render_ansible_cfg,
)
from campus_provision.provision.events import Event, EventTail, parse_event
from campus_provision.provision.runner import _environment, last_error, summarize


def test_parse_event_reads_what_the_callback_writes() -> None:
    line = json.dumps(
        {"kind": "failed", "time": 10.5, "host": "pc2", "task": "r : t", "msg": "boom",
         "seconds": 1.25, "extra": "ignored"}
    )  # fmt: skip
    assert parse_event(line) == Event(
        kind="failed", host="pc2", task="r : t", msg="boom", seconds=1.25, time=10.5
    )
    stats = parse_event('{"kind": "stats", "host": "pc1", "counts": {"ok": 3, "failures": 0}}')
    assert stats is not None and dict(stats.counts) == {"ok": 3, "failures": 0}
    for bad in ("", "not json", "[1]", '{"kind": "nonsense"}'):
        assert parse_event(bad) is None


def test_event_tail_waits_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # not there yet
    path.write_text('{"kind": "play", "hosts": 2}\n{"kind": "ta')
    assert [e.kind for e in tail.read()] == ["play"]
    with path.open("a") as fh:
        fh.write('sk", "task": "x"}\n')
    assert [(e.kind, e.task) for e in tail.read()] == [("task", "x")]
    assert tail.read() == []


def _result(
    kind: str, host: str, t: float, seconds: float, task: str = "t", msg: str | None = None
) -> Event:
    return Event(kind=kind, host=host, task=task, msg=msg, time=t, seconds=seconds)


def test_summary_uses_the_recap_and_ignores_a_rescued_failure() -> None:
    events = [
        Event(kind="play", play="p", hosts=2),
        _result("changed", "pc1", 101.0, 1.0),
        _result("failed", "pc1", 103.0, 0.5, task="try", msg="rescued later"),
        _result("ok", "pc1", 104.0, 0.5),
        _result("ok", "pc2", 102.0, 2.0),
        _result("failed", "pc2", 105.0, 1.0, task="break", msg="broken"),
        Event(kind="stats", host="pc1", counts={"ok": 3, "changed": 1, "failures": 0,
                                                 "rescued": 1, "skipped": 0, "unreachable": 0}),
        Event(kind="stats", host="pc2", counts={"ok": 1, "changed": 0, "failures": 1,
                                                 "skipped": 0, "unreachable": 0}),
    ]  # fmt: skip
    pc1, pc2 = summarize(events)
    assert (pc1.host, pc1.ok, pc1.changed, pc1.failed, pc1.reason) == ("pc1", 3, 1, 0, None)
    assert pc1.seconds == pytest.approx(4.0)  # 100.0 (first start) → 104.0
    assert (pc2.failed, pc2.failed_task, pc2.reason) == (1, "break", "broken")


def test_summary_counts_events_when_the_run_ended_before_the_recap() -> None:
    events = [
        _result("changed", "pc1", 1.0, 0.1),
        _result("skipped", "pc1", 2.0, 0.1),
        _result("unreachable", "pc2", 1.0, 0.1, task="first", msg="no route"),
    ]
    pc1, pc2 = summarize(events)
    assert (pc1.ok, pc1.changed, pc1.skipped) == (1, 1, 1)
    assert (pc2.unreachable, pc2.failed_task, pc2.reason) == (1, "first", "no route")


@pytest.mark.parametrize(
    ("result", "no_log", "expected"),
    [
        ({"msg": "plain\nmessage  here"}, False, "plain message here"),
        ({"msg": "non-zero return code", "rc": 3, "stderr": "a\nthe cause\n"}, False,
         "non-zero return code: the cause"),
        ({"stderr": "first\nlast line\n", "rc": 1}, False, "last line"),
        ({"msg": "MODULE FAILURE", "module_stderr": "Traceback\nValueError: x"}, False,
         "MODULE FAILURE: ValueError: x"),
        ({"msg": "One or more items failed", "results": [{"failed": False},
          {"failed": True, "msg": "item two broke"}]}, False, "item two broke"),
        ({"msg": "One or more items failed", "results": [
          {"failed": True, "_ansible_no_log": True, "msg": "s3cret"}]}, False,
         "output hidden (no_log)"),
        ({"msg": "s3cret"}, True, "output hidden (no_log)"),
        ({"msg": "s3cret", "_ansible_no_log": True}, False, "output hidden (no_log)"),
        ({"censored": "the output has been hidden", "changed": True}, False,
         "output hidden (no_log)"),
        ({"failed": True, "changed": False, "detail": 7}, False, "{'detail': 7}"),
        ({"failed": True}, False, "failed without a message"),
    ],
)  # fmt: skip
def test_failure_message_is_one_line(
    result: dict[str, object], no_log: bool, expected: str
) -> None:
    assert failure_message(result, no_log) == expected


def test_failure_message_is_cut_to_about_300_characters() -> None:
    message = failure_message({"msg": "x" * 1000})
    assert len(message) == 300 and message.endswith("…")


@pytest.mark.parametrize(("hosts", "forks"), [(0, 1), (1, 1), (3, 3), (25, 25), (91, 25)])
def test_forks_follow_the_host_count(hosts: int, forks: int) -> None:
    assert forks_for(hosts) == forks


def test_inventory_hosts_counts_each_host_once(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    a:\n      hosts:\n        pc1:\n        pc2:\n"
        "    b:\n      children:\n        c:\n          hosts:\n            pc2:\n            pc3:\n"
    )
    assert inventory_hosts(inventory) == ["pc1", "pc2", "pc3"]
    inventory.write_text("[pcs]\npc1\n")
    with pytest.raises(ProvisionError, match="not a YAML inventory"):
        inventory_hosts(inventory)


def test_ansible_cfg_escapes_percent_and_refuses_line_breaks() -> None:
    cfg = render_ansible_cfg(forks=2, roles_path=Path("/x/100%/roles"), control_dir=Path("/c"))
    assert "roles_path = /x/100%%/roles" in cfg.splitlines()
    with pytest.raises(ProvisionError, match="line break"):
        render_ansible_cfg(forks=2, roles_path=Path("/x\n[defaults]"), control_dir=Path("/c"))


def test_runs_find_the_keystore_lookup_and_the_keystore_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = render_ansible_cfg(forks=2, roles_path=Path("/r"), control_dir=Path("/c"))
    assert f"lookup_plugins = {LOOKUP_PLUGIN_DIR}" in cfg.splitlines()
    assert (LOOKUP_PLUGIN_DIR / "campus_volume_key.py").is_file()
    monkeypatch.setenv("CAMPUS_KEYS_DIR", "/srv/keys")
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", "/run/secrets/keystore")
    monkeypatch.setenv("ANSIBLE_LOOKUP_PLUGINS", "/elsewhere")
    env = _environment(os.environ, tmp_path / "ansible.cfg", tmp_path)
    assert env["CAMPUS_KEYS_DIR"] == "/srv/keys"
    assert env["CAMPUS_KEYSTORE_PASSPHRASE_FILE"] == "/run/secrets/keystore"  # noqa: S105 - a path
    assert "ANSIBLE_LOOKUP_PLUGINS" not in env  # the generated ansible.cfg decides


def test_last_error_finds_ansibles_error_line(tmp_path: Path) -> None:
    log = tmp_path / "ansible.log"
    log.write_text("PLAY\n[ERROR]: first\n[WARNING]: w\n[ERROR]: the last one\nmore\n")
    assert last_error(log) == "the last one"
    log.write_text("ERROR! old style\n")
    assert last_error(log) == "old style"
    assert last_error(tmp_path / "missing.log") is None
