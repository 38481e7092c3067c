"""Where the toolkit's own files are (templates, playbooks, roles) in a checkout."""

from __future__ import annotations

from pathlib import Path

# campus-provision runs from its checkout (make setup installs it in editable mode);
# templates/, playbooks/ and roles/ sit beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """The directory of Jinja2 templates used by init, render and reports."""
    return PROJECT_ROOT / "templates"


def playbooks_dir() -> Path:
    """The Ansible playbooks (``site.yml`` and the one of each kind of host)."""
    return PROJECT_ROOT / "playbooks"


def roles_dir() -> Path:
    """The Ansible roles the playbooks use."""
    return PROJECT_ROOT / "roles"
