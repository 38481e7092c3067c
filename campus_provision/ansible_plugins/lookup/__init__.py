"""Lookup plugins, named in the generated ansible.cfg's ``lookup_plugins``."""
