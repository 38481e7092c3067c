"""The checks' own logic, run through a real shell on this machine with stand-in tools.

The lab tests prove the checks on real PCs; these pin down what a check concludes from
what its commands print and return: a probe that could not run is an error (pytest's
``Failed``, which the results hook records as *error*), never a pass.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.checks import test_acc, test_log, test_net, test_pkg
from campus_provision.checks.conftest import Evidence
from campus_provision.shell import quote
from campus_provision.spec.accounts import PasswordPolicy

HOSTVARS: dict[str, Any] = {
    "campus_admin_network": "10.21.0.0/24",
    "campus_site_analysts": [{"username": "kim-analyst"}],
    "campus_admins": [{"username": "it-admin"}],
    "campus_control_families": {},
    "campus_site_services": [
        {"name": "mirror", "ip": "127.0.0.1", "ports": [{"port": 9, "proto": "tcp"}]},
        {"name": "dns", "ip": "127.0.0.1", "ports": [{"port": 53, "proto": "udp"}]},
    ],
}


@dataclass
class Ran:
    stdout: str
    stderr: str
    rc: int


class Shell:
    """testinfra's ``host.run`` on this machine, with ``tools`` first on the PATH."""

    def __init__(self, tools: Path) -> None:
        self.tools = tools

    def run(self, command: str) -> Ran:
        env = {"PATH": f"{self.tools}:/usr/bin:/bin:/usr/sbin:/sbin"}
        passed = ("TUNNEL", "ALIVE", "MODE", "PW", "TMOUT_DECL", "SUDOERS_D", "SHOWN", "ISSUE", "RETENTION",
                  "NOT_SHOWN", "IDLE_USEC")  # fmt: skip
        env |= {k: v for k, v in os.environ.items() if k in passed}
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env,
                           timeout=30, check=False)  # fmt: skip
        return Ran(p.stdout, p.stderr, p.returncode)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    return tmp_path


def tool(tools: Path, name: str, script: str) -> None:
    (tools / name).write_text("#!/bin/sh\n" + script)
    (tools / name).chmod(0o755)


SSHD = """
root=no; pw=no
case "$3" in *user=root,*addr=10.21.0.1*) root=yes ;; esac
case "$3" in *user=kim-analyst,*) pw=${PW:-no} ;; esac
printf 'port 22\\npermitrootlogin %s\\npasswordauthentication %s\\n' "$root" "$pw"
printf 'kbdinteractiveauthentication no\\npermitemptypasswords no\\n'
printf 'loglevel VERBOSE\\nmaxauthtries 3\\nmaxsessions 4\\ncompression no\\n'
printf 'tcpkeepalive no\\nallowtcpforwarding no\\nx11forwarding no\\n'
printf 'permittunnel %s\\nclientaliveinterval %s\\nclientalivecountmax 2\\n' \\
  "${TUNNEL:-no}" "${ALIVE:-300}"
printf 'banner /etc/issue.net\\n'
"""


# A login bash as the role leaves it: TMOUT read-only and exported (TMOUT_DECL changes it).
BASH = """echo 'login shell: ran'
echo "${TMOUT_DECL-declare -rx TMOUT=\\"900\\"}"
"""


# logind on the bus: KillUserProcesses, then StopIdleSessionUSec (IDLE_USEC changes it;
# "none" leaves it out, as a logind too old to know it would).
LOGIND = """echo 'b false'
case "${IDLE_USEC:-900000000}" in none) ;; *) echo "t ${IDLE_USEC:-900000000}" ;; esac
"""


@pytest.fixture(autouse=True)
def _sshd_config_mode(tools: Path) -> None:
    tool(tools, "stat", 'case "$*" in *sudoers.d*) echo "${SUDOERS_D:-750} root:root" ;;\n'
         '*cron*) /usr/bin/stat "$@" ;;\n'
         '*) echo "${MODE:-600} root" ;; esac\n')  # fmt: skip
    tool(tools, "bash", BASH)
    tool(tools, "busctl", LOGIND)


def test_acc_02_finds_a_match_block_that_lets_root_in_from_the_admin_network(tools: Path) -> None:
    tool(tools, "sshd", SSHD)
    with pytest.raises(AssertionError, match=r"PermitRootLogin is yes \(for root@10\.21\.0\.1\)"):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, HOSTVARS, Evidence(Shell(tools))
        )


def test_acc_02_passes_when_no_connection_gets_root_or_passwords(tools: Path) -> None:
    tool(tools, "sshd", SSHD.replace("root=yes", "root=no"))
    ev = Evidence(Shell(tools))
    test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(None, HOSTVARS, ev)
    headers = [line for line in ev.text().splitlines() if line.startswith("== ")]
    assert len(headers) == 6  # root, an analyst, an admin; two addresses each


