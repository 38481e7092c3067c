"""The ``accounts`` section: named admins and analysts; no shared accounts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field

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


class Accounts(BaseModel):
    """Everybody who may log in to a campus PC, and who no longer may."""

    model_config = SPEC_MODEL_CONFIG

    admins: Annotated[list[Admin], Field(min_length=1)]
    analyst_groups: dict[Name, AnalystGroup] = {}
    analysts: list[Analyst] = []
    removed: list[Username] = []
