"""ACC: one account per person, no root or password SSH login, sudo only for admins."""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    not_applicable,
    probe_failed,
)
from campus_provision.shell import quote

GENERIC = {"admin", "administrator", "analyst", "demo", "guest", "kiosk", "operator", "public",
           "shared", "student", "test", "user", "visitor"}  # fmt: skip


def _people(hostvars: dict[str, Any]) -> tuple[set[str], set[str]]:
    admins = {a["username"] for a in hostvars.get("campus_admins", [])}
    analysts = {a["username"] for a in hostvars.get("campus_site_analysts", [])}
    return admins, analysts


def _login_accounts(evidence: Evidence) -> dict[str, str]:
    """Accounts with a UID of a person (>= 1000) and a login shell → their shell."""
    out = evidence.run("getent passwd")
    # Its positive control: the account database names root (uid 0), or it was not read.
    if out.rc != 0 or not any(line.startswith("root:x:0:") for line in out.stdout.splitlines()):
        probe_failed(f"getent passwd did not list the accounts (no root; exit {out.rc})")
    accounts = {}
    for line in out.stdout.splitlines():
        name, _, uid, _, _, _, shell = line.split(":")
        if int(uid) >= 1000 and name != "nobody" and not shell.endswith(("nologin", "false")):
            accounts[name] = shell
    return accounts


def test_CP_ACC_01_one_account_per_person(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "ACC")
    if "campus_site_analysts" not in hostvars:
        not_applicable("not a workstation: no analyst accounts are expected here")
    admins, analysts = _people(hostvars)
    accounts = _login_accounts(evidence)
    problems = []
    shared = sorted(set(accounts) & GENERIC)
    if shared:
        problems.append(f"shared accounts: {', '.join(shared)}")
    unknown = sorted(set(accounts) - admins - analysts - GENERIC)
    if unknown:
        problems.append(f"accounts of nobody in the spec: {', '.join(unknown)}")
    missing = sorted((admins | analysts) - set(accounts))
    if missing:
        problems.append(f"people of the spec without an account: {', '.join(missing)}")
    for name in hostvars.get("campus_removed_accounts", []):
        if name in accounts:
            problems.append(f"removed account {name} can still log in")
    assert not problems, "; ".join(problems)


# sshd -T's name → (the name in sshd_config, what is allowed, in words): the login rules,
# then what an outside auditor's baseline asks (issue 22): every session logged with its
# key, few tries and sessions, no tunnel, forwarding or compression, idle sessions ended
# by sshd's own ClientAlive (TCPKeepAlive off) within IDLE_SECONDS.
IDLE_SECONDS = 900
_TMOUT = re.compile(r'^declare -(\S+) TMOUT="(\d+)"$', re.MULTILINE)
JOB_USERS = ("root",)  # the only account that may schedule cron and at jobs
SSH_RULES: dict[str, tuple[str, Callable[[str], bool], str]] = {
    "permitrootlogin": ("PermitRootLogin", lambda v: v == "no", "no"),
    "passwordauthentication": ("PasswordAuthentication", lambda v: v == "no", "no"),
    "kbdinteractiveauthentication": ("KbdInteractiveAuthentication", lambda v: v == "no", "no"),
    "permitemptypasswords": ("PermitEmptyPasswords", lambda v: v == "no", "no"),
    "loglevel": ("LogLevel", lambda v: v in ("verbose", "debug1"), "VERBOSE"),
    "maxauthtries": ("MaxAuthTries", lambda v: v.isdigit() and int(v) <= 3, "at most 3"),
    "maxsessions": ("MaxSessions", lambda v: v.isdigit() and int(v) <= 4, "at most 4"),
    "compression": ("Compression", lambda v: v == "no", "no"),
    "tcpkeepalive": ("TCPKeepAlive", lambda v: v == "no", "no (ClientAlive instead)"),
    "allowtcpforwarding": ("AllowTcpForwarding", lambda v: v == "no", "no"),
    "x11forwarding": ("X11Forwarding", lambda v: v == "no", "no"),
    "permittunnel": ("PermitTunnel", lambda v: v == "no", "no"),
    "clientaliveinterval": ("ClientAliveInterval", lambda v: v.isdigit() and int(v) > 0, "set"),
    "clientalivecountmax": ("ClientAliveCountMax", lambda v: v.isdigit() and int(v) > 0, "set"),
    "banner": ("Banner", lambda v: v == "/etc/issue.net", "/etc/issue.net (the spec's banner)"),
}
# Where the spec's banner is shown: the console before login, SSH before login, and after.
BANNER_FILES = ("/etc/issue", "/etc/issue.net", "/etc/motd")
SSH_SETTINGS = tuple(SSH_RULES)
OUTSIDE_ADMIN = "192.0.2.10"  # TEST-NET-1: an address no campus network holds (never contacted)


