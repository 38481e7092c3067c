"""SYS-01 and SYS-02 through a real shell, with ``cat`` standing in for the kernel's
/proc/sys: what is in effect passes, a value that differs fails naming it, an unreadable
key or /proc/sys is an error, and a container's kernel settings are not applicable once
its file sets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from campus_provision.checks import test_sys
from campus_provision.checks.conftest import Evidence
from tests.conftest import ROOT
from tests.verify.test_check_probes import Shell, tool

HOSTVARS: dict[str, Any] = {"campus_control_families": {}}


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in tools, and a /boot with one kernel's symbol map, root's alone to read."""
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "System.map-6.1.0-50-amd64").write_text("ffffffff81000000 T _text\n")
    (boot / "System.map-6.1.0-50-amd64").chmod(0o600)
    monkeypatch.setattr(test_sys, "BOOT", str(boot))
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


IN_EFFECT = {**test_sys.NETWORK, **test_sys.KERNEL, "kernel.ostype": "Linux"}


def kernel(tools: Path, values: dict[str, str], sysctl_file: str | None = None) -> None:
    """A ``cat`` that answers for /proc/sys (cwd) from ``values``, and for the campus file
    with ``sysctl_file`` (absent when None)."""
    cases = "".join(f'  {k.replace(".", "/")}) echo "{v}" ;;\n' for k, v in values.items())
    if sysctl_file is not None:
        (tools / "campus.conf").write_text(sysctl_file, encoding="utf-8")
        cases += f'  {test_sys.SYSCTL_FILE}) /bin/cat "{tools}/campus.conf" ;;\n'
    tool(tools, "cat", f'case "$1" in\n{cases}'
         '  *) echo "cat: $1: No such file or directory" >&2; exit 1 ;;\nesac\n')  # fmt: skip


def run(tools: Path, control: str, *, container: bool = False) -> Evidence:
    ev = Evidence(Shell(tools))
    if control == "01":
        test_sys.test_CP_SYS_01_network_settings_in_effect(None, HOSTVARS, ev)
    else:
        test_sys.test_CP_SYS_02_kernel_settings_in_effect(None, HOSTVARS, ev, container)
    return ev


def test_the_role_sets_what_the_checks_read_back() -> None:
    defaults = yaml.safe_load(
        (ROOT / "roles/campus_hardening/defaults/main.yml").read_text(encoding="utf-8")
    )
    wanted = {k: str(v) for k, v in defaults["campus_hardening_sysctl"].items()}
    assert wanted == {**test_sys.NETWORK, **test_sys.KERNEL}


def test_settings_in_effect_pass(tools: Path) -> None:
    kernel(tools, IN_EFFECT)
    assert "21 network settings read back" in run(tools, "01").text()
    assert "10 kernel settings read back" in run(tools, "02").text()


def test_a_setting_not_in_effect_fails_naming_it(tools: Path) -> None:
    kernel(tools, {**IN_EFFECT, "net.ipv4.conf.all.rp_filter": "2", "kernel.kptr_restrict": "0"})
    with pytest.raises(AssertionError, match=r"net\.ipv4\.conf\.all\.rp_filter is 2 \(want 1\)"):
        run(tools, "01")
    with pytest.raises(AssertionError, match=r"kernel\.kptr_restrict is 0 \(want 2\)"):
        run(tools, "02")


def test_an_unreadable_key_or_proc_sys_is_an_error(tools: Path) -> None:
    kernel(tools, {k: v for k, v in IN_EFFECT.items() if k != "dev.tty.ldisc_autoload"})
    with pytest.raises(pytest.fail.Exception, match=r"could not read dev\.tty\.ldisc_autoload"):
        run(tools, "02")
    kernel(tools, {})  # no /proc/sys at all: not even kernel/ostype
    with pytest.raises(pytest.fail.Exception, match="/proc/sys could not be read"):
        run(tools, "01")


def test_on_a_container_the_kernel_settings_are_not_applicable_once_the_file_sets_them(
    tools: Path,
) -> None:
    lines = "".join(f"{k} = {v}\n" for k, v in test_sys.KERNEL.items())
    kernel(tools, {"kernel.ostype": "Linux"}, lines)  # the host's kernel: not read at all
    with pytest.raises(pytest.skip.Exception, match=r"not applicable: .* shares its host's kernel"):
        run(tools, "02", container=True)
    kernel(tools, {"kernel.ostype": "Linux"}, lines.replace("kernel.perf_event_paranoid = 3", ""))
    with pytest.raises(AssertionError, match=r"does not set: kernel\.perf_event_paranoid = 3"):
        run(tools, "02", container=True)
    kernel(tools, {"kernel.ostype": "Linux"})  # no campus file at all
    with pytest.raises(AssertionError, match=r"does not set: kernel\.dmesg_restrict = 1"):
        run(tools, "02", container=True)


