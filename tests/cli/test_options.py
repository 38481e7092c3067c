"""Options whose values reach a shell or Ansible are checked where they are parsed."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from click.testing import Result

from campus_provision.cli.common import admin_account
from campus_provision.spec import load_spec
from tests.conftest import EXAMPLE


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / f"PWNED-{secrets.token_hex(4)}"


@pytest.mark.parametrize("command", ["verify", "audit"])
@pytest.mark.parametrize("form", ["x'$(touch {m})'", "`touch {m}`", "10.0.0.1 ; touch {m}"])
def test_probe_must_be_an_ip_address(
    command: str, form: str, marker: Path, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    probe = form.format(m=marker)
    out = tmp_path / "evidence"
    result = run_cli(command, EXAMPLE, "--probe", probe, "--out", out, "--keys-dir", tmp_path)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"--probe {probe!r}: not an IP address (IPv4 or IPv6)"]
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("command", [["verify"], ["provision"], ["volumes", "status"]])
def test_admin_must_be_a_user_name(
    command: list[str], marker: Path, run_cli: Callable[..., Result]
) -> None:
    admin = f"bob ansible_ssh_common_args='-oProxyCommand=touch {marker}'"
    result = run_cli(*command, EXAMPLE, "--admin", admin)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"--admin {admin!r}: not a user name (a-z, 0-9, '_', '-'; at most 32)"
    ]
    assert not marker.exists()


def test_the_admin_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    campus = load_spec(EXAMPLE)
    monkeypatch.setenv("CAMPUS_ADMIN", "park-seoyeon")
    assert admin_account(None, campus) == "park-seoyeon"
    assert admin_account("kim_admin", campus) == "kim_admin"
    monkeypatch.setenv("CAMPUS_ADMIN", "{{ lookup('pipe', 'id') }}")
    with pytest.raises(typer.Exit) as raised:
        admin_account(None, campus)
    assert raised.value.exit_code == 2
    monkeypatch.delenv("CAMPUS_ADMIN")
    assert admin_account(None, campus) == campus.accounts.admins[0].username
