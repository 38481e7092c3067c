"""The nspawn lab: real Debian 12 hosts that Ansible and testinfra reach over SSH."""

from __future__ import annotations

import json
import subprocess

import pytest
import testinfra

from campus_provision.errors import LabError
from campus_provision.lab import control, nspawn
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import OUTSIDE_HOST
from campus_provision.lab.state import LabPaths
from tests.conftest import EXAMPLE
from tests.lab.conftest import VENV_BIN, ssh

pytestmark = pytest.mark.lab
Lab = tuple[LabPaths, UpResult]


def pcs(lab: Lab) -> list[str]:
    return [h.name for h in lab[1].plan.hosts if h.role == "workstation"]


def test_plan_has_one_pc_per_site_and_every_service_host(nspawn_lab: Lab) -> None:
    assert pcs(nspawn_lab) == ["sgm-a01", "gp-l1-01"]
    services = {h.name for h in nspawn_lab[1].plan.hosts if h.role == "service"}
    assert services == {
        "sgm-mirror",
        "sgm-log",
        "sgm-infra",
        "sgm-lic",
        "gp-mirror",
        "gp-log",
        "gp-infra",
    }


def test_ansible_ping_reaches_every_host(nspawn_lab: Lab) -> None:
    paths, result = nspawn_lab
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-i", str(paths.inventory / "hosts.yml"), "-m", "ping",
         "-o", "--forks", "10"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in result.plan.hosts:
        assert f"{host.name} | SUCCESS" in proc.stdout


def test_inventory_is_the_spec_rendered_with_lab_addresses(nspawn_lab: Lab) -> None:
    paths, _ = nspawn_lab
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(paths.inventory / "hosts.yml"), "--list"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    inv = json.loads(proc.stdout)
    hostvars = inv["_meta"]["hostvars"]
    assert hostvars["sgm-a01"]["ansible_host"] == "10.254.1.11"
    assert hostvars["gp-l1-01"]["ansible_host"] == "10.254.3.11"
    assert hostvars["sgm-a01"]["campus_site_services"][0]["ip"] == "10.254.2.10"
    assert hostvars["sgm-a01"]["campus_admin_network"] == "10.254.0.0/24"
    assert set(inv["site_sangam"]["children"]) >= {"room_sangam_analysis_a", "services_sangam"}


@pytest.mark.parametrize("name", ["sgm-a01", "gp-l1-01"])
def test_pc_runs_systemd_as_pid_1_and_sshd(nspawn_lab: Lab, name: str) -> None:
    paths, result = nspawn_lab
    host = result.plan.host(name)
    target = testinfra.get_host(f"ssh://root@{host.address.ip}", ssh_config=str(paths.ssh_config))
    assert target.process.get(pid=1).comm == "systemd"
    assert target.service("ssh").is_running
    assert target.check_output("hostname") == name
    assert target.check_output("systemctl is-system-running --wait || true") in (
        "running",
        "degraded",
    )


def test_unprovisioned_pc_reaches_the_outside_host(nspawn_lab: Lab) -> None:
    """Before provisioning, egress is open: what lets the egress check fail."""
    paths, result = nspawn_lab
    host = result.plan.host("sgm-a01")
    for port in (80, 443):
        out = ssh(
            paths, host, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{OUTSIDE_HOST}/{port}; head -1 <&3'"
        )
        assert out.stdout.strip() == f"outside:{port}", out.stderr
    ping = ssh(paths, host, f"ping -c 1 -W 2 {OUTSIDE_HOST}")
    assert ping.returncode == 0, ping.stdout


def test_up_again_keeps_the_running_hosts(nspawn_lab: Lab) -> None:
    paths, first = nspawn_lab
    again = control.up(EXAMPLE, paths, per_site=1)
    assert again.started == 0
    assert again.plan.fingerprint() == first.plan.fingerprint()
    assert [r.state for r in control.status(paths)] == ["up"] * len(first.plan.hosts)


