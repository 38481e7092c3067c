"""The one exception root of campus-provision and its subclasses.

Every error a user can cause is one of these; the CLI turns each into one
actionable line per problem and a documented exit code, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class CampusProvisionError(Exception):
    """Root of every error campus-provision raises on purpose.

    ``exit_code`` is what the CLI exits with when this error ends a command.
    """

    exit_code: int = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints, one per problem."""
        return [str(self)]


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem found in a spec file, located by line and dotted field path."""

    file: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        # One problem, one line, whatever characters the offending input carried.
        text = f"{self.file}:{self.line}: {self.field}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class SpecError(CampusProvisionError):
    """Raised when a spec file cannot be read, parsed or validated.

    Carries every issue found (YAML syntax, unknown keys, wrong types, cross-field
    rules), each with its file, line and field path. Exit code 2, as for bad usage.
    """

    exit_code = 2

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (str(i.file), i.line, i.field))
        super().__init__("\n".join(str(i) for i in self.issues))

    def lines(self) -> list[str]:
        return [str(i) for i in self.issues]


class SpecRuleError(CampusProvisionError):
    """Raised inside model validation when cross-field rules fail.

    Carries (path, message) pairs; the loader turns them into a SpecError with lines.
    Raised directly only when a model is built from Python data, not from a file.
    """

    exit_code = 2

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__(
            "\n".join(
                f"{'.'.join(str(p) for p in path) or '<root>'}: {msg}" for path, msg in problems
            )
        )


class RenderError(CampusProvisionError):
    """Raised when rendered files cannot be written (or compared) at the output path."""


class InitError(CampusProvisionError):
    """Raised when ``init`` would overwrite an existing spec without ``--force``."""


class LabError(CampusProvisionError):
    """Raised when the lab cannot be set up, reached or torn down.

    Not root, a missing host tool, a host that does not answer SSH in time (the
    message names the host and its console log), or a lab that is already up with a
    different plan.
    """


class VerifyError(CampusProvisionError):
    """Raised when verification cannot run at all (not when a control fails).

    An inventory that does not exist or is out of date for ``audit``, pytest that
    cannot start, or no host matching ``--limit``. A failing control is exit 1 with a
    report, not this error.
    """


class ProvisionError(CampusProvisionError):
    """Raised when a provisioning run cannot start or does not finish.

    A playbook or inventory that does not exist, no ``ansible-playbook`` to run, or a
    run that outlives its timeout (the message names its log). A host that fails or
    cannot be reached is a result with exit 1, not this error.
    """


class HostKeyError(CampusProvisionError):
    """Raised when a PC's SSH host key cannot be read or recorded.

    ``hosts trust`` on a host that presents no key (ssh-keyscan read none), or a key that
    differs from the one the inventory's known_hosts holds (without ``--replace``).
    """


class OptionError(CampusProvisionError):
    """Raised when a command-line value (or the environment variable standing in for it) is
    not what the option takes: ``--probe`` not an IP address, ``--admin`` not a user name.

    Checked where the option is read, before anything runs. Exit code 2, as for bad usage.
    """

    exit_code = 2
