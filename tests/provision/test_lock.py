"""One provisioning run per inventory: a second is refused at once, and a dead run's lock goes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.errors import ProvisionError
from campus_provision.provision.lock import inventory_lock, lock_path
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
