"""The lab plan (no root needed): which hosts, which lab addresses, a valid campus slice."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
import yaml

from campus_provision.errors import LabError
from campus_provision.lab.control import LAB_VOLUME_VARS
from campus_provision.lab.plan import (
    ADMIN_SUBNET,
    VM_DATA_DISK,
    Standin,
    build_plan,
    mac_for,
    standins,
)
from campus_provision.lab.state import LabPaths
from campus_provision.render import render_files
from campus_provision.spec import load_spec
from campus_provision.spec.loader import load_spec_bytes
from tests.conftest import EXAMPLE, ROOT

LAB = IPv4Network("10.254.0.0/16")


def test_two_per_site_with_every_service_host() -> None:
    plan = build_plan(load_spec(EXAMPLE), per_site=2)
    pcs = [h.name for h in plan.hosts if h.role == "workstation"]
    assert pcs == ["sgm-a01", "sgm-a02", "gp-l1-01", "gp-l1-02"]
    assert len([h for h in plan.hosts if h.role == "service"]) == 7
    assert all(h.address.ip in LAB and h.address.ip != h.gateway for h in plan.hosts)
    assert len({h.address.ip for h in plan.hosts}) == len(plan.hosts)
    assert len({h.mac for h in plan.hosts}) == len(plan.hosts)
    # Host numbers carry over from the spec where they fit.
    assert str(plan.host("sgm-a01").address) == "10.254.1.11/24"
    assert str(plan.host("sgm-mirror").address) == "10.254.2.10/24"


def test_slice_is_a_valid_campus_at_lab_addresses() -> None:
    plan = build_plan(load_spec(EXAMPLE), per_site=1, sites=["gaepo"])
    campus = plan.campus
    assert [w.hostname for w in campus.workstations] == ["gp-l1-01"]
    assert campus.campus.admin_network == ADMIN_SUBNET
    assert all(s.ip in LAB for s in campus.services)
    assert campus.workstations[0].mac == plan.host("gp-l1-01").mac
    # The waiver's only host (sgm-out01) is not in the lab, so the waiver goes.
    assert campus.controls.waivers == []


def test_qemu_pcs_use_the_vm_data_disk() -> None:
    plan = build_plan(load_spec(EXAMPLE), per_site=1, driver="qemu", sites=["sangam"])
    assert plan.host("sgm-a01").driver == "qemu"
    assert plan.host("sgm-mirror").driver == "nspawn"
    assert plan.campus.workstations[0].data_disk == VM_DATA_DISK


def test_fingerprint_tells_plans_apart() -> None:
    campus = load_spec(EXAMPLE)
    assert build_plan(campus, 1).fingerprint() == build_plan(campus, 1).fingerprint()
    assert build_plan(campus, 1).fingerprint() != build_plan(campus, 2).fingerprint()
    assert build_plan(campus, 1).fingerprint() != build_plan(campus, 1, "qemu").fingerprint()


def test_unknown_site_and_negative_count_are_refused() -> None:
    campus = load_spec(EXAMPLE)
    with pytest.raises(LabError, match="no site 'busan'"):
        build_plan(campus, 1, sites=["busan"])
    with pytest.raises(LabError, match="0 or more"):
        build_plan(campus, -1)


def test_lab_inventory_carries_connection_vars_only_in_all() -> None:
    plan = build_plan(load_spec(EXAMPLE), per_site=1)
    files = render_files(plan.campus, "campus.yml (lab)", {"ansible_user": "root"})
    assert yaml.safe_load(files["group_vars/all.yml"])["ansible_user"] == "root"
    assert "ansible_user" not in files["group_vars/site_sangam.yml"]
    assert "10.254.1.11" in files["hosts.yml"]


def test_mac_is_fixed_and_locally_administered() -> None:
    assert mac_for(1) == "02:cb:00:00:00:01"
    assert mac_for(300) == "02:cb:00:00:01:2c"


@pytest.mark.parametrize("prefix", ["", "CPL", "toolong7", "1ab", "a-b"])
def test_bad_prefix(prefix: str, tmp_path: object) -> None:
    with pytest.raises(LabError, match="lab prefix"):
        LabPaths(tmp_path, prefix)  # type: ignore[arg-type]


def test_stand_ins_cover_the_services_no_role_runs() -> None:
    """DNS and the licence server get lab listeners; NTP on the same host is chrony's."""
    assert standins(load_spec(EXAMPLE)) == [
        Standin("sgm-infra", ("sangam-dns",), (53,), (53,)),
        Standin("sgm-lic", ("campus-licence",), (27000, 27001), ()),
        Standin("gp-infra", ("gaepo-dns",), (53,), (53,)),
    ]


def test_a_port_a_role_serves_gets_no_stand_in() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "    ports: [53/udp, 53/tcp]\n", "    ports: [53/udp, 123/udp]\n", 1
    )
    campus = load_spec_bytes(text.encode(), EXAMPLE)
    infra = [s for s in standins(campus) if s.host == "sgm-infra"]
    assert infra == [Standin("sgm-infra", ("sangam-dns",), (), (53,))]


def test_lab_volume_overrides_are_role_variables_of_the_right_type() -> None:
    """The lab's cheap-KDF overrides name real campus_data_volume options, typed right."""
    specs = yaml.safe_load(
        (ROOT / "roles/campus_data_volume/meta/argument_specs.yml").read_text(encoding="utf-8")
    )["argument_specs"]["main"]["options"]
    types = {"int": int, "bool": bool}
    for name, value in LAB_VOLUME_VARS.items():
        assert name in specs, name
        assert type(value) is types[specs[name]["type"]], name
    assert LAB_VOLUME_VARS["campus_data_volume_pbkdf_memory"] < 1048576  # cheaper than campus
