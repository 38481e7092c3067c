"""``lab down`` leaves nothing behind, after a clean ``up`` and after a killed one."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from campus_provision.lab import control, net
from campus_provision.lab.proc import pids_with
from tests.conftest import EXAMPLE
from tests.lab.conftest import VENV_BIN, lab_paths, require_lab

pytestmark = pytest.mark.lab


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "campus-provision"), "lab", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_down_after_up_leaves_nothing() -> None:
    require_lab()
    paths = lab_paths("cpd")
    control.down(paths)
    up = cli(
        "up", str(EXAMPLE), "--per-site", "1", "--site", "gaepo", "--no-mirror", "--prefix", "cpd"
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "lab 'cpd' up: 8 hosts" in up.stdout
    assert control.leftovers(paths)  # it really made things
    down = cli("down", "--prefix", "cpd")
    assert down.returncode == 0, down.stdout + down.stderr
    assert control.leftovers(paths) == []
    assert not [ns for ns in net.namespaces() if ns.startswith("cpd-")]


def test_down_after_killing_up_half_way_leaves_nothing() -> None:
    require_lab()
    paths = lab_paths("cpk")
    control.down(paths)
    proc = subprocess.Popen(
        [str(VENV_BIN / "campus-provision"), "lab", "up", str(EXAMPLE), "--per-site", "2", "--no-mirror",
         "--prefix", "cpk"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Kill it once some hosts run and before all of them are up.
    deadline = time.monotonic() + 300
    hosts_dir = paths.root / "hosts"
    while time.monotonic() < deadline:
        started = list(hosts_dir.glob("*/nspawn.pid")) if hosts_dir.exists() else []
        if len(started) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert pids_with(paths.marker), "nothing was running when up was killed"

    down = cli("down", "--prefix", "cpk")

    assert down.returncode == 0, down.stdout + down.stderr
    assert control.leftovers(paths) == []


def test_lab_commands_refuse_without_root_in_one_line() -> None:
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         str(VENV_BIN / "campus-provision"), "lab", "status"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "the lab needs root (namespaces, mounts, containers); run it with sudo"
    )
