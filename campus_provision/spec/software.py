"""The ``software_profiles`` section: named sets of Debian packages."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from campus_provision.spec.types import SPEC_MODEL_CONFIG, DebianPackageName, DebianVersion, Title


class Package(BaseModel):
    """A Debian package, optionally pinned to one version."""

    model_config = SPEC_MODEL_CONFIG

    name: DebianPackageName
    version: DebianVersion | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}={self.version}"


def _package_from_string(value: object) -> object:
    # "r-base-core" or apt's own "r-base-core=4.2.2.20221110-2" spelling.
    if isinstance(value, str):
        name, sep, version = value.partition("=")
        return {"name": name.strip(), "version": version.strip()} if sep else {"name": value}
    return value


PackageEntry = Annotated[Package, BeforeValidator(_package_from_string)]


class SoftwareProfile(BaseModel):
    """What a group of PCs has installed, from the campus mirror only."""

    model_config = SPEC_MODEL_CONFIG

    title: Title
    packages: Annotated[list[PackageEntry], Field(min_length=1)]
