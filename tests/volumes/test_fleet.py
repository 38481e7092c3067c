"""Targets from the rendered inventory: connection, datasets, filters, and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf
from campus_provision.volumes.fleet import (
    Connection,
    fleet_from_inventory,
    inventory_path,
    load_fleet,
    read_inventory,
)
from tests.conftest import EXAMPLE

CARD = {"id": "card-spending-2025", "version": "2025.09", "readers": ["commerce-recovery"]}
TRANSIT = {"id": "transit-smartcard-trips", "version": "2025.08", "readers": []}


def inventory(**hosts: dict[str, Any]) -> dict[str, Any]:
    return {"_meta": {"hostvars": hosts}}


LAB_PC = {
    "ansible_host": "10.254.1.11",
    "ansible_user": "root",
    "ansible_ssh_common_args": "-F '/var/lib/campus lab/ssh_config'",
    "campus_host_datasets": [CARD, TRANSIT],
    "campus_data_volume_pbkdf_memory": 32768,
    "campus_data_volume_pbkdf_force_iterations": 4,
}


def test_a_lab_pc_gets_its_address_ssh_config_datasets_and_key_slot_cost() -> None:
    (target,) = fleet_from_inventory(inventory(**{"sgm-a01": LAB_PC, "sgm-mirror": {}}))
    assert target.host == "sgm-a01"
    assert target.connection == Connection(
        host="sgm-a01", address="10.254.1.11", user="root",
        ssh_args=("-F", "/var/lib/campus lab/ssh_config"),
    )  # fmt: skip
    assert not target.connection.become
    assert [d.label for d in target.datasets] == [
        "card-spending-2025@2025.09",
        "transit-smartcard-trips@2025.08",
    ]
    assert target.pbkdf == Pbkdf("argon2id", 32768, 2000, 4)


def test_port_identity_and_an_admin_login_with_sudo() -> None:
    pc = {**LAB_PC, "ansible_port": "2222", "ansible_ssh_private_key_file": "/k/id"}
    (target,) = fleet_from_inventory(inventory(pc=pc), admin="park-seoyeon")
    assert (target.connection.port, target.connection.identity_file) == (2222, "/k/id")
    assert target.connection.user == "park-seoyeon" and target.connection.become


def test_without_overrides_the_role_defaults_stand() -> None:
    pc = {"ansible_host": "10.0.0.1", "campus_host_datasets": [CARD]}
    (target,) = fleet_from_inventory(inventory(pc=pc))
    assert target.pbkdf == Pbkdf() and target.connection.user == "root"


def test_dataset_and_limit_filters() -> None:
    data = inventory(a=LAB_PC, b={**LAB_PC, "campus_host_datasets": [TRANSIT]})
    chosen = fleet_from_inventory(data, datasets=["card-spending-2025"])
    assert [(t.host, [d.id for d in t.datasets]) for t in chosen] == [("a", ["card-spending-2025"])]
    assert [t.host for t in fleet_from_inventory(data, limit=["b*"])] == ["b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"datasets": ["nope"]}, "no PC with dataset nope"),
        ({"limit": ["zz*"]}, "no PC with datasets matching --limit zz*"),
    ],
)
def test_selecting_nothing_is_an_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        fleet_from_inventory(inventory(a=LAB_PC), **kwargs)


def test_bad_inventory_values_are_errors() -> None:
    with pytest.raises(VolumeError, match="ansible_port 'x' is not a number"):
        fleet_from_inventory(inventory(a={**LAB_PC, "ansible_port": "x"}))
    with pytest.raises(VolumeError, match="without id and version"):
        fleet_from_inventory(inventory(a={**LAB_PC, "campus_host_datasets": [{"id": "x"}]}))


def test_the_example_inventory_through_ansible() -> None:
    (target,) = load_fleet(EXAMPLE.parent / "hosts.yml", limit="sgm-a01")
    assert target.connection.address == "10.21.0.11"
    assert [d.label for d in target.datasets] == [
        "card-spending-2025@2025.09",
        "transit-smartcard-trips@2025.08",
        "seoul-living-population@2025.10",
    ]


def test_a_missing_inventory_names_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "campus.yml"
    with pytest.raises(VolumeError, match=f"{tmp_path}/hosts.yml: no inventory here; render"):
        inventory_path(spec)
    with pytest.raises(VolumeError, match="no such inventory"):
        read_inventory(tmp_path / "hosts.yml")


def test_a_broken_inventory_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("all: [this is: not an inventory\n", encoding="utf-8")
    with pytest.raises(VolumeError, match="ansible-inventory failed"):
        read_inventory(bad)
