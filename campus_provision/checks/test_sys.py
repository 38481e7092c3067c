"""SYS: the network and kernel hardening settings are in effect, read back from the kernel.

The values are read from ``/proc/sys`` of the running kernel, never concluded from the
sysctl.d file that sets them: a file that was written but never loaded (or loaded before
another file overrode it) passes nothing. A container has a network stack of its own but
shares its host's kernel, so the kernel part (SYS-02) is not applicable there, after the
file that would set it is checked.
"""

from __future__ import annotations

import json
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    not_applicable,
    probe_failed,
)

# The baseline campus_hardening sets (roles/campus_hardening/defaults/main.yml, which a
# unit test holds to these): network keys, one per network namespace, then kernel keys.
NETWORK = {
    "net.ipv4.ip_forward": "0",
    "net.ipv6.conf.all.forwarding": "0",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
    "net.ipv4.conf.default.secure_redirects": "0",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.default.accept_source_route": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
    "net.ipv6.conf.default.accept_source_route": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.conf.default.log_martians": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv4.tcp_syncookies": "1",
}
KERNEL = {
    "kernel.dmesg_restrict": "1",
    "kernel.kptr_restrict": "2",
    "kernel.randomize_va_space": "2",
    "kernel.unprivileged_bpf_disabled": "1",
    "kernel.perf_event_paranoid": "3",
    "dev.tty.ldisc_autoload": "0",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "fs.protected_fifos": "1",
    "fs.protected_regular": "2",
}
SYSCTL_FILE = "/etc/sysctl.d/60-campus.conf"
BOOT = "/boot"  # where the kernels' symbol maps are


def _read_back(evidence: Evidence, keys: dict[str, str]) -> dict[str, str]:
    """Each key's value as the running kernel has it, from ``/proc/sys``, in one command.

    Every key prints one line, ``<key> <value>`` or ``<key> unreadable``; the command
    proves itself by reading ``kernel/ostype`` first, which every Linux has. A key the
    shell never reported on, or an unreadable one, is a probe error.
    """
    paths = " ".join(k.replace(".", "/") for k in ["kernel.ostype", *keys])
    result = evidence.run(
        f"cd /proc/sys && for f in {paths}; do "
        'v=$(cat "$f" 2>/dev/null) && echo "$f $v" || echo "$f unreadable"; done'
    )
    seen = {}
    for line in result.stdout.splitlines():
        path, _, value = line.partition(" ")
        seen[path.replace("/", ".")] = " ".join(value.split())
    if seen.get("kernel.ostype") != "Linux":
        probe_failed(f"/proc/sys could not be read (kernel/ostype: {seen.get('kernel.ostype')})")
    missing = [k for k in keys if seen.get(k, "unreadable") == "unreadable"]
    if missing:
        probe_failed(f"could not read {', '.join(missing)} from /proc/sys")
    return {k: seen[k] for k in keys}


def _differences(found: dict[str, str], wanted: dict[str, str]) -> list[str]:
    return [f"{k} is {found[k]} (want {v})" for k, v in wanted.items() if found[k] != v]


def test_CP_SYS_01_network_settings_in_effect(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "SYS")
    wrong = _differences(_read_back(evidence, NETWORK), NETWORK)
    assert not wrong, "in effect: " + "; ".join(wrong)
    evidence.note(f"{len(NETWORK)} network settings read back from /proc/sys/net")


def _file_values(evidence: Evidence) -> dict[str, str]:
    """What the campus sysctl file sets (``key = value`` lines): none when it is absent;
    a file that is there but cannot be read, or a ``cat`` that never ran, is an error."""
    result = evidence.run(f'cat {SYSCTL_FILE} 2>&1; echo "cat exit $?"')
    text, _, status = result.stdout.rstrip("\n").rpartition("\n")
    if status == "cat exit 1" and text.endswith("No such file or directory"):
        return {}
    if status != "cat exit 0":
        probe_failed(f"{SYSCTL_FILE} could not be read: {result.stdout.strip()[-200:]}")
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith(("#", ";")):
            values[key.strip()] = value.strip()
    return values


