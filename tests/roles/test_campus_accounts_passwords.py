"""campus_accounts' console password tasks (CP-ACC-04): its scripts, profiles and templates.

The scripts run here with ``sh``, on files in a temporary directory and with stand-ins for
``getent``, ``chage`` and ``pam-auth-update`` first on the PATH: each changes only what
differs, says "changed" or "ok" last, and changes nothing with ``--check``. The lab tests
run them on real PCs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from campus_provision.paths import roles_dir
from campus_provision.shell import quote

ROLE = roles_dir() / "campus_accounts"
FILES = ROLE / "files"
LOGIN_DEFS = """# /etc/login.defs, as Debian 12 ships it (the parts that matter here)
#	PASS_MAX_DAYS	Maximum number of days a password may be used.
PASS_MAX_DAYS	99999
PASS_MIN_DAYS	0
PASS_WARN_AGE	7
ENCRYPT_METHOD SHA512
#YESCRYPT_COST_FACTOR 5
"""
SETTINGS = ["PASS_MAX_DAYS=180", "PASS_MIN_DAYS=1", "PASS_WARN_AGE=14", "ENCRYPT_METHOD=YESCRYPT",
            "YESCRYPT_COST_FACTOR=5"]  # fmt: skip


def run(script: str, *args: str, path: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    search = f"{path}:/usr/bin:/bin:/usr/sbin:/sbin" if path else "/usr/bin:/bin:/usr/sbin:/sbin"
    return subprocess.run(["sh", str(FILES / script), *args], capture_output=True, text=True,
                          env={"PATH": search, **(env or {})}, timeout=30, check=False)  # fmt: skip


def stub(tools: Path, name: str, script: str) -> None:
    tools.mkdir(exist_ok=True)
    (tools / name).write_text("#!/bin/sh\n" + script)
    (tools / name).chmod(0o755)


def test_login_defs_are_set_once_and_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text(LOGIN_DEFS)
    defs.chmod(0o644)
    dry = run("campus-login-defs.sh", "--check", str(defs), *SETTINGS)
    assert dry.stdout.splitlines()[-1] == "changed"
    assert "would set PASS_MAX_DAYS 180" in dry.stdout
    assert defs.read_text() == LOGIN_DEFS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["login.defs"]  # no temporary file

    real = run("campus-login-defs.sh", str(defs), *SETTINGS)
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines() == [
        "set PASS_MAX_DAYS 180", "set PASS_MIN_DAYS 1", "set PASS_WARN_AGE 14",
        "set ENCRYPT_METHOD YESCRYPT", "set YESCRYPT_COST_FACTOR 5", "changed",
    ]  # fmt: skip
    text = defs.read_text()
    assert "PASS_MAX_DAYS\t180\n" in text and "ENCRYPT_METHOD\tYESCRYPT\n" in text
    assert "#\tPASS_MAX_DAYS\tMaximum number" in text  # the comments stay as they were
    assert text.endswith("# Set by campus-provision (CP-ACC-04).\nYESCRYPT_COST_FACTOR\t5\n")
    assert oct(defs.stat().st_mode & 0o777) == "0o644"

    again = run("campus-login-defs.sh", str(defs), *SETTINGS)
    assert again.stdout == "ok\n"
    assert defs.read_text() == text


def test_login_defs_takes_only_key_value_pairs(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text(LOGIN_DEFS)
    for bad in ("PASS_MAX_DAYS", "PASS MAX=1", "A=1;rm", "=1", "A=", "A=1=2"):
        done = run("campus-login-defs.sh", str(defs), bad)
        assert done.returncode == 2, bad
        assert "is not KEY=VALUE" in done.stderr
    assert defs.read_text() == LOGIN_DEFS


SHADOW = {
    "kim-jiwoo": "kim-jiwoo:!:20000:0:99999:7:::",
    "lee-hana": "lee-hana:$y$j9T$x:20000:1:180:14:::",
    "park-seoyeon": "park-seoyeon:!:20000:1:180:14:::",
    "choi-minho": "choi-minho:!:20000:0::7:::",
}


def aging_tools(tmp_path: Path) -> tuple[Path, Path]:
    tools, log = tmp_path / "tools", tmp_path / "chage.log"
    cases = "".join(f"    {u}) echo '{line}' ;;\n" for u, line in SHADOW.items())
    stub(tools, "getent", f"case $2 in\n{cases}    *) exit 2 ;;\nesac\n")
    stub(tools, "chage", f'echo "$*" >> {log}\n')
    return tools, log


def test_aging_changes_only_the_accounts_that_differ(tmp_path: Path) -> None:
    tools, log = aging_tools(tmp_path)
    args = ("1", "180", "14", "kim-jiwoo", "lee-hana", "--", "park-seoyeon", "choi-minho")
    dry = run("campus-password-aging.sh", "--check", *args, path=tools)
    assert dry.stdout.splitlines() == [
        "would age kim-jiwoo: min:max:warn 0:99999:7 -> 1:180:14",
        "would stop admin park-seoyeon's locked password from ageing (max 180 days)",
        "changed",
    ]
    assert not log.exists()
    real = run("campus-password-aging.sh", *args, path=tools)
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines()[-1] == "changed"
    # lee-hana is as the spec says and choi-minho's password never expires: left alone.
    assert log.read_text().splitlines() == [
        "-m 1 -M 180 -W 14 -- kim-jiwoo",
        "-M -1 -- park-seoyeon",
    ]
    log.unlink()
    settled = run("campus-password-aging.sh", "1", "180", "14", "lee-hana", "--", "choi-minho",
                  path=tools)  # fmt: skip
    assert settled.stdout == "ok\n"
    assert not log.exists()


def test_aging_names_analysts_without_an_account(tmp_path: Path) -> None:
    tools, log = aging_tools(tmp_path)
    done = run("campus-password-aging.sh", "1", "180", "14", "lee-hana", "nobody-here",
               path=tools)  # fmt: skip
    assert done.returncode == 1
    assert "no account for: nobody-here" in done.stderr
    # In a dry run an analyst the accounts task has not made yet is one it would age.
    dry = run("campus-password-aging.sh", "--check", "1", "180", "14", "nobody-here",
              path=tools)  # fmt: skip
    assert dry.stdout.splitlines() == ["would age nobody-here (no account yet)", "changed"]
    bad = run("campus-password-aging.sh", "1", "18O", "14", "lee-hana", path=tools)
    assert bad.returncode == 2 and "'18O' is not a number of days" in bad.stderr
    assert not log.exists()


PROFILES = ["pwquality", "campus-faillock-preauth", "campus-faillock-authfail"]
PWQUALITY = """Name: Pwquality password strength checking
Default: yes
Priority: 1024
Conflicts: cracklib
Password-Type: Primary
Password:
\trequisite\t\t\tpam_pwquality.so retry=3
Password-Initial:
\trequisite\t\t\tpam_pwquality.so retry=3
"""
# What pam-auth-update writes from the three profiles and Debian's unix profile.
STACKS = {
    "common-auth": "auth\trequisite\tpam_faillock.so preauth\n"
    "auth\t[success=2 default=ignore]\tpam_unix.so nullok try_first_pass\n"
    "auth\t[default=die]\tpam_faillock.so authfail\nauth\trequisite\t\t\tpam_deny.so\n",
    "common-account": "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so \n"
    "account\trequired\tpam_faillock.so \n",
    "common-password": "password\trequisite\t\t\tpam_pwquality.so retry=3\n"
    "password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok yescrypt\n",
}


def pam_setup(tmp_path: Path, writes: bool = True) -> tuple[dict[str, str], Path, Path]:
    configs, pamd, modules = tmp_path / "pam-configs", tmp_path / "pam.d", tmp_path / "security"
    for d in (configs, pamd, modules):
        d.mkdir()
    (configs / "pwquality").write_text(PWQUALITY)
    for name in PROFILES[1:]:
        (configs / name).write_text((FILES / "pam-configs" / name).read_text())
    for name in ("pam_faillock.so", "pam_pwquality.so"):
        (modules / name).write_text("")
    for name in STACKS:
        (pamd / name).write_text("# only pam_unix so far\n")
    tools, log = tmp_path / "tools", tmp_path / "pam-auth-update.log"
    copy = "".join(f"printf '%s' {quote(t)} > {pamd}/{n}\n" for n, t in STACKS.items())
    stub(tools, "pam-auth-update", f'echo "$*" >> {log}\n' + (copy if writes else ""))
    env = {"CAMPUS_PAM_CONFIGS": str(configs), "CAMPUS_PAM_D": str(pamd),
           "CAMPUS_PAM_MODULES": str(modules)}  # fmt: skip
    return env, tools, log


def test_pam_profiles_are_enabled_once_and_checked_after(tmp_path: Path) -> None:
    env, tools, log = pam_setup(tmp_path)
    dry = run("campus-pam-profiles.sh", "--check", *PROFILES, path=tools, env=env)
    assert "would add common-auth: requisite pam_faillock.so preauth" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "changed" and not log.exists()
    real = run("campus-pam-profiles.sh", *PROFILES, path=tools, env=env)
    assert real.returncode == 0, real.stderr
    assert log.read_text() == f"--package --enable {' '.join(PROFILES)}\n"
    assert real.stdout.splitlines() == [
        "added common-password: requisite pam_pwquality.so retry=3",
        "added common-auth: requisite pam_faillock.so preauth",
        "added common-auth: [default=die] pam_faillock.so authfail",
        "added common-account: required pam_faillock.so",
        "changed",
    ]
    log.unlink()
    again = run("campus-pam-profiles.sh", *PROFILES, path=tools, env=env)
    assert again.stdout == "ok\n" and not log.exists()


def test_pam_profiles_fail_when_pam_auth_update_leaves_lines_out(tmp_path: Path) -> None:
    # pam-auth-update exits 0 and writes nothing when common-* has local changes.
    env, tools, log = pam_setup(tmp_path, writes=False)
    done = run("campus-pam-profiles.sh", *PROFILES, path=tools, env=env)
    assert done.returncode == 1
    assert "pam-auth-update left these lines out" in done.stderr
    assert "common-auth: requisite pam_faillock.so preauth" in done.stderr
    assert log.exists()


def test_pam_profiles_refuse_to_name_a_module_that_is_not_there(tmp_path: Path) -> None:
    env, tools, log = pam_setup(tmp_path)
    (Path(env["CAMPUS_PAM_MODULES"]) / "pam_faillock.so").unlink()
    done = run("campus-pam-profiles.sh", *PROFILES, path=tools, env=env)
    assert done.returncode == 1
    assert "no pam_faillock.so in" in done.stderr
    assert not log.exists()  # the stacks were never rewritten
    assert all(p.read_text() == "# only pam_unix so far\n" for p in (tmp_path / "pam.d").iterdir())


def _profile(name: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in (FILES / "pam-configs" / name).read_text().splitlines():
        if line[:1] in " \t":
            fields[key] += line.strip() + "\n"
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_the_faillock_profiles_sit_around_pam_unix() -> None:
    # pam_unix's profile has priority 256; pam-auth-update orders Primary modules by it.
    preauth, authfail = _profile("campus-faillock-preauth"), _profile("campus-faillock-authfail")
    assert int(preauth["Priority"]) > 256 > int(authfail["Priority"])
    assert preauth["Auth-Type"] == authfail["Auth-Type"] == "Primary"
    assert preauth["Auth"] == "requisite\tpam_faillock.so preauth\n"
    assert authfail["Auth"] == "[default=die]\tpam_faillock.so authfail\n"
    assert authfail["Account"] == "required\tpam_faillock.so\n"
    names = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert names["campus_accounts__faillock_profiles"] == PROFILES[1:]


def render(template: str, **values: int) -> str:
    # Configuration files, not HTML: nothing to escape (as Ansible renders them).
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),  # noqa: S701
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # fmt: skip
    return env.get_template(template).render(ansible_managed="managed", **values)


def test_the_templates_carry_the_specs_policy() -> None:
    quality = render("pwquality.conf.j2", campus_accounts_password_min_length=14,
                     campus_accounts_password_min_classes=4)  # fmt: skip
    lines = quality.splitlines()
    for line in ("minlen = 14", "minclass = 4", "dictcheck = 1", "enforcing = 1",
                 "enforce_for_root", "dcredit = 0"):  # fmt: skip
        assert line in lines, line
    lockout = render("faillock.conf.j2", campus_accounts_faillock_attempts=3,
                     campus_accounts_faillock_minutes=0)  # fmt: skip
    assert {"deny = 3", "unlock_time = 0"} <= set(lockout.splitlines())
    assert "audit" not in [line.strip() for line in lockout.splitlines()]


@pytest.mark.parametrize("script", sorted(p.name for p in FILES.glob("*.sh")))
def test_the_scripts_are_posix_sh_and_executable(script: str) -> None:
    assert os.access(FILES / script, os.X_OK)
    assert (FILES / script).read_text().startswith("#!/bin/sh\n")
    syntax = subprocess.run(["sh", "-n", str(FILES / script)], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert syntax.returncode == 0, syntax.stderr
