"""The package closure, resolved and downloaded by apt itself in an isolated configuration.

apt runs against a scratch directory of its own: its own sources list (the suite's
``main`` from the mirror, checked with Debian's archive keyring), its own lists and
archive cache, no host ``apt.conf.d`` or preferences, and an **empty** dpkg status file.

Why an empty status rather than a chroot into the lab's base rootfs: with nothing
installed, apt has to bring every package the requested ones depend on, transitively, at
the candidate version, so the bundle installs on any bookworm PC, whatever the installer
put on it (a real PC is not the lab image). Against the lab's rootfs apt would leave out
whatever that image already has, and a real PC missing one of those could not install
offline. What an empty status does not pull is the Essential/priority-required set that
nobody declares a dependency on (coreutils, dpkg itself...): every Debian system has it,
so nothing is missing; only a versioned dependency on one of them could need a newer
version, and apt includes those because they are declared.

Each profile is resolved on its own, together with what the roles need and ``--extra``,
because a PC gets one profile: two profiles whose packages conflict would each be
installable while their union is not. The archive cache is shared, so a package common
to several profiles is downloaded once.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from campus_provision.bundle import BundleSpecError, MirrorError
from campus_provision.bundle.tools import tool

SUITE = "bookworm"
COMPONENT = "main"
ARCH = "amd64"
MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# Upper bounds on waiting for apt; its own per-connection timeout is far shorter.
UPDATE_TIMEOUT = 600.0
RESOLVE_TIMEOUT = 300.0
DOWNLOAD_TIMEOUT = 3 * 3600.0
HTTP_TIMEOUT = 30

_INST = re.compile(r"^Inst (\S+) \((\S+) ")
_UNMET_HEAD = "The following packages have unmet dependencies:"
_UNMET_LINE = re.compile(r"^\s*(\S+)\s*:\s*(?:Pre)?Depends:|^\s*(\S+)\s*:\s*Breaks:")
_NOT_FOUND = re.compile(r"^E: Unable to locate package (\S+)")
_NO_VERSION = re.compile(r"^E: Version '([^']+)' for '([^']+)' was not found")
_NO_CANDIDATE = re.compile(r"^E: Package '([^']+)' has no installation candidate")


@dataclass(frozen=True)
class Request:
    """One apt run: the packages a profile needs, under the name errors give it."""

    label: str  # e.g. "profile 'analyst'"
    packages: tuple[str, ...]  # apt spellings: "name" or "name=version"
    # Packages added to the profile's own, with who asked for them (for error lines).
    added_by: tuple[tuple[str, str], ...] = ()


class AptWorkspace:
    """apt with a configuration of its own under ``root`` (created here)."""

    def __init__(self, root: Path, mirror: str = MIRROR) -> None:
        self.root = root
        self.mirror = mirror
        self.archives = root / "cache" / "archives"
        for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        (root / "state" / "status").write_bytes(b"")
        (root / "etc" / "sources.list").write_text(
            f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {SUITE} {COMPONENT}\n", encoding="utf-8"
        )
        conf = {
            "Dir::State": root / "state",
            "Dir::State::status": root / "state" / "status",
            "Dir::Cache": root / "cache",
            "Dir::Etc::sourcelist": root / "etc" / "sources.list",
            "Dir::Etc::sourceparts": root / "etc" / "sources.list.d",
            "Dir::Etc::parts": root / "etc" / "apt.conf.d",
            "Dir::Etc::preferences": root / "etc" / "preferences",
            "Dir::Etc::preferencesparts": root / "etc" / "preferences.d",
            "Dir::Log": root / "log",
            "APT::Architecture": ARCH,
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
            "Acquire::Languages": "none",
            "Acquire::http::Timeout": HTTP_TIMEOUT,
            "Acquire::Retries": "2",
            # Files in the scratch directory belong to whoever runs the build; apt's
            # unprivileged download user could not write them.
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
            "Debug::NoLocking": "true",
        }
        lines = [f'{key} "{value}";' for key, value in conf.items() if value != ""]
        # Only the target architecture, whatever foreign ones the host's dpkg has.
        lines.append(f'APT::Architectures {{ "{ARCH}"; }};')
        self.config = root / "apt.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APT_")}
        env.update(APT_CONFIG=str(self.config), LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        return env

    def _apt(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [tool("apt-get"), "-q", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self._env(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MirrorError(
                f"apt-get {args[0]} did not finish within {timeout:.0f} s ({self.mirror})"
            ) from None

    def update(self) -> None:
        """Fetch the suite's package lists (MirrorError: unreachable, bad signature)."""
        proc = self._apt(["update"], UPDATE_TIMEOUT)
        output = (proc.stdout + proc.stderr).splitlines()
        lists = self.root / "state" / "lists"
        has_packages = any(p.name.endswith("_Packages") for p in lists.iterdir())
        if (
            proc.returncode == 0
            and has_packages
            and not any(ln.startswith("Err:") for ln in output)
        ):
            return
        raise MirrorError(
            f"cannot fetch the package lists of {SUITE} from {self.mirror}: {_why(output)}"
        )

    def resolve(self, request: Request) -> list[tuple[str, str]]:
        """The (name, version) pairs apt would install for ``request`` on an empty system."""
        proc = self._apt(["install", "-s", "-y", *request.packages], RESOLVE_TIMEOUT)
        if proc.returncode != 0:
            raise BundleSpecError(_spec_problems(request, proc.stdout + proc.stderr))
        found = [m.groups() for ln in proc.stdout.splitlines() if (m := _INST.match(ln))]
        return [(name.split(":")[0], version) for name, version in found]

    def download(self, request: Request, on_fetch: Callable[[], None]) -> None:
        """Download ``request``'s closure into the archive cache, calling ``on_fetch`` per file."""
        argv = [tool("apt-get"), "-q", "install", "--download-only", "-y", *request.packages]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env(),
        )
        # apt's own timeouts normally end a stalled fetch; this bounds the whole run.
        watchdog = threading.Timer(DOWNLOAD_TIMEOUT, proc.kill)
        watchdog.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None  # noqa: S101 - stdout=PIPE above
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("Get:"):
                    on_fetch()
            code = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0:
            raise MirrorError(
                f"downloading {request.label} from {self.mirror} failed: {_why(lines)}"
            )