def test_acc_02_is_an_error_when_sshd_cannot_print_its_settings(tools: Path) -> None:
    tool(tools, "sshd", 'echo "sshd: no hostkeys available" >&2; exit 255\n')
    with pytest.raises(pytest.fail.Exception, match="probe error: sshd -T -C user=root"):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, HOSTVARS, Evidence(Shell(tools))
        )


CAMPUS = "*tcp/127.0.0.1/9*|*udp/127.0.0.1/53*"  # the campus services answer


def test_net_01_is_an_error_when_timeout_cannot_run(tools: Path) -> None:
    tool(tools, "timeout", "exit 127\n")
    with pytest.raises(pytest.fail.Exception, match="reached none of the PC's campus TCP services"):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
        )


def test_net_01_fails_when_the_outside_answers_whatever_the_control_says(tools: Path) -> None:
    tool(tools, "timeout", 'case "$*" in *tcp/127.0.0.2/443*) exit 0 ;; esac; exit 124\n')
    tool(tools, "ping", "exit 1\n")
    with pytest.raises(
        AssertionError, match=r"127\.0\.0\.2 \(outside the campus\) is reachable: tcp/443\n"
    ):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
        )


def test_net_01_passes_only_with_its_positive_controls(tools: Path) -> None:
    # the campus service answers, the outside times out, ping answers loopback only
    tool(tools, "timeout", f'case "$*" in {CAMPUS}) exit 0 ;; esac; exit 124\n')
    tool(tools, "ping", 'case "$*" in *127.0.0.1*) exit 0 ;; esac; exit 1\n')
    test_net.test_CP_NET_01_outbound_denied_by_default(
        None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
    )
    tool(tools, "ping", "exit 2\n")  # ping broken: loopback fails too
    with pytest.raises(pytest.fail.Exception, match="ping did not answer on loopback"):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
        )


def test_net_01_fails_when_udp_gets_out(tools: Path) -> None:
    tool(tools, "timeout", f'case "$*" in {CAMPUS}|*udp/127.0.0.2/123*) exit 0 ;; esac; exit 142\n')
    tool(tools, "ping", 'case "$*" in *127.0.0.1*) exit 0 ;; esac; exit 1\n')
    with pytest.raises(AssertionError, match=r"reachable: udp/123\n"):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
        )


def test_net_01_udp_needs_a_campus_udp_service_that_answers(tools: Path) -> None:
    # TCP and ICMP prove their probes; UDP answers nowhere, the campus resolver included.
    tool(tools, "timeout", 'case "$*" in *tcp/127.0.0.1/9*) exit 0 ;; esac; exit 142\n')
    tool(tools, "ping", 'case "$*" in *127.0.0.1*) exit 0 ;; esac; exit 1\n')
    with pytest.raises(
        pytest.fail.Exception, match=r"UDP probe reached none .*\(127\.0\.0\.1 udp/53\)"
    ):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", []
        )
    tcp_only = {**HOSTVARS, "campus_site_services": HOSTVARS["campus_site_services"][:1]}
    with pytest.raises(pytest.fail.Exception, match="no campus UDP service to prove the probe"):
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, tcp_only, Evidence(Shell(tools)), "127.0.0.2", []
        )


