"""ACC: one account per person, no root or password SSH login, sudo only for admins."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable

GENERIC = {"admin", "administrator", "analyst", "demo", "guest", "kiosk", "operator", "public",
           "shared", "student", "test", "user", "visitor"}  # fmt: skip


def _people(hostvars: dict[str, Any]) -> tuple[set[str], set[str]]:
    admins = {a["username"] for a in hostvars.get("campus_admins", [])}
    analysts = {a["username"] for a in hostvars.get("campus_site_analysts", [])}
    return admins, analysts


def _login_accounts(evidence: Evidence) -> dict[str, str]:
    """Accounts with a UID of a person (>= 1000) and a login shell → their shell."""
    out = evidence.run("getent passwd")
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


def test_CP_ACC_02_no_root_or_password_ssh_login(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "ACC")
    effective = evidence.run(
        "sshd -T 2>/dev/null | grep -Ei '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication|permitemptypasswords) '"
    )
    settings = dict(
        line.lower().split(None, 1) for line in effective.stdout.splitlines() if " " in line
    )
    problems = []
    if settings.get("permitrootlogin") != "no":
        problems.append(f"PermitRootLogin is {settings.get('permitrootlogin', 'unknown')}")
    if settings.get("passwordauthentication") != "no":
        problems.append(
            f"PasswordAuthentication is {settings.get('passwordauthentication', 'unknown')}"
        )
    if settings.get("kbdinteractiveauthentication") != "no":
        problems.append(
            f"KbdInteractiveAuthentication is {settings.get('kbdinteractiveauthentication', 'unknown')}"
        )
    assert not problems, "; ".join(problems)


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
    grants = evidence.run(
        "grep -rhsE '^[^#[:space:]]' /etc/sudoers /etc/sudoers.d/ | grep -v '^Defaults'"
    )
    for line in grants.stdout.splitlines():
        who = line.split()[0]
        if who in ("root", "%sudo", "@includedir", "#includedir") or who in admins:
            continue
        problems.append(f"sudoers grants to {who}")
    leaked = sorted(analysts & members)
    if leaked:
        problems.append(f"analysts with sudo: {', '.join(leaked)}")
    assert not problems, "; ".join(problems)