def test_a_symbol_map_others_may_read_fails_on_any_pc(tools: Path) -> None:
    kernel(tools, IN_EFFECT, "".join(f"{k} = {v}\n" for k, v in test_sys.KERNEL.items()))
    (Path(test_sys.BOOT) / "System.map-6.1.0-50-amd64").chmod(0o644)
    for container in (False, True):
        with pytest.raises(AssertionError, match=r"System\.map-6\.1\.0-50-amd64 is 644 root"):
            run(tools, "02", container=container)


def test_a_boot_that_cannot_be_listed_is_an_error(tools: Path) -> None:
    kernel(tools, IN_EFFECT)
    Path(test_sys.BOOT).rename(Path(test_sys.BOOT).with_name("gone"))
    with pytest.raises(pytest.fail.Exception, match="could not be listed"):
        run(tools, "02")


def apparmor(tools: Path, status: dict[str, Any] | None, *, enabled: str = "Y") -> None:
    """dpkg-query, the kernel's AppArmor switch and aa-status as a provisioned VM has them
    (``status`` None: the apparmor package is not installed)."""
    installed = "apparmor ii" if status is not None else ""
    tool(tools, "dpkg-query", f'echo "dpkg ii"; [ -n "{installed}" ] && echo "{installed}"; true\n')
    (tools / "aa.json").write_text(json.dumps(status or {}), encoding="utf-8")
    tool(tools, "aa-status", f'/bin/cat "{tools}/aa.json"\n')
    tool(tools, "cat", f'echo "{enabled}"\n')


def sys_03(tools: Path, *, container: bool = False) -> Evidence:
    ev = Evidence(Shell(tools))
    test_sys.test_CP_SYS_03_apparmor_confines_with_debians_profiles(None, HOSTVARS, ev, container)
    return ev


ENFORCING = {
    "version": "1",
    "profiles": {"lsb_release": "enforce", "/usr/sbin/chronyd": "enforce"},
    "processes": {"/usr/sbin/chronyd": [{"profile": "/usr/sbin/chronyd", "pid": "577",
                                          "status": "enforce"}]},
}  # fmt: skip


def test_apparmor_enforcing_debians_profiles_passes(tools: Path) -> None:
    apparmor(tools, ENFORCING)
    assert "2 AppArmor profiles loaded, all in enforce mode" in sys_03(tools).text()


def test_apparmor_lax_or_absent_fails_naming_why(tools: Path) -> None:
    lax = {**ENFORCING, "profiles": {**ENFORCING["profiles"], "lsb_release": "complain"}}
    lax["processes"] = {"/usr/sbin/chronyd": [{"pid": "577", "status": "unconfined"}]}
    apparmor(tools, lax)
    with pytest.raises(AssertionError, match=r"not enforced: lsb_release; running unconfined"):
        sys_03(tools)
    apparmor(tools, None)
    for container in (False, True):
        with pytest.raises(AssertionError, match="apparmor is not installed"):
            sys_03(tools, container=container)
    apparmor(tools, ENFORCING, enabled="N")
    with pytest.raises(AssertionError, match="not enabled in the kernel"):
        sys_03(tools)


def test_apparmor_on_a_container_is_not_applicable_once_installed(tools: Path) -> None:
    apparmor(tools, ENFORCING)
    with pytest.raises(pytest.skip.Exception, match="the host kernel's"):
        sys_03(tools, container=True)


def test_apparmor_probes_that_cannot_answer_are_errors(tools: Path) -> None:
    apparmor(tools, ENFORCING)
    tool(tools, "aa-status", 'echo "aa-status: command not found" >&2; exit 127\n')
    with pytest.raises(pytest.fail.Exception, match="aa-status --json gave no status"):
        sys_03(tools)
    tool(tools, "dpkg-query", "exit 2\n")
    with pytest.raises(pytest.fail.Exception, match="did not list dpkg as installed"):
        sys_03(tools)
