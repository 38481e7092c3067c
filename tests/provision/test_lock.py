"""One provisioning run per inventory: a second is refused at once, whoever runs it; a dead
run's lock goes; a lock that cannot be taken stops the run (never an unlocked run)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.errors import ProvisionError
from campus_provision.provision.lock import LOCK_NAME, inventory_lock, lock_path
from campus_provision.render import render_files, write_tree
from campus_provision.spec import load_spec
from tests.conftest import EXAMPLE

HOLDER = """
import sys
from pathlib import Path
from campus_provision.provision.lock import inventory_lock
with inventory_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(inventory: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(inventory)], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def test_a_second_run_on_the_same_inventory_is_refused(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    inventory = tmp_path / "hosts.yml"
    proc = holder(inventory)
    with (
        pytest.raises(ProvisionError, match=rf"pid {proc.pid}, started 20\d\d-") as err,
        inventory_lock(inventory),
    ):
        pass
    assert f"another run is provisioning {inventory}" in str(err.value)
    (tmp_path / "other").mkdir()
    with inventory_lock(tmp_path / "other" / "hosts.yml"):  # another inventory: no wait
        pass


def test_the_lock_of_a_killed_run_is_gone(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    inventory = tmp_path / "hosts.yml"
    proc = holder(inventory)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with inventory_lock(inventory) as path:
        assert path == lock_path(inventory)
        assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_provision_refuses_while_another_run_holds_the_inventory(
    tmp_path: Path,
    holder: Callable[[Path], subprocess.Popen[str]],
    run_cli: Callable[..., Result],
) -> None:
    spec = tmp_path / "seoul" / "campus.yml"
    spec.parent.mkdir()
    shutil.copy(EXAMPLE, spec)
    holder(spec.parent / "hosts.yml")
    result = run_cli("provision", spec, "--playbook", spec, "--login", "inventory")
    assert result.exit_code == 1, result.output
    assert "another run is provisioning" in result.output
    assert not (spec.parent / "hosts.yml").exists()  # refused before rendering anything


def test_the_lock_is_beside_the_inventory_and_outlives_renders(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "seoul"
    write_tree(out, render_files(load_spec(EXAMPLE), EXAMPLE.name))
    inventory = out / "hosts.yml"
    proc = holder(inventory)
    path = out / LOCK_NAME
    assert lock_path(inventory) == path
    assert path.is_file() and not path.is_symlink()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # The same lock through the generation's own path, and after the inventory changes.
    assert lock_path(inventory.resolve()) == path
    files = render_files(load_spec(EXAMPLE), "other.yml")
    write_tree(out, files)
    with (
        pytest.raises(ProvisionError, match=rf"pid {proc.pid}, .*lock {path}"),
        inventory_lock(inventory),
    ):
        pass


def test_another_user_meets_the_same_lock(
    tmp_path: Path,
    holder: Callable[[Path], subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inventory = tmp_path / "hosts.yml"
    proc = holder(inventory)
    # Nothing about the lock depends on who asks: another uid finds the holder too.
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with (
        pytest.raises(ProvisionError, match=rf"pid {proc.pid}"),
        inventory_lock(inventory),
    ):
        pass


def test_a_symlinked_lock_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / LOCK_NAME).symlink_to(target)
    with (
        pytest.raises(ProvisionError, match="it is a symlink") as err,
        inventory_lock(tmp_path / "hosts.yml"),
    ):
        pytest.fail("ran with a symlinked lock")
    assert str(err.value).startswith(f"{tmp_path / LOCK_NAME}: cannot take the run lock")
    assert "not running unlocked" in str(err.value)
    assert target.read_text() == ""


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.mkdir(), "it is a directory"),
        (lambda p: os.mkfifo(p, 0o600), "it is not a plain file"),
        (lambda p: (p.write_text(""), p.chmod(0o666)), "its mode is 0666"),
        (lambda p: p.parent.rename(p.parent.parent / "gone"), "there is no directory"),
    ],
    ids=["directory", "fifo", "world-writable", "no-directory"],
)
def test_a_lock_that_cannot_be_taken_stops_the_run(
    tmp_path: Path, make: Callable[[Path], object], why: str
) -> None:
    (tmp_path / "inv").mkdir()
    inventory = tmp_path / "inv" / "hosts.yml"
    make(lock_path(inventory))
    with (
        pytest.raises(ProvisionError, match=why),
        inventory_lock(inventory),
    ):
        pytest.fail("ran without the lock")


def test_a_lock_under_a_file_stops_the_run(tmp_path: Path) -> None:
    # Root may write anywhere, but not into a path whose directory is a plain file.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with (
        pytest.raises(ProvisionError, match=f"{blocker} is not a directory"),
        inventory_lock(blocker / "hosts.yml"),
    ):
        pytest.fail("ran without the lock")