def _why(lines: Sequence[str]) -> str:
    """apt's reason for a failed fetch, in one line."""
    for i, line in enumerate(lines):
        # "Err:1 http://... bookworm InRelease" is followed by the reason, indented.
        if line.startswith("Err:") and i + 1 < len(lines) and lines[i + 1].startswith(" "):
            return lines[i + 1].strip()
    for prefix in ("E: ", "W: "):
        for line in lines:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return "apt-get gave no reason"


def _spec_problems(request: Request, output: str) -> list[str]:
    """One line per package apt refused, naming ``request.label`` and the spec's spelling."""
    spelled = {p.partition("=")[0]: p for p in request.packages}
    problems: dict[str, str] = {}
    in_unmet = False
    for line in output.splitlines():
        if m := _NOT_FOUND.match(line):
            problems.setdefault(m[1], "no such package in the suite")
        elif m := _NO_VERSION.match(line):
            problems.setdefault(m[2], f"version {m[1]} is not in the suite")
        elif m := _NO_CANDIDATE.match(line):
            problems.setdefault(m[1], "no installable version in the suite")
        elif line.startswith(_UNMET_HEAD):
            in_unmet = True
        elif in_unmet and (m := _UNMET_LINE.match(line)):
            name = m[1] or m[2]
            problems.setdefault(
                name, f"dependencies cannot be met ({line.split(':', 1)[1].strip()})"
            )
        elif in_unmet and not line.startswith(" "):
            in_unmet = False
    if not problems:
        errors = [ln[3:].strip() for ln in output.splitlines() if ln.startswith("E: ")]
        reason = errors[0] if errors else "apt-get cannot resolve it"
        return [f"{request.label}: {reason}"]
    added_by = dict(request.added_by)
    return [
        f"{added_by.get(name, request.label)}: package {spelled.get(name, name)}: {reason}"
        for name, reason in problems.items()
    ]


def requests_for(
    profiles: Mapping[str, Sequence[str]], role_packages: Sequence[str], extras: Sequence[str]
) -> list[Request]:
    """One apt run per profile, each with what the roles and ``--extra`` add.

    A package the profile itself names (perhaps pinned) is not added again unpinned.
    """
    added = [(p, "packages the roles need") for p in role_packages]
    added += [(p, "--extra") for p in extras]
    if not profiles:
        return [Request("packages the roles need", tuple(p for p, _ in added), tuple(added))]
    requests = []
    for name, packages in profiles.items():
        own = {p.partition("=")[0] for p in packages}
        more = [(p, who) for p, who in added if p.partition("=")[0] not in own]
        unique = list(dict.fromkeys(more))
        requests.append(
            Request(
                f"profile {name!r}",
                (*packages, *(p for p, _ in unique)),
                tuple((p.partition("=")[0], w) for p, w in unique),
            )
        )
    return requests