def test_up_with_another_plan_is_refused(nspawn_lab: Lab) -> None:
    paths, _ = nspawn_lab
    with pytest.raises(LabError, match="already up with other hosts"):
        control.up(EXAMPLE, paths, per_site=2)


def test_lab_ssh_command_runs_a_command(nspawn_lab: Lab) -> None:
    paths, _ = nspawn_lab
    proc = subprocess.run(
        [str(VENV_BIN / "campus-provision"), "lab", "ssh", "gp-l1-01", "--prefix", paths.prefix,
         "--state-dir", str(paths.state_dir), "--", "cat", "/etc/hostname"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "gp-l1-01"


def test_readiness_timeout_names_the_host_and_its_console_log(nspawn_lab: Lab) -> None:
    paths, result = nspawn_lab
    host = result.plan.host("sgm-a01")
    with pytest.raises(LabError) as err:
        control.wait_ready(paths, host, timeout=0)
    console = paths.host_dir("sgm-a01") / "console.log"
    assert str(err.value) == f"sgm-a01: no SSH after 0 s; see {console}"
    assert console.stat().st_size > 0


def test_a_dead_host_is_named_and_up_restarts_it(nspawn_lab: Lab) -> None:
    paths, result = nspawn_lab
    host = result.plan.host("gp-l1-01")
    pid = nspawn.pid_of(paths, host)
    assert pid is not None
    nspawn.stop_host(paths, host)
    with pytest.raises(
        LabError, match=r"^gp-l1-01: the nspawn process exited; see .*console\.log$"
    ):
        control.wait_ready(paths, host, timeout=30)
    again = control.up(EXAMPLE, paths, per_site=1)
    assert again.started == 1
    assert ssh(paths, host, "hostname").stdout.strip() == "gp-l1-01"


@pytest.mark.parametrize(
    ("service_host", "port"), [("sgm-lic", 27000), ("sgm-lic", 27001), ("sgm-infra", 53)]
)
def test_services_no_role_runs_have_a_stand_in(
    nspawn_lab: Lab, service_host: str, port: int
) -> None:
    """The licence server and the DNS resolver are not ours to install: the lab stands in."""
    paths, result = nspawn_lab
    pc = result.plan.host("sgm-a01")
    ip = result.plan.host(service_host).address.ip
    out = ssh(paths, pc, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/{port}; head -1 <&3'")
    assert out.stdout.strip() == f"{service_host}:{port}", out.stderr


def run_cli(paths: LabPaths, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "campus-provision"), "lab", *args, "--prefix", paths.prefix,
         "--state-dir", str(paths.state_dir)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_lab_stop_and_start_keep_the_pcs_disk(nspawn_lab: Lab) -> None:
    paths, result = nspawn_lab
    host = result.plan.host("gp-l1-01")
    assert ssh(paths, host, "echo kept > /root/disk-marker").returncode == 0
    stopped = run_cli(paths, "stop", "gp-l1-01")
    assert stopped.returncode == 0, stopped.stderr
    assert "gp-l1-01: stopped" in stopped.stdout
    assert not control.ssh_ok(paths, host)
    assert {r.name: r.state for r in control.status(paths)}["gp-l1-01"] == "stopped"
    started = run_cli(paths, "start", "gp-l1-01")
    assert started.returncode == 0, started.stderr
    assert ssh(paths, host, "cat /root/disk-marker").stdout.strip() == "kept"


def test_lab_link_down_cuts_the_pc_off_and_up_restores_it(nspawn_lab: Lab) -> None:
    paths, result = nspawn_lab
    host = result.plan.host("sgm-a01")
    down = run_cli(paths, "link", "sgm-a01", "down")
    assert down.returncode == 0, down.stderr
    try:
        assert not control.ssh_ok(paths, host, connect=3)
    finally:
        up = run_cli(paths, "link", "sgm-a01", "up")
    assert up.returncode == 0, up.stderr
    assert control.ssh_ok(paths, host, connect=10)
    bad = run_cli(paths, "link", "sgm-a01", "sideways")
    assert bad.returncode != 0
    assert "'up' or 'down'" in bad.stdout + bad.stderr