def test_net_01_udp_probe_reads_an_answer_through_a_real_socket(tmp_path: Path) -> None:
    """The probe's own command, with the machine's bash: an echo is open, a port that is
    shut is refused (1), a listener that never answers times out (142)."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    shut = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with echo, mute, shut:
        for sock in (echo, mute, shut):
            sock.bind(("127.0.0.1", 0))
        ports = [sock.getsockname()[1] for sock in (echo, mute, shut)]
        shut.close()  # its port now refuses
        seen: list[bytes] = []

        def answer() -> None:
            data, peer = echo.recvfrom(512)
            seen.append(data)
            echo.sendto(data, peer)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        probes = [("udp", "127.0.0.1", p) for p in ports]
        # A folder of no stand-ins: the real bash and timeout (the fixture stubs bash).
        states = test_net._probe_states(Evidence(Shell(tmp_path / "none")), probes)
        thread.join(timeout=10)
    assert [states[p] for p in probes] == ["open", "closed", "closed"]
    # What the resolver got was a DNS query: id 0x1234, one question, the root, NS, IN.
    assert seen == [bytes.fromhex("1234010000010000000000000000020001")]


APT_CONFIG = 'cat <<\'EOF\'\nAPT "";\nAPT::Architecture "amd64";\n$EXTRA\nEOF\n'


@pytest.mark.parametrize(
    "setting",
    [
        'APT::Get::AllowUnauthenticated "true";',
        'Acquire::AllowInsecureRepositories "1";',
        'Acquire::AllowDowngradeToInsecureRepositories "yes";',
    ],
)
def test_pkg_01_names_apt_settings_that_accept_unsigned_archives(tools: Path, setting: str) -> None:
    tool(tools, "apt-config", APT_CONFIG.replace("$EXTRA", setting))
    found = test_pkg._insecure_apt_settings(Evidence(Shell(tools)))
    assert found == [f"apt is configured with {setting.rstrip(';')}"]


def test_pkg_01_is_an_error_when_apt_config_does_not_answer(tools: Path) -> None:
    tool(tools, "apt-config", "exit 100\n")
    with pytest.raises(pytest.fail.Exception, match="apt-config dump did not print"):
        test_pkg._insecure_apt_settings(Evidence(Shell(tools)))


def test_pkg_01_a_global_key_other_than_the_campus_key_fails(tmp_path: Path) -> None:
    shell = Shell(tmp_path)
    campus_key = tmp_path / "campus-archive.gpg"
    campus_key.write_bytes(b"campus key")
    trusted = tmp_path / "trusted.gpg.d"
    trusted.mkdir()
    (trusted / "campus-copy.gpg").write_bytes(b"campus key")  # the same bytes: no other key
    globs = f"{tmp_path}/trusted.gpg {trusted}/*"
    assert test_pkg._global_keys(Evidence(shell), [str(campus_key)], globs) == []
    (trusted / "debian-archive-bookworm-stable.asc").write_bytes(b"debian key")
    assert test_pkg._global_keys(Evidence(shell), [str(campus_key)], globs) == [
        f"apt trusts keys for every source: {trusted}/debian-archive-bookworm-stable.asc"
    ]
    with pytest.raises(pytest.fail.Exception, match="could not read the campus archive keyring"):
        test_pkg._global_keys(Evidence(shell), [str(tmp_path / "missing.gpg")], globs)


def test_net_01_tries_the_other_pcs_too(tools: Path) -> None:
    opens = f"{CAMPUS}|*tcp/127.0.0.3/22*"
    tool(tools, "timeout", f'case "$*" in {opens}) exit 0 ;; esac; exit 124\n')
    tool(tools, "ping", 'case "$*" in *127.0.0.1*) exit 0 ;; esac; exit 1\n')
    with pytest.raises(AssertionError) as failed:
        test_net.test_CP_NET_01_outbound_denied_by_default(
            None, HOSTVARS, Evidence(Shell(tools)), "127.0.0.2", [("gp-a01", "127.0.0.3")]
        )
    assert str(failed.value).splitlines()[0] == ("other PCs are reachable: gp-a01 127.0.0.3 tcp/22")


def test_log_01_finds_the_line_it_logged_on_the_log_host(tmp_path: Path) -> None:
    received = tmp_path / "campus"
    received.mkdir()
    pc_tools = tmp_path / "pc"
    pc_tools.mkdir()
    # The PC's logger "forwards" at once: the line lands in the log host's folder.
    tool(pc_tools, "logger", f'echo "$*" >> {received}/sgm-a01.log\n')
    log_host = Shell(tmp_path / "nothing")
    found = test_log._undelivered(
        Evidence(Shell(pc_tools)), ["10.21.10.30"], {"10.21.10.30": ("sgm-log", log_host)},
        log_dir=str(received), seconds=2,
    )  # fmt: skip
    assert found == []


def test_log_01_fails_when_the_line_never_arrives(tmp_path: Path) -> None:
    received = tmp_path / "campus"
    received.mkdir()
    pc_tools = tmp_path / "pc"
    pc_tools.mkdir()
    tool(pc_tools, "logger", "exit 0\n")  # logged here, lost on the way
    ev = Evidence(Shell(pc_tools))
    found = test_log._undelivered(
        ev, ["10.21.10.30"], {"10.21.10.30": ("sgm-log", Shell(tmp_path / "nothing"))},
        log_dir=str(received), seconds=2,
    )  # fmt: skip
    assert found == ["a line logged on this PC did not reach sgm-log (10.21.10.30) within 2 s"]
    assert any(line.startswith("[on sgm-log] $ test -d") for line in ev.lines)


def test_log_01_is_an_error_when_it_cannot_look_or_log(tmp_path: Path) -> None:
    pc_tools = tmp_path / "pc"
    pc_tools.mkdir()
    tool(pc_tools, "logger", "exit 0\n")
    hosts = {"10.21.10.30": ("sgm-log", Shell(tmp_path / "nothing"))}
    with pytest.raises(pytest.fail.Exception, match="on sgm-log could not be read"):
        test_log._undelivered(Evidence(Shell(pc_tools)), ["10.21.10.30"], hosts,
                              log_dir=str(tmp_path / "missing"), seconds=1)  # fmt: skip
    tool(pc_tools, "logger", "exit 1\n")
    with pytest.raises(pytest.fail.Exception, match="logger could not log a line"):
        test_log._undelivered(Evidence(Shell(pc_tools)), ["10.21.10.30"], hosts,
                              log_dir=str(tmp_path), seconds=1)  # fmt: skip
    with pytest.raises(pytest.fail.Exception, match=r"10\.21\.10\.31 is not in the inventory"):
        test_log._undelivered(Evidence(Shell(pc_tools)), ["10.21.10.31"], hosts)


def test_acc_01_is_an_error_when_the_accounts_cannot_be_listed(tools: Path) -> None:
    tool(tools, "getent", "exit 2\n")
    with pytest.raises(pytest.fail.Exception, match="getent passwd did not list the accounts"):
        test_acc.test_CP_ACC_01_one_account_per_person(None, HOSTVARS, Evidence(Shell(tools)))


def test_acc_03_is_an_error_when_sudoers_cannot_be_read(tools: Path) -> None:
    tool(tools, "getent", "echo 'sudo:x:27:it-admin'\n")
    tool(tools, "cat", "echo 'cat: /etc/sudoers: Permission denied' >&2; exit 1\n")
    tool(tools, "grep", "exit 2\n")
    with pytest.raises(pytest.fail.Exception, match="/etc/sudoers could not be read"):
        test_acc.test_CP_ACC_03_sudo_is_for_admins_only(None, HOSTVARS, Evidence(Shell(tools)))


def test_acc_03_still_names_a_grant_to_someone_else(tools: Path) -> None:
    tool(tools, "getent", "echo 'sudo:x:27:it-admin'\n")
    tool(tools, "cat", "exit 0\n")
    tool(
        tools,
        "grep",
        'case "$*" in *Defaults*) /bin/cat ;; *) echo "kim-analyst ALL=(ALL) ALL" ;; esac\n',
    )
    with pytest.raises(AssertionError, match="sudoers grants to kim-analyst"):
        test_acc.test_CP_ACC_03_sudo_is_for_admins_only(None, HOSTVARS, Evidence(Shell(tools)))


def test_acc_02_holds_sshd_to_the_baseline_too(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool(tools, "sshd", SSHD.replace("root=yes", "root=no"))
    monkeypatch.setenv("TUNNEL", "yes")
    monkeypatch.setenv("ALIVE", "600")
    monkeypatch.setenv("MODE", "644")
    with pytest.raises(AssertionError) as failed:
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, HOSTVARS, Evidence(Shell(tools))
        )
    said = str(failed.value).splitlines()[0]
    assert "PermitTunnel is yes, not no (for root@10.21.0.1" in said
    assert "an idle SSH session lasts 1200 s, more than 900" in said
    assert "/etc/ssh/sshd_config is 644 root, not 600 root" in said


def test_a_command_ssh_never_ran_is_an_error_naming_why() -> None:
    class Refused:
        def run(self, command: str) -> Ran:
            raise RuntimeError(
                "CommandResult(exit_status=255, _stderr=b'@ WARNING: REMOTE HOST IDENTIFICATION "
                "HAS CHANGED! @\\r\\nHost key verification failed.\\r\\n')"
            )

    ev = Evidence(Refused())
    with pytest.raises(pytest.fail.Exception, match="REMOTE HOST IDENTIFICATION HAS CHANGED"):
        ev.run("true")
    assert ev.lines[0].startswith("$ true\n")

    class Broken:
        def run(self, command: str) -> Ran:
            raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        Evidence(Broken()).run("true")


class SudoRefuses:
    """testinfra's ``host.run`` where sudo refuses the login (no password for it, no tty)."""

    SAID = (
        "sudo: a terminal is required to read the password; either use the -S option to read "
        "from standard input or configure an askpass helper\nsudo: a password is required\n"
    )

    def run(self, command: str) -> Ran:
        return Ran("", self.SAID, 1)


