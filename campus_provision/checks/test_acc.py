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
from campus_provision.spec.accounts import PasswordPolicy

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


# CP-ACC-04: what pwscore is asked to judge under the PC's policy. None is ever set as a
# password: each only shows what the policy refuses and what it lets through. The samples
# cycle through the first N character classes; each length 8..30 with each class count
# 1..4 was tried against pwquality 1.4.5 and cracklib's dictionary (Debian 12): the policy
# accepts the sample it allows and refuses the others for the reason named.
_ALPHABETS = (
    "qzvtkwmrjxplhbndgfcsy",  # lower case
    "QZVTKWMRJXPLHBNDGFCSY",  # upper case
    "7304958621",  # digits
    "#%@*+=?~^-",  # others
)
# A dictionary word with a digit and a sign around it: four classes and 30 characters, so
# only the dictionary check refuses it (the spec's min_length stops at 30 for this).
DICTIONARY_PROBE = "Antidisestablishmentarianism1!"
PW_FILES = (
    "/etc/security/pwquality.conf",
    "/etc/security/pwquality.conf.d/*.conf",
    "/etc/security/faillock.conf",
    "/etc/pam.d/common-auth",
    "/etc/pam.d/common-account",
    "/etc/pam.d/common-password",
)
# Of login.defs, only what it says about passwords (the rest would crowd the evidence).
LOGIN_DEFS = "/etc/login.defs"
LOGIN_DEFS_KEYS = "PASS_MAX_DAYS|PASS_MIN_DAYS|PASS_WARN_AGE|ENCRYPT_METHOD|YESCRYPT_COST_FACTOR"
FAILLOCK_DEFAULTS = {"deny": "3", "unlock_time": "600"}  # pam_faillock's, with no file
MIN_YESCRYPT_COST = 5  # shadow's default, and Debian's


