"""The login overlay: a directory inventory that Ansible reads as the rendered one plus users."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from campus_provision.provision.bootstrap import OVERLAY, overlay_inventory
from campus_provision.render import render_files, write_tree
from campus_provision.spec import load_spec
from tests.conftest import EXAMPLE


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    write_tree(tmp_path / "inv", render_files(load_spec(EXAMPLE), EXAMPLE.name))
    return tmp_path / "inv" / "hosts.yml"


def test_overlay_is_absolute_and_says_who_logs_in(
    rendered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    overlay = overlay_inventory(rendered, Path("run/inventory"),
                                {"sgm-a01": "park-seoyeon", "sgm-a02": "root"})  # fmt: skip
    assert overlay.is_absolute() and overlay == tmp_path / "run" / "inventory"
    assert (overlay / "hosts.yml").resolve() == rendered.resolve()
    assert (overlay / "group_vars").resolve() == (rendered.parent / "group_vars").resolve()
    hosts = yaml.safe_load((overlay / OVERLAY).read_text())["all"]["hosts"]
    assert hosts == {
        "sgm-a01": {"ansible_user": "park-seoyeon", "ansible_become": True},
        "sgm-a02": {"ansible_user": "root", "ansible_become": False},
    }


def test_ansible_reads_the_overlay_over_the_rendered_inventory(
    rendered: Path, tmp_path: Path
) -> None:
    overlay = overlay_inventory(rendered, tmp_path / "o", {"sgm-a01": "park-seoyeon"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(overlay),
         "--host", "sgm-a01"],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    host = json.loads(out.stdout)
    assert host["ansible_user"] == "park-seoyeon" and host["ansible_become"] is True
    assert host["campus_site"] == "sangam"  # the rendered group_vars still apply
