"""The campus site spec: pydantic models split by section, and the YAML loader."""

from campus_provision.spec.loader import load_spec, load_spec_bytes
from campus_provision.spec.model import Campus, Workstation

__all__ = ["Campus", "Workstation", "load_spec", "load_spec_bytes"]