def _sample(length: int, classes: int) -> str:
    """``length`` characters of exactly ``classes`` character classes (see above)."""
    return "".join(
        _ALPHABETS[i % classes][(i // classes * 7 + i) % len(_ALPHABETS[i % classes])]
        for i in range(length)
    )


def _pw_probes(policy: dict[str, int]) -> list[tuple[str, str, str | None, str]]:
    """(name, password, the refusal expected or None to be let through, in words)."""
    length, classes = policy["min_length"], policy["min_classes"]
    probes: list[tuple[str, str, str | None, str]] = [
        ("minimum", _sample(length, classes), None,
         f"a password of the spec's minimum ({length} characters, {classes} classes)"),
        ("short", _sample(length - 1, 4), f"shorter than {length} characters",
         f"a {length - 1}-character password (the spec's minimum is {length})"),
        ("dictionary", DICTIONARY_PROBE, "dictionary check",
         f"a password built on a dictionary word ({DICTIONARY_PROBE})"),
    ]  # fmt: skip
    if classes > 1:
        probes.insert(2, ("classes", _sample(length, classes - 1),
                          f"less than {classes} character classes",
                          f"a password of {classes - 1} classes (the spec asks for {classes})"))  # fmt: skip
    return probes


def _sections(stdout: str) -> dict[str, tuple[str, list[str]]]:
    """``== NAME exit CODE`` headers → (code, the lines below each)."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== ") and " exit " in line:
            current, _, code = line[3:].rpartition(" exit ")
            out[current] = (code, [])
        elif current:
            out[current][1].append(line)
    return out


def _pam_lines(lines: list[str], kind: str) -> list[tuple[str, str, list[str]]]:
    """A PAM file's ``kind`` lines as (control, module file name, arguments)."""
    found = []
    for line in lines:
        m = re.match(rf"^{kind}\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$", line.strip())
        if m:
            found.append((m[1], m[2].rsplit("/", 1)[-1], m[3].split()))
    return found


def _index(stack: list[tuple[str, str, list[str]]], module: str, arg: str | None = None) -> int:
    """Where ``module`` (with ``arg``) first is in ``stack``; -1 if it is not."""
    return next(
        (
            i
            for i, (_, mod, args) in enumerate(stack)
            if mod == module and (arg is None or arg in args)
        ),
        -1,
    )


def test_CP_ACC_04_console_passwords_quality_lockout_aging_hashing(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "ACC")
    if "campus_site_analysts" not in hostvars:
        not_applicable("not a workstation: no analyst logs in here")
    policy = {**PasswordPolicy().model_dump(), **(hostvars.get("campus_password_policy") or {})}
    admins, _ = _people(hostvars)
    analysts = [a["username"] for a in hostvars.get("campus_site_analysts", [])]
    probes = _pw_probes(policy)
    # One shell, each part's header with its command's own exit code: dpkg (its own row
    # the positive control); pwscore on each probe (letting the spec's minimum through
    # shows it runs, refusing the others with the spec's own numbers that it read the
    # policy); the files, through sed (a missing file is named, an unreadable one is an
    # error); the shadow entries (root's the positive control).
    words = " ".join(quote(f"{name}:{pw}") for name, pw, _, _ in probes)
    files = " ".join(f if "*" in f else quote(f) for f in PW_FILES)
    people = " ".join(quote(u) for u in ["root", *analysts, *sorted(admins)])
    run = evidence.run(
        "export LC_ALL=C; "
        "dpkg-query -W -f='pkg ${Package} ${db:Status-Abbrev}\\n' dpkg libpam-pwquality 2>&1; "
        f"for p in {words}; do "
        "out=$(printf '%s\\n' \"${p#*:}\" | pwscore 2>&1); "
        'echo "== pwscore ${p%%:*} exit $?"; printf \'%s\\n\' "$out"; done; '
        f"for f in {files}; do "
        "out=$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' \"$f\" 2>&1); "
        'echo "== file $f exit $?"; printf \'%s\\n\' "$out"; done; '
        f"out=$(sed -n -E '/^[[:space:]]*({LOGIN_DEFS_KEYS})[[:space:]]/p' {LOGIN_DEFS} 2>&1); "
        f'echo "== file {LOGIN_DEFS} exit $?"; printf \'%s\\n\' "$out"; '
        # Not the password hashes (field 2): only names and aging reach the evidence.
        f'out=$(getent shadow {people}); echo "== shadow exit $?"; '
        "printf '%s\\n' \"$out\" | cut -d: -f1,3-6"
    )
    lines = [line.strip() for line in run.stdout.splitlines()]
    if "pkg dpkg ii" not in lines:
        probe_failed(
            "dpkg-query did not list dpkg as installed, so libpam-pwquality's state is unknown"
        )
    said = _sections(run.stdout)
    problems = _quality_problems(said, probes, "pkg libpam-pwquality ii" in lines)
    problems += _stack_problems(said)
    problems += _lockout_problems(said, policy)
    problems += _aging_problems(said, policy, analysts, admins)
    assert not problems, "; ".join(problems)


def _file(said: dict[str, tuple[str, list[str]]], path: str) -> list[str] | None:
    """A file's active lines as the probe printed them; None if it does not exist."""
    code, out = said.get(f"file {path}", ("", []))
    if code == "0":
        return out
    if not any("No such file" in line for line in out):
        probe_failed(f"sed could not read {path} (exit {code or 'none'})")
    return None


def _judged(code: str, out: list[str]) -> bool:
    """pwscore answered: a score (let through) or its refusal (exit 1), nothing else."""
    if code == "0":
        return bool(out) and out[-1].strip().isdigit()
    return code == "1" and any("Password quality check failed" in line for line in out)


def _quality_problems(
    said: dict[str, tuple[str, list[str]]],
    probes: list[tuple[str, str, str | None, str]],
    installed: bool,
) -> list[str]:
    """What pwscore lets through and refuses under the PC's policy, against the spec's."""
    problems = []
    if not installed:
        problems.append("libpam-pwquality is not installed: nothing checks a new password")
        if said.get("pwscore minimum", ("", []))[0] == "127":
            return problems  # nor is pwscore: the finding above is the whole story
    for name, _, refusal, words in probes:
        code, out = said.get(f"pwscore {name}", ("", []))
        if not _judged(code, out):
            probe_failed(
                f"pwscore did not judge {words} (exit {code or 'none'}: "
                f"{' '.join(line.strip() for line in out)[:200]})"
            )
        reason = " ".join(line.strip() for line in out[1:]) if code == "1" else ""
        if refusal is None and code != "0":
            problems.append(f"pwscore refuses {words}: {reason}")
        elif refusal is not None and code == "0":
            problems.append(f"pwscore lets through {words}")
        elif refusal is not None and refusal not in reason:
            problems.append(f"pwscore refuses {words} for another reason: {reason}")
    return problems


def _stack_problems(said: dict[str, tuple[str, list[str]]]) -> list[str]:
    """The PAM stacks: faillock around pam_unix, pwquality before it, yescrypt hashes."""
    problems = []
    stacks = {}
    for kind in ("auth", "account", "password"):
        lines = _file(said, f"/etc/pam.d/common-{kind}")
        if lines is None:
            problems.append(f"/etc/pam.d/common-{kind} is missing")
        stacks[kind] = _pam_lines(lines or [], kind)
    auth, password = stacks["auth"], stacks["password"]
    unix = _index(auth, "pam_unix.so")
    pre = _index(auth, "pam_faillock.so", "preauth")
    if pre < 0 or not 0 <= pre < unix or auth[pre][0] not in ("requisite", "required"):
        problems.append("common-auth does not refuse a locked account before its password "
                        "is tried (pam_faillock preauth, requisite, before pam_unix)")  # fmt: skip
    fail = _index(auth, "pam_faillock.so", "authfail")
    if fail < 0 or not 0 <= unix < fail:
        problems.append("common-auth does not count failed logins "
                        "(pam_faillock authfail after pam_unix)")  # fmt: skip
    if _index(stacks["account"], "pam_faillock.so") < 0:
        problems.append("common-account has no pam_faillock: a good login does not clear the count")
    quality = _index(password, "pam_pwquality.so")
    unix = _index(password, "pam_unix.so")
    if quality < 0 or quality > unix or password[quality][0] not in ("requisite", "required"):
        problems.append("common-password does not check a new password's quality first "
                        "(pam_pwquality, requisite, before pam_unix)")  # fmt: skip
    if unix < 0 or "yescrypt" not in password[unix][2]:
        args = " ".join(password[unix][2]) if unix >= 0 else "no pam_unix"
        problems.append(f"common-password does not hash new passwords with yescrypt ({args})")
    # libpwquality reads pwquality.conf.d first, then pwquality.conf; the module's own
    # arguments come last.
    conf_d = sorted(k[5:] for k in said if k.startswith("file /etc/security/pwquality.conf.d/"))
    settings: dict[str, str] = {}
    for path in [*conf_d, "/etc/security/pwquality.conf"]:
        for line in _file(said, path) or []:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    for arg in password[quality][2] if quality >= 0 else []:
        key, _, value = arg.partition("=")
        settings[key] = value
    if settings.get("enforcing", "1") == "0":
        problems.append("pam_pwquality only warns (enforcing = 0)")
    if "enforce_for_root" not in settings:
        problems.append("the quality policy does not hold when root sets a password, as IT "
                        "does at the desk (no enforce_for_root)")  # fmt: skip
    return problems


def _lockout_problems(said: dict[str, tuple[str, list[str]]], policy: dict[str, int]) -> list[str]:
    """faillock.conf (and the module's arguments, which win) against the spec's lockout."""
    conf = _file(said, "/etc/security/faillock.conf")
    settings = dict(FAILLOCK_DEFAULTS)
    for line in conf or []:
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    for _, module, args in _pam_lines(_file(said, "/etc/pam.d/common-auth") or [], "auth"):
        if module == "pam_faillock.so":
            settings |= dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in settings)
    unlock = "0" if settings["unlock_time"] == "never" else settings["unlock_time"]
    want = policy["lockout_minutes"] * 60
    problems = []
    if settings["deny"] != str(policy["lockout_attempts"]):
        problems.append(f"an account locks after {settings['deny']} failed logins, "
                        f"not {policy['lockout_attempts']}")  # fmt: skip
    if unlock != str(want):
        problems.append(f"a locked account opens again after {unlock} s, not {want} s"
                        + (" (0: when IT resets it)" if want == 0 else ""))  # fmt: skip
    if problems and conf is None:
        problems[-1] += " (no /etc/security/faillock.conf: pam_faillock's defaults)"
    return problems


def _aging_problems(
    said: dict[str, tuple[str, list[str]]], policy: dict[str, int], analysts: list[str],
    admins: set[str],
) -> list[str]:  # fmt: skip
    """login.defs for new accounts, and each analyst's own aging, against the spec's."""
    ages = (policy["min_age_days"], policy["max_age_days"], policy["warn_days"])
    problems = []
    defs: dict[str, str] = {}
    lines = _file(said, LOGIN_DEFS)
    if lines is None:
        problems.append("/etc/login.defs is missing")
    for line in lines or []:
        parts = line.split()
        if len(parts) >= 2:
            defs[parts[0]] = parts[1]  # shadow reads the last one
    wanted = {"PASS_MIN_DAYS": ages[0], "PASS_MAX_DAYS": ages[1], "PASS_WARN_AGE": ages[2],
              "ENCRYPT_METHOD": "YESCRYPT"}  # fmt: skip
    wrong = [f"{key} {defs.get(key, '(unset)')}, not {value}"
             for key, value in wanted.items() if defs.get(key) != str(value)]  # fmt: skip
    cost = defs.get("YESCRYPT_COST_FACTOR", str(MIN_YESCRYPT_COST))
    if not cost.isdigit() or int(cost) < MIN_YESCRYPT_COST:
        wrong.append(f"YESCRYPT_COST_FACTOR {cost}, not at least {MIN_YESCRYPT_COST}")
    if wrong:
        problems.append(f"login.defs (for new accounts) has {', '.join(wrong)}")
    # name:lastchg:min:max:warn, root's the positive control.
    code, out = said.get("shadow", ("", []))
    entries = {f[0]: f for line in out if len(f := line.strip().split(":")) == 5}
    if "root" not in entries or code not in ("0", "2"):
        probe_failed(f"getent shadow did not list root (exit {code or 'none'}), "
                     "so the accounts' aging is unknown")  # fmt: skip
    missing = [u for u in analysts if u not in entries]
    if missing:
        problems.append(f"analysts without an account to age: {', '.join(missing)}")
    found: dict[str, list[str]] = {}
    for user in analysts:
        got = tuple(entries[user][2:5]) if user in entries else None
        if got is not None and got != tuple(str(a) for a in ages):
            what = (f"passwords age min {got[0] or '-'}, max {got[1] or '-'}, warn {got[2] or '-'} "
                    f"days, not {ages[0]}, {ages[1]}, {ages[2]}")  # fmt: skip
            found.setdefault(what, []).append(user)
    problems += [f"{what}: {', '.join(who)}" for what, who in found.items()]
    expiring = [f"{u} ({entries[u][3]} days)" for u in sorted(admins)
                if u in entries and entries[u][3].isdigit() and int(entries[u][3]) < 99999]  # fmt: skip
    if expiring:
        problems.append("admins' locked passwords expire, and their key logins with them: "
                        + ", ".join(expiring))  # fmt: skip
    return problems
