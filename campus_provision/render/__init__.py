"""Render a campus model into Ansible inventory files (pure function + atomic writes)."""

from campus_provision.render.files import RenderResult, diff_tree, write_tree
from campus_provision.render.inventory import build_inventory, render_files

__all__ = ["RenderResult", "build_inventory", "diff_tree", "render_files", "write_tree"]
