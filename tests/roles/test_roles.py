"""The roles keep the team's conventions (STYLE.md, DESIGN.md §5 and §7), checked statically."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from campus_provision.paths import playbooks_dir, roles_dir
from campus_provision.spec.controls import load_catalogue

ROLES = sorted(p.name for p in roles_dir().iterdir() if (p / "tasks" / "main.yml").exists())
# DESIGN.md §5: the order of the roles on a PC.
PC_ORDER = ("campus_apt_client", "campus_egress", "campus_accounts", "campus_hardening",
            "campus_usb", "campus_audit", "campus_software", "campus_data_volume",
            "campus_integrity")  # fmt: skip
# "... | CP-NET-01" or, for a task that implements several, "... | CP-NET-01, CP-NET-02".
_IDS = re.compile(r"\| (CP-[A-Z]+-\d\d(?:, CP-[A-Z]+-\d\d)*)$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _tasks(role: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items or []:
            found.append(item)
            for key in ("block", "rescue", "always"):
                walk(item.get(key, []))

    for path in sorted((roles_dir() / role).glob("*/*.yml")):
        if path.parent.name in ("tasks", "handlers"):
            walk(_yaml(path))
    return found


def test_there_are_roles() -> None:
    assert {"campus_apt_client", "campus_egress", "campus_mirror", "campus_software"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_described_and_role_prefixed(role: str) -> None:
    defaults = _yaml(roles_dir() / role / "defaults" / "main.yml") or {}
    spec = _yaml(roles_dir() / role / "meta" / "argument_specs.yml")
    options = spec["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), set(defaults) - set(options)
    assert all(name.startswith(f"{role}_") for name in options), list(options)
    for name, option in options.items():
        assert option.get("description"), f"{role}: {name} has no description"
        if name in defaults and "default" in option and "{{" not in str(defaults[name]):
            assert option["default"] == defaults[name], name


@pytest.mark.parametrize("role", ROLES)
def test_task_names_carry_known_control_ids(role: str) -> None:
    known = {c.id for c in load_catalogue().controls}
    named = [t["name"] for t in _tasks(role) if "name" in t]
    ids = {i for n in named if (m := _IDS.search(n)) for i in m.group(1).split(", ")}
    assert ids <= known, ids - known
    implemented = {c.id for c in load_catalogue().controls if c.role == role}
    assert implemented <= ids, f"{role} implements {implemented - ids} in no task name"


def test_workstation_roles_run_in_the_designed_order() -> None:
    plays = _yaml(playbooks_dir() / "workstations.yml")
    roles = [r["role"] if isinstance(r, dict) else r for p in plays for r in p.get("roles", [])]
    assert roles == [r for r in PC_ORDER if r in roles]
    assert roles[:2] == ["campus_apt_client", "campus_egress"]


def test_site_publishes_the_mirror_before_the_workstations() -> None:
    imports = [p["ansible.builtin.import_playbook"] for p in _yaml(playbooks_dir() / "site.yml")]
    assert imports.index("mirrors.yml") < imports.index("workstations.yml")


def test_the_mirror_refuses_before_it_copies() -> None:
    # Verification is imported before publishing: nothing reaches the host unverified.
    main = _yaml(roles_dir() / "campus_mirror" / "tasks" / "main.yml")
    order = [t["ansible.builtin.import_tasks"] for t in main]
    assert order.index("verify.yml") < order.index("publish.yml") < order.index("nginx.yml")


def test_every_pc_role_is_in_the_workstations_play() -> None:
    plays = _yaml(playbooks_dir() / "workstations.yml")
    assert [r["role"] for r in plays[0]["roles"]] == list(PC_ORDER)