def _connections(hostvars: dict[str, Any]) -> list[tuple[str, str]]:
    """(user, address) pairs that ``sshd -T -C`` evaluates the Match blocks for.

    Root, an analyst and an admin, each from inside the admin network and from outside it:
    a ``Match`` block that re-enables root or password login for any of them is found.
    """
    admin_host = str(next(ip_network(hostvars["campus_admin_network"], strict=False).hosts()))
    users = ["root"]
    users += [a["username"] for a in hostvars.get("campus_site_analysts", [])[:1]]
    users += [a["username"] for a in hostvars.get("campus_admins", [])[:1]]
    return [(u, addr) for u in users for addr in (admin_host, OUTSIDE_ADMIN)]


def test_CP_ACC_02_no_root_or_password_ssh_login(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "ACC")
    connections = [f"user={u},host=campus-pc,addr={a}" for u, a in _connections(hostvars)]
    # One shell for all: each connection's settings under a header with sshd's own exit
    # code (not grep's), so a config sshd cannot read is an error, never a finding.
    pattern = "|".join(SSH_SETTINGS)
    run = evidence.run(
        f"for c in {' '.join(quote(c) for c in connections)}; do "
        f'out=$(sshd -T -C "$c"); echo "== $c exit $?"; '
        f"printf '%s\\n' \"$out\" | grep -Ei '^({pattern}) '; done"
    )
    blocks: dict[str, dict[str, str]] = {}
    codes: dict[str, str] = {}
    current = ""
    for line in run.stdout.splitlines():
        if line.startswith("== "):
            current, _, code = line[3:].rpartition(" exit ")
            codes[current], blocks[current] = code, {}
        elif current and " " in line:
            key, value = line.lower().split(None, 1)
            blocks[current][key] = value
    found: dict[str, list[str]] = {}
    for c in connections:
        settings = blocks.get(c, {})
        if codes.get(c) != "0" or set(settings) != set(SSH_SETTINGS):
            probe_failed(f"sshd -T -C {c} did not print its settings (exit {codes.get(c)})")
        user, addr = c.split(",")[0][5:], c.split("addr=")[1]
        for key, (name, allowed, wanted) in SSH_RULES.items():
            if key == "permitrootlogin" and user != "root":
                continue
            if not allowed(settings[key]):
                what = f"{name} is {settings[key]}, not {wanted}"
                if key in ("permitrootlogin", "passwordauthentication"):
                    what = f"{name} is {settings[key]}"
                found.setdefault(what, []).append(f"{user}@{addr}")
        interval, count = settings["clientaliveinterval"], settings["clientalivecountmax"]
        idle = int(interval) * int(count) if interval.isdigit() and count.isdigit() else 0
        if idle > IDLE_SECONDS:
            what = f"an idle SSH session lasts {idle} s, more than {IDLE_SECONDS}"
            found.setdefault(what, []).append(f"{user}@{addr}")
    problems = [f"{what} (for {', '.join(who)})" for what, who in found.items()]
    # Its settings are not for other users to read (the baseline's 0600).
    mode = evidence.run("stat -c '%a %U' /etc/ssh/sshd_config")
    if mode.rc != 0:
        probe_failed(f"stat could not read /etc/ssh/sshd_config's mode (exit {mode.rc})")
    if mode.stdout.strip() != "600 root":
        problems.append(f"/etc/ssh/sshd_config is {mode.stdout.strip()}, not 600 root")
    problems += _idle_shell_problems(hostvars, evidence)
    problems += _banner_problems(hostvars, evidence)
    assert not problems, "; ".join(problems)


def _banner_problems(hostvars: dict[str, Any], evidence: Evidence) -> list[str]:
    """Each login shows the spec's banner, word for word (getty's escapes doubled)."""
    banner = str(hostvars.get("campus_banner") or "").strip()
    if not banner:
        evidence.note("the spec has no banner: there is none to show")
        return []
    mark = "==campus-banner=="
    run = evidence.run(
        f"cat /etc/hostname >/dev/null && echo '{mark} probe'; "
        f'for f in {" ".join(BANNER_FILES)}; do echo "{mark} $f"; '
        "cat -- \"$f\" 2>/dev/null || echo '(missing)'; done"
    )
    shown: dict[str, list[str]] = {}
    current = ""
    for line in run.stdout.splitlines():
        if line.startswith(mark):
            current = line[len(mark) :].strip()
            shown[current] = []
        elif current:
            shown[current].append(line)
    if "probe" not in shown:
        probe_failed(f"cat could not read /etc/hostname (exit {run.rc})")
    problems = []
    for path in BANNER_FILES:
        want = banner.replace("\\", "\\\\") if path == "/etc/issue" else banner
        if "\n".join(shown.get(path, [])).strip() != want:
            problems.append(f"{path} does not show the spec's banner")
    return problems


