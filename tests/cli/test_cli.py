"""The CLI: help with examples on every command, validate, spec show, init, error boundary."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision import cli
from campus_provision.spec import load_spec
from tests.conftest import EXAMPLE

COMMANDS = [["validate"], ["render"], ["init"], ["spec", "show"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_says_what_and_gives_an_example(
    command: list[str], run_cli: Callable[..., Result]
) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example: campus-provision " + " ".join(command) in " ".join(result.stdout.split())


def test_validate_example(run_cli: Callable[..., Result]) -> None:
    result = run_cli("validate", EXAMPLE)
    assert result.exit_code == 0
    assert (
        "valid: Seoul Big Data Campus, 2 sites, 91 PCs, 7 service hosts, 11 datasets, 1 waivers"
        in result.stdout
    )


def test_spec_show_lists_sites_tiers_and_services(run_cli: Callable[..., Result]) -> None:
    result = run_cli("spec", "show", EXAMPLE)
    assert result.exit_code == 0
    out = result.stdout
    for word in (
        "sangam",
        "gaepo",
        "secure-room",
        "confidential",
        "restricted",
        "sgm-mirror",
        "27000/tcp",
    ):
        assert word in out, word
    assert "91" in out


def test_init_writes_a_spec_that_validates_and_refuses_to_overwrite(
    tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    target = tmp_path / "new"
    result = run_cli("init", target, "--name", 'Busan "Data" Campus', "--slug", "busan")
    assert result.exit_code == 0, result.output
    campus = load_spec(target / "campus.yml")
    assert campus.campus.name == 'Busan "Data" Campus'
    assert campus.campus.slug == "busan"
    assert run_cli("validate", target / "campus.yml").exit_code == 0
    assert "# Sites:" in (target / "campus.yml").read_text()

    again = run_cli("init", target)
    assert again.exit_code == 1
    assert "already exists; pass --force" in again.stderr
    assert run_cli("init", target, "--force").exit_code == 0


def test_init_rejects_a_bad_slug(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("init", tmp_path, "--slug", "Not A Slug")
    assert result.exit_code == 2
    assert "--slug" in result.stderr
    assert not (tmp_path / "campus.yml").exists()


def test_unexpected_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_: Path) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("campus_provision.cli.common.load_spec", broken)
    monkeypatch.setattr(sys, "argv", ["campus-provision", "validate", str(EXAMPLE)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 70
    err = capsys.readouterr().err
    assert err.strip() == (
        "campus-provision: internal error: RuntimeError: disk on fire "
        "(set CAMPUS_PROVISION_DEBUG=1 for details, and please report it)"
    )


def test_console_script_is_installed_and_reports_errors_with_exit_2(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "campus-provision"
    bad = tmp_path / "campus.yml"
    bad.write_text("campus: [\n")
    proc = subprocess.run(
        [str(exe), "validate", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:")
    assert "Traceback" not in proc.stderr
    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip().startswith("campus-provision ")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["verify"], "[default: evidence/<UTC timestamp>]"),
        (["verify"], "[default: $CAMPUS_ADMIN, else the spec's first]"),
        (["audit"], "--admin"),
        (["provision"], "[default: playbooks/site.yml]"),
        (["bundle", "build"], "[default: all]"),
    ],
)
def test_help_shows_defaults_in_brackets(
    command: list[str], shown: str, run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich would read "[default: …]" as markup and drop it; the help must keep it."""
    monkeypatch.setenv("COLUMNS", "300")
    result = run_cli(*command, "--help")
    assert shown in " ".join(result.output.split())


def test_reflow_joins_a_paragraph_and_keeps_bullets_and_verbatim_blocks() -> None:
    doc = """Summary line.

    A paragraph wrapped
    at the source's width.

    - a bullet
      that goes on
    - another

    \b
    kept
    as written
    """
    assert cli.reflow(doc) == (
        "Summary line.\n\nA paragraph wrapped at the source's width.\n\n"
        "- a bullet that goes on\n- another\n\n\b\nkept\nas written"
    )


def _help_paths(group: object, prefix: list[str]) -> list[list[str]]:
    found = []
    for command in group.registered_commands:  # type: ignore[attr-defined]
        found.append([*prefix, command.name or command.callback.__name__])
    for sub in group.registered_groups:  # type: ignore[attr-defined]
        found += _help_paths(sub.typer_instance, [*prefix, sub.name])
    return found


@pytest.mark.parametrize(
    "command", _help_paths(cli.app, []), ids=lambda c: " ".join(c) if isinstance(c, list) else c
)
def test_every_help_paragraph_is_wrapped_once_by_the_terminal(
    command: list[str], run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wide enough, no paragraph of a command's help breaks a line before the terminal's
    edge: the source's line breaks are gone (a break now means the paragraph ended)."""
    monkeypatch.setenv("COLUMNS", "1000")
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    body = result.output.split("╭")[0]  # the text above the argument and option panels
    lines = [line.strip() for line in body.splitlines()]
    text = [line for line in lines if line and not line.startswith(("Usage:", "- "))]
    # Every line of prose ends a sentence (or a list, a colon, an example's last word).
    ragged = [line for line in text[1:] if not line.endswith((".", ":", ")", ";")) and
              not line.startswith("Example")]  # fmt: skip
    assert ragged == [], ragged
