"""Plugins Ansible loads from files (not imports) during a provisioning run."""
