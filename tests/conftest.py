"""Shared fixtures: the example spec, text mutations located by line, the CLI runner.

And the scrypt cost: production seals at ``sealed.SCRYPT_N`` (2^17, half a second a key on
a small controller), which would make every test that seals a key slow without testing
anything about the cost. In-process tests seal at :data:`TEST_SCRYPT_N` instead; a test
marked ``scrypt_cost`` gets the production cost back (the tests that prove it is >= 2^17
and that older, cheaper files are re-sealed). Subprocesses (the lab, the CLI run as a
command) always seal at the production cost: only this process's module is patched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from campus_provision.cli import app
from campus_provision.keys import sealed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "seoul" / "campus.yml"
PRODUCTION_SCRYPT_N = sealed.SCRYPT_N  # read before any fixture lowers it
TEST_SCRYPT_N = 2**10


@pytest.fixture(scope="session", autouse=True)
def _test_scrypt_cost() -> Iterator[None]:
    """Seal at TEST_SCRYPT_N in this process (session-wide: session fixtures seal too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sealed, "SCRYPT_N", TEST_SCRYPT_N)
        yield


@pytest.fixture(autouse=True)
def _production_scrypt_cost(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production cost back for a test marked ``scrypt_cost``."""
    if request.node.get_closest_marker("scrypt_cost") is not None:
        monkeypatch.setattr(sealed, "SCRYPT_N", PRODUCTION_SCRYPT_N)


def line_of(text: str, needle: str, after: str | None = None) -> int:
    """1-based number of the first line containing ``needle`` (below ``after``, if given)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, ln in enumerate(lines) if after in ln) + 1
    for i in range(start, len(lines)):
        if needle in lines[i]:
            return i + 1
    raise AssertionError(f"{needle!r} not in text")


def replace_once(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails if not exactly one)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


@pytest.fixture
def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return run


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` with its bytes (to prove nothing was written)."""
    if not directory.exists():
        return {}
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
