"""Running the host tools the bundle uses, always with an argument list and a time limit."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from campus_provision.bundle import BundleToolError

# Which Debian package provides each tool, for the "install it" hint.
TOOL_PACKAGES = {
    "apt-get": "apt",
    "apt-ftparchive": "apt-utils",
    "gpg": "gpg",
    "gpgconf": "gpgconf",
    "gpgv": "gpgv",
}


def tool(name: str) -> str:
    """The absolute path of a host tool, or a BundleToolError naming its package."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        raise BundleToolError(
            f"{name} is not installed; install the Debian package {package} "
            f"(apt-get install {package})"
        )
    return path


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (``argv[0]`` looked up with :func:`tool`) and capture its output.

    With ``check``, a non-zero exit becomes a BundleToolError carrying the tool's last
    line of error output. ``stdin`` is how secrets reach a tool: never in ``argv``.
    """
    exe = tool(argv[0])
    try:
        proc = subprocess.run(
            [exe, *argv[1:]],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=None if env is None else dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BundleToolError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise BundleToolError(f"{argv[0]} failed (exit {proc.returncode}): {last_line(proc)}")
    return proc


def last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The last non-empty line a tool wrote (stderr first), for a one-line message."""
    for stream in (proc.stderr, proc.stdout):
        lines = [ln.strip() for ln in stream.decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln]
        if lines:
            return lines[-1]
    return "no output"
