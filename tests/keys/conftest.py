"""Key test fixtures: no ambient keystore, the CLI runner, a sealed volume keystore to copy.

Sealing is cheap here (tests/conftest.py lowers the scrypt cost for tests not about it),
but the keystore is still sealed once per session and copied for each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from campus_provision.cli import app
from campus_provision.keys.volumes import VolumeKey, VolumeKeystore

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test fixture
OTHER_PASSPHRASE = "tr0ub4dor&3 is not better"  # noqa: S105 - a test fixture


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the machine's own keys directory or passphrase."""
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE", raising=False)
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(tmp_path / "default-keys"))


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``campus-provision`` in-process: arguments, then optional stdin and environment."""
    runner = CliRunner()

    def run(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], input=input, env=env)

    return run


@dataclass(frozen=True)
class Sealed:
    """A keystore made once: two keys of h1/ds1 (old, new) and one of h2/ds2."""

    keys_dir: Path
    old: VolumeKey
    new: VolumeKey
    other: VolumeKey


@pytest.fixture(scope="session")
def sealed_template(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    keys_dir = tmp_path_factory.mktemp("template") / "keys"
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    old = store.create("h1/ds1")
    new = store.create("h1/ds1")
    other = store.create("h2/ds2")
    return Sealed(keys_dir, old, new, other)


@pytest.fixture
def sealed(sealed_template: Sealed, tmp_path: Path) -> Sealed:
    """A copy of the session's keystore in this test's own directory (modes kept)."""
    keys_dir = tmp_path / "keys"
    shutil.copytree(sealed_template.keys_dir, keys_dir)

    def moved(key: VolumeKey) -> VolumeKey:
        path = keys_dir / key.path.relative_to(sealed_template.keys_dir)
        return VolumeKey(key.volume_id, key.key_id, key.created, path)

    t = sealed_template
    return Sealed(keys_dir, moved(t.old), moved(t.new), moved(t.other))