def _idle_shell_problems(hostvars: dict[str, Any], evidence: Evidence) -> list[str]:
    """A login shell (console or SSH alike) ends after the spec's idle time: TMOUT, read-only."""
    limit = int(hostvars.get("campus_idle_seconds", IDLE_SECONDS))
    # A login bash reads /etc/profile and its profile.d as every login does; the echo
    # proves the shell ran, so a missing TMOUT is a finding, not a shell that never started.
    shell = evidence.run("bash -l -c 'echo login shell: ran; declare -p TMOUT' </dev/null 2>&1")
    if "login shell: ran" not in shell.stdout:
        probe_failed(f"a login bash did not run (exit {shell.rc})")
    found = _TMOUT.search(shell.stdout)
    if found is None:
        return [f"idle login shells never end (no TMOUT; the spec says {limit} s)"]
    flags, seconds = found[1], int(found[2])
    problems = []
    if not 0 < seconds <= limit:
        problems.append(f"TMOUT is {seconds} s, not 1..{limit} (the spec's idle time)")
    if "r" not in flags:
        problems.append("TMOUT is not read-only: a user can unset it")
    return problems + _idle_session_problems(limit, evidence)


def _idle_session_problems(limit: int, evidence: Evidence) -> list[str]:
    """logind ends idle sessions (console and graphical seats too), as the running logind
    says: asked with KillUserProcesses first, which every logind answers."""
    run = evidence.run(
        "busctl get-property org.freedesktop.login1 /org/freedesktop/login1 "
        "org.freedesktop.login1.Manager KillUserProcesses StopIdleSessionUSec 2>&1"
    )
    lines = run.stdout.splitlines()
    if not lines or not lines[0].startswith("b "):
        probe_failed(f"logind did not answer on the bus (busctl exit {run.rc})")
    words = lines[1].split() if len(lines) > 1 else []
    if len(words) != 2 or words[0] != "t" or not words[1].isdigit():
        return ["logind cannot end idle sessions (no StopIdleSessionUSec)"]
    seconds = int(words[1]) // 1_000_000
    if not 0 < seconds <= limit:
        return [f"logind ends idle sessions after {seconds or 'never'} s, not 1..{limit}"]
    return []


def test_CP_ACC_03_sudo_is_for_admins_only(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "ACC")
    admins, analysts = _people(hostvars)
    group = evidence.run("getent group sudo").stdout.strip()
    members = set(filter(None, group.split(":")[-1].split(","))) if group else set()
    problems = []
    if members - admins:
        problems.append(f"in group sudo but not admins: {', '.join(sorted(members - admins))}")
    if admins - members:
        problems.append(f"admins without sudo: {', '.join(sorted(admins - members))}")
    # "No other grant" needs sudoers read: the same shell proves it could read the file.
    grants = evidence.run(
        "cat /etc/sudoers >/dev/null && echo 'sudoers: read'; "
        "grep -rhsE '^[^#[:space:]]' /etc/sudoers /etc/sudoers.d/ | grep -v '^Defaults'"
    )
    lines = grants.stdout.splitlines()
    if "sudoers: read" not in lines:
        probe_failed("/etc/sudoers could not be read, so its grants are unknown")
    for line in lines:
        if line == "sudoers: read":
            continue
        who = line.split()[0]
        if who in ("root", "%sudo", "@includedir", "#includedir") or who in admins:
            continue
        problems.append(f"sudoers grants to {who}")
    leaked = sorted(analysts & members)
    if leaked:
        problems.append(f"analysts with sudo: {', '.join(leaked)}")
    problems += _drop_in_and_job_problems(evidence)
    assert not problems, "; ".join(problems)


CRON_PATHS = ("/etc/crontab", "/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily",
              "/etc/cron.weekly", "/etc/cron.monthly")  # fmt: skip


def _drop_in_and_job_problems(evidence: Evidence) -> list[str]:
    """The sudo drop-ins are root's to read; cron and at take jobs from root only."""
    allow = ("/etc/cron.allow", "/etc/at.allow")
    run = evidence.run(
        "cat /etc/sudoers >/dev/null && echo 'as root: yes'; "
        "echo \"sudoers.d: $(stat -c '%a %U:%G' /etc/sudoers.d)\"; "
        f"for p in {' '.join(CRON_PATHS)}; do "
        '[ -e "$p" ] && echo "mode $p: $(stat -c %a "$p")"; done; '
        f"for f in {' '.join(allow)}; do "
        'if [ -f "$f" ]; then echo "$f: $(tr \'\\n\' \' \' < "$f")"; '
        'else echo "$f: (missing)"; fi; done'
    )
    said = dict(line.partition(": ")[::2] for line in run.stdout.splitlines() if ": " in line)
    if said.get("as root") != "yes":
        probe_failed("/etc/sudoers could not be read, so these files' state is unknown")
    problems = []
    for path in CRON_PATHS:
        mode = said.get(f"mode {path}", "").strip()
        if mode and (not mode.isdigit() or int(mode, 8) & 0o077):
            problems.append(f"{path} is {mode}: others may read or change cron's jobs")
    if said.get("sudoers.d", "").strip() != "750 root:root":
        problems.append(f"/etc/sudoers.d is {said.get('sudoers.d', '').strip()}, not 750 root:root")
    for path in allow:
        users = said.get(path, "(missing)").split()
        if users != list(JOB_USERS):
            problems.append(
                f"{path} lets {' '.join(users) or 'no one'} schedule jobs, not only root"
                if users != ["(missing)"]
                else f"{path} is missing: anyone may schedule jobs"
            )
    return problems
