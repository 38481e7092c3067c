"""Run host commands for the lab, and start long-lived processes detached from us.

Lab processes (containers, VMs, the outside listener) must outlive the command that
started them and never become our zombies, so they are double-forked with ``setsid -f``
and found again through a pid file and their command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from campus_provision.errors import LabError

# Writes its pid, joins the given cgroups, then becomes the command (same pid).
_LAUNCHER = (
    "pidfile=$1; log=$2; shift 2; cgroups=(); "
    'while [ "$1" != "--" ]; do cgroups+=("$1"); shift; done; '
    'shift; for d in "${cgroups[@]}"; do mkdir -p "$d" && echo $$ > "$d/cgroup.procs"; done; '
    'echo $$ > "$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"; exec "$@" </dev/null >>"$log" 2>&1'
)


def run(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 120, input: str | None = None
) -> str:
    """Run a host command; return its stdout. Failures become one-line LabErrors."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, input=input
        )
    except FileNotFoundError:
        raise LabError(f"'{cmd[0]}' is not installed; run 'make lab-deps'") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(cmd)}' did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(
            f"'{' '.join(cmd)}' failed: {detail[-1] if detail else f'exit {proc.returncode}'}"
        )
    return proc.stdout


def require_root() -> None:
    """The lab creates namespaces, mounts and containers: root only."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, containers); run it with sudo")


def require_tools(*tools: str) -> None:
    """Fail with one line naming every missing host tool."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing host tools: {', '.join(missing)}; run 'make lab-deps'")


def spawn(
    cmd: Sequence[str], *, pidfile: Path, log: Path, cgroups: Sequence[Path] = (), wait: float = 10
) -> int:
    """Start ``cmd`` detached (own session, not our child); return its pid."""
    pidfile.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    args = ["setsid", "-f", "bash", "-c", _LAUNCHER, "launcher", str(pidfile), str(log)]
    args += [str(c) for c in cgroups] + ["--", *cmd]
    subprocess.run(args, check=True, timeout=30, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if pidfile.exists():
            return int(pidfile.read_text().strip())
        time.sleep(0.02)
    raise LabError(f"'{cmd[0]}' did not start within {wait:.0f} s; see {log}")


def cmdline(pid: int) -> str:
    """A process's command line with spaces for NULs ('' if it is gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    """True while ``pid`` runs a command line containing ``marker`` (guards pid reuse)."""
    return marker in cmdline(pid)


def pid_from(pidfile: Path, marker: str) -> int | None:
    """The pid a lab pid file names, if that process still runs and is ours."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid, marker) else None


def stop(pid: int, marker: str, *, grace: float = 10) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; only if it is still ours."""
    if not alive(pid, marker):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, marker) or _zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid, marker) and not _zombie(pid):
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def pids_with(marker: str) -> list[int]:
    """Every process whose command line contains ``marker``."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and marker in cmdline(int(entry.name)):
            found.append(int(entry.name))
    return found
