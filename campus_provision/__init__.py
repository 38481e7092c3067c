"""campus-provision: build and prove locked-down, air-gapped data-analysis workstations."""

__version__ = "0.1.0"