def test_a_refused_sudo_ends_a_check_as_an_error_with_its_words() -> None:
    ev = Evidence(SudoRefuses())
    with pytest.raises(pytest.fail.Exception, match="probe error: sudo refused to run the probe"):
        test_acc.test_CP_ACC_03_sudo_is_for_admins_only(ev.host, HOSTVARS, ev)
    assert "sudo: a password is required" in ev.text()


def test_a_command_that_fails_on_its_own_is_not_taken_for_sudo(tools: Path) -> None:
    # A probe's own failure ends as its check decides; only sudo's refusal is a probe error.
    ev = Evidence(Shell(tools))
    assert ev.run("echo 'sudo: is what this line starts with' >&2; exit 3").rc == 3


@pytest.mark.parametrize(
    ("declared", "said"),
    [
        ('declare -x TMOUT="900"', "TMOUT is not read-only: a user can unset it"),
        ('declare -rx TMOUT="3600"', "TMOUT is 3600 s, not 1..900 (the spec's idle time)"),
        ("bash: declare: TMOUT: not found", "idle login shells never end (no TMOUT"),
    ],
)
def test_acc_02_ends_idle_login_shells_with_a_read_only_tmout(
    tools: Path, monkeypatch: pytest.MonkeyPatch, declared: str, said: str
) -> None:
    tool(tools, "sshd", SSHD.replace("root=yes", "root=no"))
    monkeypatch.setenv("TMOUT_DECL", declared)
    with pytest.raises(AssertionError, match=re.escape(said)):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, {**HOSTVARS, "campus_idle_seconds": 900}, Evidence(Shell(tools))
        )