def _system_map_problems(evidence: Evidence) -> list[str]:
    """The kernel symbol maps in /boot that others may read (none there is none leaked);
    the listing proves itself: ``cd`` into /boot must succeed first."""
    result = evidence.run(
        f'cd {BOOT} && echo "boot: listed" && for f in System.map-*; do '
        f'[ -e "$f" ] && stat -c "%a %U {BOOT}/%n" "$f"; done; true'
    )
    lines = result.stdout.splitlines()
    if "boot: listed" not in lines:
        probe_failed(f"{BOOT} could not be listed: {result.stderr.strip()[-200:]}")
    return [
        f"{line.split()[2]} is {line.split()[0]} {line.split()[1]}, not 600 root"
        for line in lines[lines.index("boot: listed") + 1 :]
        if len(line.split()) == 3 and line.split()[:2] != ["600", "root"]
    ]


def test_CP_SYS_02_kernel_settings_in_effect(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "SYS")
    readable = _system_map_problems(evidence)
    assert not readable, "; ".join(readable)
    if is_container:
        in_file = _file_values(evidence)
        unset = [f"{k} = {v}" for k, v in KERNEL.items() if in_file.get(k) != v]
        assert not unset, f"{SYSCTL_FILE} does not set: " + ", ".join(unset)
        not_applicable(
            f"{SYSCTL_FILE} sets them, but a container shares its host's kernel: they take "
            "effect only on a PC with a kernel of its own"
        )
    wrong = _differences(_read_back(evidence, KERNEL), KERNEL)
    assert not wrong, "in effect: " + "; ".join(wrong)
    evidence.note(f"{len(KERNEL)} kernel settings read back from /proc/sys")


def _apparmor_installed(evidence: Evidence) -> bool:
    """Whether the apparmor package is installed; dpkg-query must list dpkg itself as
    installed in the same command, or the answer proves nothing."""
    result = evidence.run("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' dpkg apparmor 2>&1")
    status = {
        words[0]: words[1] for words in map(str.split, result.stdout.splitlines()) if len(words) > 1
    }
    if status.get("dpkg") != "ii":
        probe_failed("dpkg-query did not list dpkg as installed, so AppArmor's state is unknown")
    return status.get("apparmor") == "ii"


def test_CP_SYS_03_apparmor_confines_with_debians_profiles(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "SYS")
    assert _apparmor_installed(evidence), "apparmor is not installed: no profile confines anything"
    if is_container:
        not_applicable("AppArmor is the host kernel's: a container's profiles are not its own")
    enabled = evidence.run("cat /sys/module/apparmor/parameters/enabled")
    if enabled.rc != 0 or enabled.stdout.strip() not in ("Y", "N"):
        probe_failed("the kernel did not say whether AppArmor is enabled")
    assert enabled.stdout.strip() == "Y", "AppArmor is not enabled in the kernel"
    result = evidence.run("aa-status --json")
    try:
        status = json.loads(result.stdout)
        profiles: dict[str, str] = status["profiles"]
        processes: dict[str, list[dict[str, str]]] = status.get("processes", {})
    except (ValueError, KeyError, TypeError):
        probe_failed(f"aa-status --json gave no status (exit {result.rc})")
    problems = []
    if not profiles:
        problems.append("no AppArmor profile is loaded")
    lax = sorted(name for name, mode in profiles.items() if mode != "enforce")
    if lax:
        problems.append(f"profiles not enforced: {', '.join(lax)}")
    loose = sorted(
        f"{exe} (pid {p.get('pid')})"
        for exe, ps in processes.items()
        for p in ps
        if p.get("status") == "unconfined"
    )
    if loose:
        problems.append(f"running unconfined although a profile is defined: {', '.join(loose)}")
    assert not problems, "; ".join(problems)
    evidence.note(f"{len(profiles)} AppArmor profiles loaded, all in enforce mode")
