"""accounts.password_policy: the analysts' console password policy (CP-ACC-04)."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus_provision.errors import SpecError
from campus_provision.render.inventory import build_inventory
from campus_provision.spec import load_spec_bytes
from campus_provision.spec.accounts import PasswordPolicy
from tests.conftest import line_of, replace_once

F = Path("campus.yml")
DEFAULTS = {
    "min_length": 12,
    "min_classes": 3,
    "max_age_days": 180,
    "min_age_days": 1,
    "warn_days": 14,
    "lockout_attempts": 5,
    "lockout_minutes": 15,
}


def issues(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_spec_bytes(text.encode(), F)
    return err.value.lines()


def without_policy(text: str) -> str:
    start = text.index("  # Analysts log in at the console with a password")
    end = text.index("  lockout_minutes: 15", start)
    end = text.index("\n", end) + 1
    return text[:start] + text[end:]


def test_the_defaults_are_the_issues_and_render_as_campus_password_policy(
    example_text: str,
) -> None:
    assert PasswordPolicy().model_dump() == DEFAULTS
    campus = load_spec_bytes(without_policy(example_text).encode(), F)
    assert campus.accounts.password_policy == PasswordPolicy()
    group_vars = build_inventory(campus).group_vars["all"]
    assert group_vars["campus_password_policy"] == DEFAULTS


def test_the_example_writes_the_policy_out(example_text: str) -> None:
    campus = load_spec_bytes(example_text.encode(), F)
    assert campus.accounts.password_policy.model_dump() == DEFAULTS
    policy = replace_once(example_text, "    max_age_days: 180 ", "    max_age_days: 90  ")
    campus = load_spec_bytes(policy.encode(), F)
    assert build_inventory(campus).group_vars["all"]["campus_password_policy"]["max_age_days"] == 90


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("min_length: 12 ", "min_length: 6  ", "min_length: Input should be greater than or equal to 8, got 6"),
        ("min_length: 12 ", "min_length: 31 ", "min_length: Input should be less than or equal to 30, got 31"),
        ("min_length: 12 ", "min_length: '12'", "min_length: Input should be a valid integer, got '12'"),
        ("min_classes: 3 ", "min_classes: 5 ", "min_classes: Input should be less than or equal to 4, got 5"),
        ("min_classes: 3 ", "min_classes: 0 ", "min_classes: Input should be greater than or equal to 1, got 0"),
        ("max_age_days: 180 ", "max_age_days: 0   ", "max_age_days: Input should be greater than or equal to 1, got 0"),
        ("warn_days: 14", "warn_days: -1", "warn_days: Input should be greater than or equal to 0, got -1"),
        ("lockout_attempts: 5 ", "lockout_attempts: 1 ", "lockout_attempts: Input should be greater than or equal to 3, got 1"),
        ("lockout_attempts: 5 ", "lockout_attempts: 50", "lockout_attempts: Input should be less than or equal to 10, got 50"),
        ("lockout_minutes: 15 ", "lockout_minutes: yes", "lockout_minutes: Input should be a valid integer, got True"),
        ("min_age_days: 1\n", "min_age_days: 180\n", "min_age_days: 180 days is not less than max_age_days (180)"),
        ("warn_days: 14\n", "warn_days: 200\n", "warn_days: 200 days is not less than max_age_days (180)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_field(
    example_text: str, old: str, new: str, expected: str
) -> None:
    text = replace_once(example_text, f"    {old}", f"    {new}")
    field = expected.split(":", 1)[0]
    line = line_of(text, f"    {new.strip()}", after="password_policy:")
    assert issues(text) == [f"campus.yml:{line}: accounts.password_policy.{expected}"], field


def test_a_misspelt_setting_is_named_with_the_one_meant(example_text: str) -> None:
    text = replace_once(example_text, "    min_length: 12", "    min_lenght: 12")
    assert issues(text) == [
        f"campus.yml:{line_of(text, 'min_lenght')}: accounts.password_policy.min_lenght: "
        "unknown field; did you mean 'min_length'?"
    ]
