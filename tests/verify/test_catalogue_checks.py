"""Every control in the catalogue has exactly one check, and every check has a control."""

from __future__ import annotations

import ast
import re
from collections import Counter

from campus_provision.spec.controls import load_catalogue
from campus_provision.verify.runner import CHECKS_DIR

CHECK_RE = re.compile(r"^test_(CP_[A-Z]+_\d{2})_")


def checks_by_control() -> Counter[str]:
    found: Counter[str] = Counter()
    for module in sorted(CHECKS_DIR.glob("test_*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                match = CHECK_RE.match(node.name)
                assert match, f"{module.name}: {node.name} does not carry a control ID"
                found[match.group(1).replace("_", "-")] += 1
    return found


def test_each_catalogue_control_has_exactly_one_check() -> None:
    checks = checks_by_control()
    for control in load_catalogue().controls:
        assert checks[control.id] == 1, f"{control.id} has {checks[control.id]} checks"


def test_each_check_has_a_catalogue_entry() -> None:
    known = load_catalogue().ids()
    assert set(checks_by_control()) <= known


def test_checks_live_in_their_family_module() -> None:
    for module in CHECKS_DIR.glob("test_*.py"):
        family = module.stem.removeprefix("test_").upper()
        for name in re.findall(r"^def (test_CP_[A-Z]+_\d{2})", module.read_text(), re.M):
            assert name.split("_")[2] == family, f"{name} is in {module.name}"
