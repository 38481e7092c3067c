"""A tiny bundle built offline from .debs made here with dpkg-deb (no network)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from campus_provision.bundle.build import assemble
from campus_provision.bundle.manifest import Manifest
from campus_provision.keys.signing import init_signing_key, load_signing_key

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test passphrase


def make_deb(directory: Path, name: str, version: str, depends: str | None = None) -> Path:
    """A minimal valid .deb built with ``dpkg-deb --build``."""
    tree = directory / f"{name}-{version}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr" / "share" / "doc" / name).mkdir(parents=True)
    (tree / "usr" / "share" / "doc" / name / "README").write_text(f"{name} {version}\n")
    control = [
        f"Package: {name}",
        f"Version: {version}",
        "Architecture: amd64",
        "Maintainer: Test <test@example.org>",
        f"Description: test package {name}",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    (tree / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    out = directory / f"{name}_{version}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    init_signing_key(directory, PASSPHRASE)
    return directory


BuildFake = Callable[[str, list[tuple[str, str]]], tuple[Path, Manifest]]


@pytest.fixture
def build_fake(tmp_path: Path, keys_dir: Path) -> BuildFake:
    """Build a signed bundle named ``name`` holding packages (name, version)."""

    def build(name: str, packages: list[tuple[str, str]]) -> tuple[Path, Manifest]:
        debs = tmp_path / f"{name}-debs"
        debs.mkdir()
        for pkg, version in packages:
            make_deb(debs, pkg, version, depends="libhello1" if pkg == "hello" else None)
        root = tmp_path / name
        root.mkdir()
        manifest = assemble(
            root,
            debs,
            signing_key=load_signing_key(keys_dir, PASSPHRASE),
            keys_dir=keys_dir,
            passphrase=PASSPHRASE,
            campus_name="Test campus",
            spec_sha256="0" * 64,
            profiles=["tiny"],
        )
        return root, manifest

    return build
