"""campus_provision.shell: a value goes into a shell command as one inert word."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from campus_provision.shell import ip_address, join, quote


def hostile(marker: Path) -> list[str]:
    """Values a spec, an option or a manifest could carry, each trying to touch ``marker``."""
    return [
        f"x'$(touch {marker})'",
        f'x"$(touch {marker})"',
        f"`touch {marker}`",
        f"a; touch {marker}",
        f"-rf\n touch {marker}",
    ]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / f"PWNED-{secrets.token_hex(4)}"


def test_a_quoted_value_is_one_inert_word_to_a_real_shell(marker: Path) -> None:
    values = hostile(marker)
    script = "printf '%s\\0' " + join(values) + " " + quote(Path("/a dir/it's"))
    done = subprocess.run(["sh", "-c", script], capture_output=True, check=True)
    assert done.stdout.decode().split("\0")[:-1] == [*values, "/a dir/it's"]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "address"),
    [("10.254.2.11", "10.254.2.11"), (" 192.0.2.1 ", "192.0.2.1"), ("2001:DB8::1", "2001:db8::1")],
)
def test_an_ip_address_is_taken_as_ipaddress_writes_it(value: str, address: str) -> None:
    assert ip_address(value) == address


@pytest.mark.parametrize(
    "value", ["x$(id)", "10.0.0.1'$(id)'", "`id`", "10.0.0.1;id", "example.org", "10.0.0.0/8", ""]
)
def test_anything_else_is_not_an_ip_address(value: str) -> None:
    with pytest.raises(ValueError, match=r"not an IP address") as raised:
        ip_address(value)
    assert "\n" not in str(raised.value)
