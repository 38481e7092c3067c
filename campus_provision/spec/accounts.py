"""The ``accounts`` section: named admins and analysts; no shared accounts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from campus_provision.spec.types import SPEC_MODEL_CONFIG, Name, SshPublicKey, Title, Username

# Names that stand for a role, not a person: an account under one is a shared account.
GENERIC_USERNAMES = frozenset(
    {
        "admin", "administrator", "analyst", "demo", "guest", "kiosk", "operator",
        "public", "root", "shared", "student", "test", "user", "visitor",
    }
)  # fmt: skip


class Admin(BaseModel):
    """A campus IT administrator: key-only SSH and sudo."""

    model_config = SPEC_MODEL_CONFIG

    username: Username
    name: Title
    ssh_keys: Annotated[list[SshPublicKey], Field(min_length=1)]


class AnalystGroup(BaseModel):
    """An analyst project group; dataset readers are named by these groups."""

    model_config = SPEC_MODEL_CONFIG

    title: Title
    project: Title
    sites: list[Name] | None = None
    expires: dt.date | None = None


class Analyst(BaseModel):
    """One person who analyses data on campus PCs; one account per person."""

    model_config = SPEC_MODEL_CONFIG

    username: Username
    name: Title
    groups: Annotated[list[Name], Field(min_length=1)]
    organisation: Title | None = None


# CP-ACC-04's dictionary probe is a 30-character password built on a dictionary word
# (cracklib finds the word only with a few characters around it): a longer minimum would
# refuse it for its length, and prove nothing about the dictionary.
MAX_MIN_LENGTH = 30


class PasswordPolicy(BaseModel):
    """Analysts' console passwords: quality, lockout after failed logins, aging.

    IT sets each analyst's password at the desk; this is the policy it must meet.
    """

    model_config = SPEC_MODEL_CONFIG

    min_length: Annotated[StrictInt, Field(ge=8, le=MAX_MIN_LENGTH)] = 12
    # Of four: lower case, upper case, digits, others.
    min_classes: Annotated[StrictInt, Field(ge=1, le=4)] = 3
    # 99999 is shadow's "never".
    max_age_days: Annotated[StrictInt, Field(ge=1, le=99999)] = 180
    min_age_days: Annotated[StrictInt, Field(ge=0, le=99999)] = 1
    warn_days: Annotated[StrictInt, Field(ge=0, le=99999)] = 14
    # Fewer than 3 locks a person out over a typo; more than 10 lets guessing go on.
    lockout_attempts: Annotated[StrictInt, Field(ge=3, le=10)] = 5
    # 0: locked until IT unlocks the account at the desk (faillock --reset).
    lockout_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 15


class Accounts(BaseModel):
    """Everybody who may log in to a campus PC, and who no longer may."""

    model_config = SPEC_MODEL_CONFIG

    admins: Annotated[list[Admin], Field(min_length=1)]
    analyst_groups: dict[Name, AnalystGroup] = {}
    analysts: list[Analyst] = []
    removed: list[Username] = []
    password_policy: PasswordPolicy = PasswordPolicy()
