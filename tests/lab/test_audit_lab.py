"""campus_audit on real lab hosts, with the campus log host and NTP server it talks to.

One lab for the whole module: nspawn PCs (Sangam, 2 PCs) for LOG-01 and TIME-01, where
AUD-01 is not applicable (auditd needs a kernel of its own); AUD-01 itself is proven on the
QEMU PC of test_kernel_vm_lab.py. The playbooks/ entries for the log and NTP hosts are not
wired in yet, so the tests write their own small playbook with the same roles in the same
order.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import Driver
from campus_provision.lab.state import LabPaths, read_record
from campus_provision.provision.runner import RunResult, run_playbook
from campus_provision.verify.runner import Target, run_checks
from tests.lab.conftest import lab_paths, require_lab, small_spec, ssh

pytestmark = pytest.mark.lab
PCS = ("sgm-a01", "sgm-a02")
LOG_HOST, NTP_HOST = "sgm-log", "sgm-infra"
LOG_DIR = "/var/log/campus"
WAIT_SECONDS = 30.0
PLAYBOOK = """---
- name: Campus log hosts
  hosts: log_hosts
  gather_facts: false
  roles:
    - role: campus_apt_client
    - role: campus_log_server

- name: Campus NTP servers
  hosts: ntp_servers
  gather_facts: false
  roles:
    - role: campus_apt_client
    - role: campus_time_server

- name: Campus workstations
  hosts: workstations
  gather_facts: false
  roles:
    - role: campus_apt_client
    - role: campus_audit
"""


@dataclass(frozen=True)
class Lab:
    paths: LabPaths
    result: UpResult
    extra: dict[str, str]  # campus_bundle_dir, campus_signing_pubkey
    playbook: Path

    def host(self, name: str) -> control.LabHost:
        return self.result.plan.host(name)

    def ip(self, name: str) -> str:
        return str(self.host(name).address.ip)

    def run(self, command: str, on: str, timeout: float = 120) -> str:
        out = ssh(self.paths, self.host(on), command, timeout=timeout)
        assert out.returncode == 0, f"{on}: {command}: {out.stdout}{out.stderr}"
        return out.stdout


def _lab(prefix: str, tmp: Path, per_site: int, driver: Driver) -> Iterator[Lab]:
    require_lab()
    paths = lab_paths(prefix)
    control.down(paths)
    spec = small_spec(tmp)
    playbook = tmp / "audit.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    started = time.monotonic()
    result = control.up(spec, paths, per_site=per_site, driver=driver, sites=["sangam"],
                        mirror=True, progress=print)  # fmt: skip
    print(f"lab {prefix} up in {time.monotonic() - started:.0f} s")
    record = read_record(paths) or {}
    extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"]}
    try:
        yield Lab(paths, result, extra, playbook)
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


@pytest.fixture(scope="module")
def audit_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Sangam with 2 nspawn PCs, its log host and NTP server, the bundle on its mirror."""
    yield from _lab("cpo", tmp_path_factory.mktemp("cpo"), per_site=2, driver="nspawn")


def provision(
    lab: Lab, hosts: tuple[str, ...], tmp: Path, *, check: bool = False, tags: str | None = None
) -> RunResult:
    started = time.monotonic()
    result = run_playbook(
        lab.playbook,
        lab.paths.inventory / "hosts.yml",
        tmp / f"run-{len(list(tmp.glob('run-*')))}",
        limit=",".join(hosts),
        tags=tags,
        check=check,
        extra_vars=lab.extra,
    )
    print(f"{'check' if check else 'run'} on {','.join(hosts)}: {time.monotonic() - started:.0f} s")
    bad = [(h.host, h.failed_task, h.reason) for h in result.hosts if h.failed or h.unreachable]
    assert result.ok(), bad or result.log.read_text()[-3000:]
    assert {h.host for h in result.hosts} == set(hosts)
    return result


def statuses(lab: Lab, hosts: tuple[str, ...], controls: tuple[str, ...], tmp: Path) -> dict[tuple[str, str], str]:  # fmt: skip
    target = Target(inventory=lab.paths.inventory / "hosts.yml", campus=lab.result.plan.campus,
                    spec_sha256="0" * 64, limit=",".join(hosts), controls=controls,
                    workers=min(2, len(hosts)))  # fmt: skip
    junit = tmp / f"junit-{len(list(tmp.glob('junit-*')))}.xml"
    return {(r.host, r.control): r.status for r in run_checks(target, junit).results}


