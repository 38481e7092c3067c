"""Host keys per inventory: every connection is checked against the inventory's known_hosts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from campus_provision.errors import HostKeyError
from campus_provision.hostkeys import (
    ScannedKey,
    campus_hosts,
    hint,
    known_hosts_file,
    recorded,
    ssh_options,
    trust,
)
from campus_provision.provision.bootstrap import overlay_inventory
from campus_provision.spec import load_spec
from campus_provision.volumes.fleet import load_fleet
from tests.conftest import EXAMPLE

KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
KEY_B = "AAAAC3NzaC1lZDI1NTE5AAAAIKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def key(address: str, blob: str, host: str = "sgm-a01") -> ScannedKey:
    return ScannedKey(host, address, f"{address} ssh-ed25519 {blob}", "ED25519 SHA256:x")


def test_every_connection_is_strict_against_the_inventorys_own_file(tmp_path: Path) -> None:
    hosts = tmp_path / "inv" / "hosts.yml"
    hosts.parent.mkdir()
    hosts.write_text("all: {}\n")
    assert known_hosts_file(hosts) == tmp_path / "inv" / "known_hosts"
    assert known_hosts_file(hosts.parent) == tmp_path / "inv" / "known_hosts"
    assert ssh_options(hosts) == [
        "-o", f"UserKnownHostsFile={tmp_path}/inv/known_hosts", "-o", "StrictHostKeyChecking=yes",
    ]  # fmt: skip


def test_the_login_overlay_checks_every_host_reached_or_not(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    sgm-a01: {}\n    sgm-a02: {}\n")
    overlay = overlay_inventory(inv / "hosts.yml", tmp_path / "overlay", {"sgm-a01": "root"})
    data = yaml.safe_load((overlay / "zz-connection.yml").read_text())
    assert shlex.split(data["all"]["vars"]["ansible_ssh_extra_args"]) == ssh_options(
        inv / "hosts.yml"
    )


def test_the_volume_commands_connect_with_the_same_check(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n    sgm-a01:\n      ansible_host: 10.21.1.11\n"
        "      ansible_ssh_common_args: -F /lab/ssh/config\n"
        "      campus_host_datasets: [{id: card-spending-2025, version: '1', readers: []}]\n"
    )
    [target] = load_fleet(inv / "hosts.yml")
    assert target.connection.ssh_args == (*ssh_options(inv / "hosts.yml"), "-F", "/lab/ssh/config")


def test_new_keys_are_recorded_and_a_changed_key_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    assert trust(inv, [key("10.21.1.11", KEY_A), key("10.21.1.12", KEY_A, "sgm-a02")]) == []
    assert recorded(inv) == [f"10.21.1.11 ssh-ed25519 {KEY_A}", f"10.21.1.12 ssh-ed25519 {KEY_A}"]
    assert trust(inv, [key("10.21.1.11", KEY_A)]) == []  # the same key again: nothing changes
    with pytest.raises(HostKeyError, match=r"host keys of 10\.21\.1\.11 differ .* --replace"):
        trust(inv, [key("10.21.1.11", KEY_B)])
    assert f"10.21.1.11 ssh-ed25519 {KEY_A}" in recorded(inv)  # untouched
    assert trust(inv, [key("10.21.1.11", KEY_B)], replace=True) == ["10.21.1.11"]
    assert sorted(recorded(inv)) == [
        f"10.21.1.11 ssh-ed25519 {KEY_B}", f"10.21.1.12 ssh-ed25519 {KEY_A}",
    ]  # fmt: skip
    assert (tmp_path / "known_hosts").stat().st_mode & 0o777 == 0o644


def test_a_refused_host_key_gets_a_hint_naming_the_file_and_the_command(tmp_path: Path) -> None:
    said = hint("UNREACHABLE! => Host key verification failed.", tmp_path / "hosts.yml")
    assert said is not None
    assert str(tmp_path / "known_hosts") in said and "campus-provision hosts trust" in said
    assert hint("Connection timed out during banner exchange", tmp_path / "hosts.yml") is None


def test_trust_takes_host_names_or_patterns_and_names_a_typo() -> None:
    campus = load_spec(EXAMPLE)
    assert set(campus_hosts(campus, "sgm-a0*,sgm-mirror")) >= {"sgm-a01", "sgm-a02", "sgm-mirror"}
    assert all(
        h.startswith("sgm-a0") or h == "sgm-mirror"
        for h in campus_hosts(campus, "sgm-a0*,sgm-mirror")
    )
    with pytest.raises(HostKeyError, match="--limit sgm-z9: no PC or service host"):
        campus_hosts(campus, "sgm-z9")
