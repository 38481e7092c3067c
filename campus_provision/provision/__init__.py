"""Provision PCs: run the playbooks with a tuned ansible.cfg and follow the run's events."""

from campus_provision.provision.events import Event
from campus_provision.provision.runner import HostSummary, RunResult, run_playbook

__all__ = ["Event", "HostSummary", "RunResult", "run_playbook"]