def wait_for(probe: Callable[[], bool], seconds: float = WAIT_SECONDS) -> float:
    """Poll ``probe`` until it holds; the seconds it took, or fail after ``seconds``."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > seconds:
            pytest.fail(f"still not there after {seconds:.0f} s")
        time.sleep(1)
    return time.monotonic() - started


def arrived(lab: Lab, pc: str, token: str) -> Callable[[], bool]:
    def probe() -> bool:
        out = ssh(lab.paths, lab.host(LOG_HOST), f"grep -c -- {token} {LOG_DIR}/{pc}.log")
        return out.stdout.strip() not in ("", "0")

    return probe


def test_log_and_time_fail_before_and_pass_after_provisioning(audit_lab: Lab, tmp_path: Path) -> None:  # fmt: skip
    lab = audit_lab
    controls = ("CP-AUD-01", "CP-LOG-01", "CP-TIME-01")
    before = statuses(lab, PCS, controls, tmp_path)
    assert {k: v for k, v in before.items() if k[1] != "CP-AUD-01"} == {
        (pc, c): "fail" for pc in PCS for c in controls[1:]
    }, before

    hosts = (*PCS, LOG_HOST, NTP_HOST)
    first = provision(lab, hosts, tmp_path)
    assert all(h.changed > 0 for h in first.hosts), first.hosts

    after = statuses(lab, PCS, controls, tmp_path)
    # TIME-01's configuration passes; that the clock follows it needs the PC's own clock.
    assert after == {
        **{(pc, c): "not_applicable" for pc in PCS for c in ("CP-AUD-01", "CP-TIME-01")},
        **{(pc, "CP-LOG-01"): "pass" for pc in PCS},
    }, after
    # The run itself says why auditd is left alone on a container.
    assert "not applicable: sgm-a01 is a container" in first.log.read_text()
    for pc in PCS:  # and auditd.service is skipped there by its condition, not failed
        unit = lab.run("systemctl show -p ActiveState -p ConditionResult auditd.service", on=pc)
        assert sorted(unit.split()) == ["ActiveState=inactive", "ConditionResult=no"], unit

    second = provision(lab, hosts, tmp_path)
    assert {h.host: h.changed for h in second.hosts} == dict.fromkeys(hosts, 0)
    check = provision(lab, hosts, tmp_path, check=True)
    assert {h.host: h.changed for h in check.hosts} == dict.fromkeys(hosts, 0)


def test_a_line_logged_on_a_pc_reaches_the_log_host(audit_lab: Lab) -> None:
    lab = audit_lab
    for pc in PCS:
        token = f"campus-test-{secrets.token_hex(8)}"
        lab.run(f"logger -t campus-test {token}", on=pc)
        took = wait_for(arrived(lab, pc, token))
        print(f"{pc} -> {LOG_HOST}: {took:.1f} s")
    listing = lab.run(f"stat -c '%a %U:%G %n' {LOG_DIR} {LOG_DIR}/*.log", on=LOG_HOST)
    assert listing.split("\n")[0] == f"750 root:adm {LOG_DIR}", listing
    # Remote lines go to the per-host files only, not into the log host's own syslog.
    assert lab.run("grep -c campus-test- /var/log/syslog || true", on=LOG_HOST).strip() == "0"


def test_lines_logged_while_the_log_host_is_down_arrive_later(
    audit_lab: Lab, tmp_path: Path
) -> None:
    lab = audit_lab
    pc = PCS[0]
    lab.run("systemctl stop rsyslog.service syslog.socket", on=LOG_HOST)
    token = f"campus-outage-{secrets.token_hex(8)}"
    try:
        lab.run(f"logger -t campus-test {token}", on=pc)
        time.sleep(3)
        assert not arrived(lab, pc, token)()
        # The configuration is right, the delivery is not: LOG-01 looks, and fails.
        assert statuses(lab, (pc,), ("CP-LOG-01",), tmp_path) == {(pc, "CP-LOG-01"): "fail"}
    finally:
        lab.run("systemctl start rsyslog.service", on=LOG_HOST)
    took = wait_for(arrived(lab, pc, token))
    print(f"{pc} -> {LOG_HOST} after the outage: {took:.1f} s")


def test_pcs_follow_the_campus_ntp_server(audit_lab: Lab) -> None:
    lab = audit_lab
    server = lab.ip(NTP_HOST)
    for pc in PCS:
        config = lab.run(
            "grep -E '^(server|pool|sourcedir|confdir)' /etc/chrony/chrony.conf", on=pc
        )
        assert config.splitlines() == [f"server {server} iburst"]

        def selected(pc: str = pc) -> bool:
            sources = ssh(lab.paths, lab.host(pc), "chronyc -n sources").stdout
            return f"^* {server}" in sources

        wait_for(selected)
    clients = lab.run("chronyc -n clients", on=NTP_HOST)
    assert all(lab.ip(pc) in clients for pc in PCS), clients
