"""Callback plugins, named in the generated ansible.cfg's ``callback_plugins``."""
