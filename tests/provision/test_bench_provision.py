"""bench/bench_provision.py without a lab: what it says about a failed run, and --only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_provision.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_provision", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_provision"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _events(run_dir: Path, *events: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_a_failed_runs_host_task_and_message_are_kept(bench: ModuleType, tmp_path: Path) -> None:
    _events(
        tmp_path / "run",
        {"kind": "changed", "host": "sgm-a01", "task": "campus_audit : Make a drop-in"},
        {"kind": "failed", "host": "sgm-a01", "task": "campus_audit : Install auditd",
         "msg": "Could not import the python3-apt module\nusing /usr/bin/python3"},
        {"kind": "unreachable", "host": "gp-l1-01", "task": "campus_audit : Install auditd",
         "msg": "ssh: connect to host 10.22.0.11 port 22: No route to host"},
    )  # fmt: skip
    assert bench.failures_from_events(tmp_path / "run") == [
        "sgm-a01: campus_audit : Install auditd: Could not import the python3-apt module "
        "using /usr/bin/python3",
        "gp-l1-01: campus_audit : Install auditd: ssh: connect to host 10.22.0.11 port 22: "
        "No route to host",
    ]
    assert bench.changed_tasks_from_events(tmp_path / "run") == [
        "sgm-a01: campus_audit : Make a drop-in"
    ]


def test_the_report_names_mitogens_failure(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = {"seconds": 61.6, "rc": 2, "changed": {"sgm-a01": 28}, "failed": {"sgm-a01": 1},
              "run_dir": "/gone", "changed_tasks": [], "ok": False,
              "failures": ["sgm-a01: campus_audit : Install auditd: no python3-apt"]}  # fmt: skip
    code = bench.report({"mitogen": {"reset_seconds": 0.0, "first": failed}},
                        bench.machine(), [], "mitogen 0.3.54 loads", False, {})  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "its runs failed: sgm-a01: campus_audit : Install auditd: no python3-apt" in out
    assert "FAILED: first run (rc 2)" in out


def test_only_picks_the_configurations(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_provision.py", "--only", "mitogen"])
    assert bench.parse_args().only == ["mitogen"]
    monkeypatch.setattr(sys, "argv", ["bench_provision.py", "--only", "fast"])
    with pytest.raises(SystemExit):
        bench.parse_args()