def test_acc_02_is_an_error_when_no_login_shell_runs(tools: Path) -> None:
    tool(tools, "sshd", SSHD.replace("root=yes", "root=no"))
    tool(tools, "bash", "exit 127\n")
    with pytest.raises(pytest.fail.Exception, match="probe error: a login bash did not run"):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, HOSTVARS, Evidence(Shell(tools))
        )


def test_acc_03_keeps_the_drop_ins_and_the_job_lists_to_root(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool(tools, "getent", "echo 'sudo:x:27:it-admin'\n")
    tool(tools, "cat", "exit 0\n")
    tool(tools, "grep", "exit 1\n")
    monkeypatch.setenv("SUDOERS_D", "755")
    with pytest.raises(AssertionError) as failed:
        test_acc.test_CP_ACC_03_sudo_is_for_admins_only(None, HOSTVARS, Evidence(Shell(tools)))
    said = str(failed.value).splitlines()[0]
    assert "/etc/sudoers.d is 755 root:root, not 750 root:root" in said
    if not Path("/etc/cron.allow").exists():  # this machine's own, read by the real shell
        assert "/etc/cron.allow is missing: anyone may schedule jobs" in said


BANNER = "캠퍼스 분석용 PC: 사용은 기록됩니다.\nUse is monitored; a \\ stays one backslash."
# cat as a provisioned PC answers it: the banner in each file, its backslashes doubled in
# /etc/issue (getty's escapes); NOT_SHOWN names a file that is missing.
CAT = """case "$*" in
  */etc/hostname) exit 0 ;;
  *"${NOT_SHOWN:-/nowhere}") exit 1 ;;
  */etc/issue) printf '%s\\n' "$ISSUE" ;;
  *) printf '%s\\n' "$SHOWN" ;;
esac
"""


def _banner_host(tools: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    tool(tools, "sshd", SSHD.replace("root=yes", "root=no"))
    tool(tools, "cat", CAT)
    monkeypatch.setenv("SHOWN", BANNER)
    monkeypatch.setenv("ISSUE", BANNER.replace("\\", "\\\\"))
    return {**HOSTVARS, "campus_banner": BANNER + "\n"}


def test_acc_02_passes_when_every_login_shows_the_specs_banner(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostvars = _banner_host(tools, monkeypatch)
    ev = Evidence(Shell(tools))
    test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(None, hostvars, ev)
    assert "사용은 기록됩니다" in ev.text()


def test_acc_02_names_a_place_without_the_banner(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostvars = _banner_host(tools, monkeypatch)
    monkeypatch.setenv("NOT_SHOWN", "/etc/motd")
    monkeypatch.setenv("ISSUE", BANNER)  # the backslash not doubled: getty would eat it
    with pytest.raises(AssertionError) as failed:
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, hostvars, Evidence(Shell(tools))
        )
    said = str(failed.value).splitlines()[0]
    assert "/etc/motd does not show the spec's banner" in said
    assert "/etc/issue does not show the spec's banner" in said
    assert "/etc/issue.net" not in said


def test_acc_02_is_an_error_when_cat_cannot_run(
    tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostvars = _banner_host(tools, monkeypatch)
    tool(tools, "cat", "exit 126\n")
    with pytest.raises(
        pytest.fail.Exception, match="probe error: cat could not read /etc/hostname"
    ):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, hostvars, Evidence(Shell(tools))
        )


# What a PC as campus_audit leaves it answers (RETENTION changes one answer).
RETENTION_TOOLS = {
    "dpkg-query": 'echo "dpkg ii "; [ "$RETENTION" = no-logrotate ] || echo "logrotate ii "\n',
    "systemctl": '[ "$RETENTION" = timer-off ] && echo UnitFileState=disabled && '
    "echo ActiveState=inactive && exit 0\necho UnitFileState=enabled; echo ActiveState=active\n",
    "systemd-analyze": '[ "$RETENTION" = volatile ] && echo "Storage=volatile" && exit 0\n'
    'echo "# /etc/systemd/journald.conf"; echo "Storage=auto"; echo "Storage=persistent"\n'
    '[ "$RETENTION" = no-cap ] || echo "SystemMaxUse=500M"\n',
}


@pytest.mark.parametrize(
    ("retention", "said"),
    [
        ("", None),
        ("no-logrotate", "logrotate is not installed: the log files never rotate"),
        ("timer-off", "logrotate.timer is disabled and inactive, not enabled and active"),
        ("volatile", "the journal is not kept on disk (Storage=volatile)"),
        ("no-cap", "the journal has no size cap (SystemMaxUse)"),
    ],
)
def test_log_01_holds_rotation_and_the_journal(
    tools: Path, monkeypatch: pytest.MonkeyPatch, retention: str, said: str | None
) -> None:
    for name, script in RETENTION_TOOLS.items():
        tool(tools, name, script)
    monkeypatch.setenv("RETENTION", retention)
    problems = test_log._retention_problems(Evidence(Shell(tools)))
    if said is None:
        # The real shell's `test -d /var/log/journal` decides the last line on this machine.
        assert [p for p in problems if "/var/log/journal" not in p] == []
    else:
        assert said in problems


def test_log_01_is_an_error_when_dpkg_query_cannot_answer(tools: Path) -> None:
    tool(tools, "dpkg-query", "echo 'dpkg-query: error: cannot access archive' >&2; exit 2\n")
    with pytest.raises(pytest.fail.Exception, match="dpkg-query did not list dpkg"):
        test_log._retention_problems(Evidence(Shell(tools)))


@pytest.mark.parametrize(
    ("usec", "why"),
    [
        ("0", "logind ends idle sessions after never s, not 1..900"),
        ("3600000000", "logind ends idle sessions after 3600 s, not 1..900"),
        ("none", "logind cannot end idle sessions"),
    ],
)
def test_acc_02_wants_logind_to_end_idle_sessions(
    tools: Path, monkeypatch: pytest.MonkeyPatch, usec: str, why: str
) -> None:
    tool(tools, "sshd", SSHD)
    monkeypatch.setenv("IDLE_USEC", usec)
    hostvars = {**HOSTVARS, "campus_banner": ""}
    with pytest.raises(AssertionError, match=re.escape(why)):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, hostvars, Evidence(Shell(tools))
        )


def test_acc_02_is_an_error_when_logind_does_not_answer(tools: Path) -> None:
    tool(tools, "sshd", SSHD)
    tool(tools, "busctl", 'echo "Failed to connect to bus: No such file or directory"; exit 1\n')
    hostvars = {**HOSTVARS, "campus_banner": ""}
    with pytest.raises(pytest.fail.Exception, match=r"logind did not answer on the bus"):
        test_acc.test_CP_ACC_02_no_root_or_password_ssh_login(
            None, hostvars, Evidence(Shell(tools))
        )


def test_acc_03_keeps_crons_table_and_job_folders_to_root(
    tools: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path_factory.mktemp("etc")
    (etc / "crontab").write_text("# m h dom mon dow user command\n")
    (etc / "crontab").chmod(0o644)
    (etc / "cron.d").mkdir()
    (etc / "cron.d").chmod(0o755)
    (etc / "cron.daily").mkdir()
    (etc / "cron.daily").chmod(0o700)
    paths = tuple(str(etc / n) for n in ("crontab", "cron.d", "cron.daily", "cron.weekly"))
    monkeypatch.setattr(test_acc, "CRON_PATHS", paths)
    tool(tools, "getent", "echo 'sudo:x:27:it-admin'\n")
    tool(tools, "cat", "exit 0\n")
    tool(tools, "grep", "exit 1\n")
    with pytest.raises(AssertionError) as failed:
        test_acc.test_CP_ACC_03_sudo_is_for_admins_only(None, HOSTVARS, Evidence(Shell(tools)))
    said = str(failed.value).splitlines()[0]
    assert f"{etc}/crontab is 644: others may read" in said
    assert f"{etc}/cron.d is 755: others may read" in said
    assert "cron.daily" not in said and "cron.weekly" not in said  # 700, and absent


# CP-ACC-04: a PC as campus_accounts leaves it. The files sed reads are these (by their
# base name; any other is missing), pwscore judges by the spec's defaults (12 characters,
# 3 classes, no dictionary word), getent shadow knows root, the analyst and the admin.
PW_FILES = {
    "pwquality.conf": "minlen = 12\nminclass = 3\ndictcheck = 1\nenforcing = 1\nenforce_for_root\n",
    "faillock.conf": "deny = 5\nfail_interval = 900\nunlock_time = 900\n",
    "common-auth": "auth\trequisite\tpam_faillock.so preauth\n"
    "auth\t[success=2 default=ignore]\tpam_unix.so nullok try_first_pass\n"
    "auth\t[default=die]\tpam_faillock.so authfail\n"
    "auth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n",
    "common-account": "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n"
    "account\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n"
    "account\trequired\tpam_faillock.so\n",
    "common-password": "password\trequisite\t\t\tpam_pwquality.so retry=3\n"
    "password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n"
    "password\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n",
    "login.defs": "PASS_MAX_DAYS\t180\nPASS_MIN_DAYS\t1\nPASS_WARN_AGE\t14\n"
    "ENCRYPT_METHOD\tYESCRYPT\nYESCRYPT_COST_FACTOR\t5\n",
}
PWSCORE = """read -r pw
classes=0
case $pw in *[a-z]*) classes=$((classes + 1)) ;; esac
case $pw in *[A-Z]*) classes=$((classes + 1)) ;; esac
case $pw in *[0-9]*) classes=$((classes + 1)) ;; esac
case $pw in *[!a-zA-Z0-9]*) classes=$((classes + 1)) ;; esac
refuse() { printf 'Password quality check failed:\\n %s\\n' "$1" >&2; exit 1; }
[ ${#pw} -lt 12 ] && refuse "The password is shorter than 12 characters"
[ $classes -lt 3 ] && refuse "The password contains less than 3 character classes"
case $pw in *establishment*) refuse "The password fails the dictionary check - it is based on a dictionary word" ;; esac
echo 50
"""
# The hashes are there to prove they never reach the evidence.
SHADOW = {
    "root": "root:$y$j9T$rootsecret:20000:0:99999:7:::",
    "kim-analyst": "kim-analyst:$y$j9T$kimsecret:20000:1:180:14:::",
    "it-admin": "it-admin:!:20000:0::7:::",
}


def _password_pc(tools: Path, files: dict[str, str] | None = None,
                 shadow: dict[str, str] | None = None, pwscore: str = PWSCORE,
                 packages: str = "dpkg libpam-pwquality") -> None:  # fmt: skip
    fixtures = tools / "fixtures"
    fixtures.mkdir(exist_ok=True)
    for name, text in (PW_FILES if files is None else files).items():
        (fixtures / name).write_text(text)
    tool(tools, "sed", f'for f; do :; done\nif [ -f "{fixtures}/${{f##*/}}" ]; then '
         f'/bin/cat "{fixtures}/${{f##*/}}"; else echo "sed: can\'t read $f: No such file '
         'or directory" >&2; exit 2; fi\n')  # fmt: skip
    tool(tools, "pwscore", pwscore)
    rows = "".join(f"echo 'pkg {p} ii '; " for p in packages.split())
    tool(tools, "dpkg-query", f"{rows}\n")
    entries = SHADOW if shadow is None else shadow
    cases = "".join(f"    {name}) echo {quote(line)} ;;\n" for name, line in entries.items())
    tool(
        tools,
        "getent",
        f"shift; rc=0\nfor u; do case $u in\n{cases}    *) rc=2 ;;\nesac; done\nexit $rc\n",
    )


def _acc_04(tools: Path, hostvars: dict[str, Any] = HOSTVARS) -> Evidence:
    ev = Evidence(Shell(tools))
    test_acc.test_CP_ACC_04_console_passwords_quality_lockout_aging_hashing(None, hostvars, ev)
    return ev


def test_acc_04_passes_with_the_policy_in_place_and_keeps_hashes_out(tools: Path) -> None:
    _password_pc(tools)
    said = _acc_04(tools).text()
    assert "== pwscore minimum exit 0" in said
    assert "The password fails the dictionary check" in said
    assert "kim-analyst:20000:1:180:14" in said
    assert "secret" not in said and "$y$" not in said


def test_acc_04_fails_when_pwscore_lets_a_weak_password_through(tools: Path) -> None:
    _password_pc(tools, pwscore="cat >/dev/null; echo 12\n")
    with pytest.raises(AssertionError) as failed:
        _acc_04(tools)
    said = str(failed.value).splitlines()[0]
    assert "pwscore lets through a 11-character password (the spec's minimum is 12)" in said
    assert "pwscore lets through a password of 2 classes (the spec asks for 3)" in said
    assert "pwscore lets through a password built on a dictionary word" in said


def test_acc_04_is_an_error_when_pwscore_cannot_run(tools: Path) -> None:
    _password_pc(tools, pwscore="echo 'sh: 1: pwscore: not found' >&2; exit 127\n")
    with pytest.raises(
        pytest.fail.Exception, match=r"probe error: pwscore did not judge .*exit 127"
    ):
        _acc_04(tools)


def test_acc_04_names_each_analyst_whose_password_ages_otherwise(tools: Path) -> None:
    shadow = {**SHADOW, "kim-analyst": "kim-analyst:!:20000:0:99999:7:::",
              "it-admin": "it-admin:!:20000:1:180:14:::"}  # fmt: skip
    _password_pc(tools, shadow=shadow)
    with pytest.raises(AssertionError) as failed:
        _acc_04(tools)
    said = str(failed.value).splitlines()[0]
    assert "passwords age min 0, max 99999, warn 7 days, not 1, 180, 14: kim-analyst" in said
    assert "admins' locked passwords expire, and their key logins with them: it-admin" in said


def test_acc_04_a_bare_pc_fails_and_says_why(tools: Path) -> None:
    # Nothing installed, not even pwscore: the package's absence is the finding, not an error.
    bare = {
        "faillock.conf": "",
        "common-auth": PW_FILES["common-auth"].split("\n", 1)[1].replace("authfail", "x"),
        "common-account": "account\t[success=1 default=ignore]\tpam_unix.so\n",
        "common-password": "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n",
        "login.defs": "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nENCRYPT_METHOD SHA512\n",
    }
    _password_pc(tools, files=bare, shadow={"root": SHADOW["root"]}, packages="dpkg",
                 pwscore="exit 127\n")  # fmt: skip
    with pytest.raises(AssertionError) as failed:
        _acc_04(tools)
    said = str(failed.value).splitlines()[0]
    for finding in (
        "libpam-pwquality is not installed",
        "common-auth does not refuse a locked account",
        "common-auth does not count failed logins",
        "common-account has no pam_faillock",
        "common-password does not check a new password's quality first",
        "no enforce_for_root",
        "an account locks after 3 failed logins, not 5",
        "PASS_MAX_DAYS 99999, not 180",
        "ENCRYPT_METHOD SHA512, not YESCRYPT",
        "analysts without an account to age: kim-analyst",
    ):
        assert finding in said, finding


@pytest.mark.parametrize(
    ("name", "old", "new", "finding"),
    [
        ("common-auth", "auth\trequisite\tpam_faillock.so preauth\n", "",
         "common-auth does not refuse a locked account before its password is tried"),
        ("common-auth", "pam_faillock.so authfail", "pam_faillock.so authsucc",
         "common-auth does not count failed logins"),
        ("common-password", "requisite\t\t\tpam_pwquality", "optional\tpam_pwquality",
         "common-password does not check a new password's quality first"),
        ("common-password", "try_first_pass yescrypt", "try_first_pass sha512",
         "common-password does not hash new passwords with yescrypt (obscure use_authtok "
         "try_first_pass sha512)"),
        ("pwquality.conf", "enforce_for_root\n", "", "no enforce_for_root"),
        ("pwquality.conf", "enforcing = 1", "enforcing = 0", "pam_pwquality only warns"),
        ("faillock.conf", "unlock_time = 900", "unlock_time = never",
         "a locked account opens again after 0 s, not 900 s"),
        ("common-auth", "pam_faillock.so authfail", "pam_faillock.so authfail deny=10",
         "an account locks after 10 failed logins, not 5"),
        ("login.defs", "YESCRYPT_COST_FACTOR\t5", "YESCRYPT_COST_FACTOR\t3",
         "YESCRYPT_COST_FACTOR 3, not at least 5"),
    ],
)  # fmt: skip
def test_acc_04_names_what_is_off(tools: Path, name: str, old: str, new: str, finding: str) -> None:
    assert old in PW_FILES[name]
    _password_pc(tools, files={**PW_FILES, name: PW_FILES[name].replace(old, new)})
    with pytest.raises(AssertionError, match=re.escape(finding)):
        _acc_04(tools)


def test_acc_04_holds_the_pc_to_the_specs_policy(tools: Path) -> None:
    # The PC's policy is the default one; this spec asks for 14 characters.
    _password_pc(tools)
    policy = {**PasswordPolicy().model_dump(), "min_length": 14}
    with pytest.raises(AssertionError) as failed:
        _acc_04(tools, {**HOSTVARS, "campus_password_policy": policy})
    said = str(failed.value).splitlines()[0]
    assert "pwscore lets through a 13-character password (the spec's minimum is 14)" in said


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ({"packages": "libpam-pwquality"}, "dpkg-query did not list dpkg"),
        ({"shadow": {"kim-analyst": SHADOW["kim-analyst"]}}, "getent shadow did not list root"),
        ({"pwscore": "echo 'Error: cannot parse the configuration' >&2; exit 3\n"},
         "pwscore did not judge"),
    ],
)  # fmt: skip
def test_acc_04_is_an_error_when_a_probe_says_nothing(
    tools: Path, broken: dict[str, Any], said: str
) -> None:
    _password_pc(tools, **broken)
    with pytest.raises(pytest.fail.Exception, match=f"probe error: {said}"):
        _acc_04(tools)
