"""The example campus's lab slice, locked down end to end with the commands IT staff run.

One lab (prefix ``cpx``) from the example spec with small software profiles (R and pandas:
the lockdown is the subject here; the full analyst profile is what ``make demo`` installs):
one nspawn PC per site, both sites' mirrors, log hosts, NTP/DNS hosts and the licence server.
The tests run in file order, like an operator would:

1. ``verify`` on the bare PCs fails, and says why (the checks can fail), LOG-01, TIME-01,
   ACC-04 (console passwords), AUD-02 and SYS-01 to SYS-03 included;
2. ``provision --lab`` (site.yml: mirrors, services, workstations) succeeds on every host,
   and says why auditd is left alone on a container;
3. ``verify`` passes every control a container can prove; those that need a kernel of the
   PC's own (USB-01, AUD-01, VOL-*, TIME-01's clock, SYS-02, SYS-03) are "not
   applicable", never "pass"; the evidence is signed and ``report verify`` accepts it;
4. a second ``provision`` changes nothing on any host, nor does a ``--check`` run of
   the audit role (auditd, log forwarding, time) on the PCs; a program and sshd_config
   changed after the baseline are named by AUD-02, and pass again once put back;
5. a probe that cannot run is an error; a Match block that lets root in fails ACC-02; with
   the admin's sudo refused, every control on the PC is an error that says so;
6. a line logged on each PC reaches its site's log host, one logged while the log host is
   down arrives later (and LOG-01 fails meanwhile); the PCs follow their site's NTP server;
7. no secret of the lab's keystore (its passphrase, the evidence-signing key, the archive
   key) is in anything the runs left behind: run directories, evidence, inventories, the
   commands' output, the logs and files the runs wrote on the PCs and the mirrors, and the
   ``ps`` snapshots taken every half second from before the bundle was built to the end.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import ADMIN_SUBNET
from campus_provision.lab.state import LabPaths
from campus_provision.verify.results import RunResults
from tests.lab.conftest import VENV_BIN, lab_paths, require_lab, small_spec
from tests.leaks import PsSampler, keys_dir_secrets, scan_files

pytestmark = pytest.mark.lab
PCS = ("sgm-a01", "gp-l1-01")
# A container shares the host's kernel: module loading, auditd and dm-crypt are not its own,
# and nor is its clock (TIME-01 proves the configuration, then says so).
KERNEL_CONTROLS = {"CP-USB-01", "CP-AUD-01", "CP-VOL-01", "CP-VOL-02", "CP-VOL-03", "CP-TIME-01",
                   "CP-SYS-02", "CP-SYS-03"}  # fmt: skip
PROVISION_TIMEOUT = 2400
# What the runs write on a host, under its overlay's upper directory (the rest is the image).
HOST_WRITES = ("etc", "root", "home", "tmp", "var/log", "var/tmp", "var/lib/campus")
# Each PC's site log host and NTP server.
LOG_HOSTS = {"sgm-a01": "sgm-log", "gp-l1-01": "gp-log"}
NTP_HOSTS = {"sgm-a01": "sgm-infra", "gp-l1-01": "gp-infra"}
LOG_DIR = "/var/log/campus"
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Lab:
    paths: LabPaths
    result: UpResult
    work: Path
    ps: PsSampler
    spec: Path

    def cli(self, *args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        keys = self.paths.state_dir / "keys"
        env = {**os.environ, "COLUMNS": "200", "CAMPUS_KEYS_DIR": str(keys)}
        run = subprocess.run(
            [str(VENV_BIN / "campus-provision"), *map(str, args)],
            capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=self.work,
        )  # fmt: skip
        # Kept for the secrets scan: what the operator's terminal showed.
        output = self.work / "output"
        output.mkdir(exist_ok=True)
        (output / f"{len(list(output.iterdir())):02d}-{args[0]}.txt").write_text(
            f"$ campus-provision {' '.join(map(str, args))}\n{run.stdout}{run.stderr}",
            encoding="utf-8",
        )
        return run

    def ssh(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        return control.run_on(self.paths, self.result.plan.host(name), command)

    def run(self, command: str, on: str) -> str:
        out = self.ssh(on, command)
        assert out.returncode == 0, f"{on}: {command}: {out.stdout}{out.stderr}"
        return out.stdout

    def verify(self, out: Path) -> tuple[subprocess.CompletedProcess[str], RunResults]:
        keys = self.paths.state_dir / "keys"
        run = self.cli("verify", self.spec, "--lab", "--prefix", self.paths.prefix, "--out", out,
                       "--passphrase-file", keys / "passphrase")  # fmt: skip
        results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
        return run, results

    def verify_on(
        self, out: Path, pc: str, controls: list[str]
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, tuple[str, str]]]:
        """``verify`` of ``controls`` on one PC: the run, and each control's status and why."""
        keys = self.paths.state_dir / "keys"
        run = self.cli("verify", self.spec, "--lab", "--prefix", self.paths.prefix, "--out", out,
                       "--limit", pc, "--controls", ",".join(controls),
                       "--passphrase-file", keys / "passphrase")  # fmt: skip
        results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
        return run, {r.control: (r.status, r.message) for r in results.results}

    def provision(
        self, run_dir: Path, *options: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        run = self.cli("provision", self.spec, "--lab", "--prefix", self.paths.prefix,
                       "--run-dir", run_dir, *options, timeout=PROVISION_TIMEOUT)  # fmt: skip
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
        return run, summary


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    paths = lab_paths("cpx")
    control.down(paths)
    sampler = PsSampler().start()  # from before the bundle is built (gpg, the archive key)
    try:
        spec = small_spec(tmp_path_factory.mktemp("spec"))
        result = control.up(spec, paths, per_site=1, mirror=True, progress=print)
        yield Lab(paths, result, tmp_path_factory.mktemp("campus"), sampler, spec)
    finally:
        sampler.stop()
        control.down(paths)
        assert control.leftovers(paths) == []


def by_control(results: RunResults) -> dict[tuple[str, str], str]:
    return {(r.host, r.control): r.status for r in results.results}


def test_bare_pcs_fail_verify_and_say_why(lab: Lab) -> None:
    run, results = lab.verify(lab.work / "before")
    assert run.returncode == 1, run.stdout + run.stderr
    assert set(results.hosts) == set(PCS)
    status = by_control(results)
    for pc in PCS:
        for control_id in ("CP-NET-01", "CP-PKG-01", "CP-ACC-02", "CP-ACC-04", "CP-LOG-01",
                           "CP-TIME-01", "CP-SYS-01", "CP-SYS-02", "CP-SYS-03",
                           "CP-AUD-02"):  # fmt: skip
            assert status[(pc, control_id)] == "fail", (pc, control_id)
    why = {(r.host, r.control): r.message for r in results.results}
    assert "reachable" in why[("sgm-a01", "CP-NET-01")]
    # No pwscore on a bare PC either: the package's absence is the finding, not an error.
    assert "libpam-pwquality is not installed" in why[("sgm-a01", "CP-ACC-04")]


def test_provision_locks_down_every_host(lab: Lab) -> None:
    run, summary = lab.provision(lab.work / "first")
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    hosts = {h["host"]: h for h in summary["hosts"]}
    services = {h.name for h in lab.result.plan.hosts if h.role == "service"}
    # site.yml: the mirrors, the log and NTP hosts, and the PCs; the licence host and
    # the DNS stand-ins are not the project's to configure.
    assert set(PCS) | {"sgm-mirror", "gp-mirror", "sgm-log", "gp-log"} <= set(hosts)
    assert set(hosts) <= set(PCS) | services
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in hosts.values()), hosts
    assert all(hosts[pc]["changed"] > 0 for pc in PCS)
    assert "OK:" in text and all(pc in text for pc in PCS)
    # The run says why auditd is left alone on a container, and its unit is skipped there
    # by its condition, not failed.
    log = (lab.work / "first" / "ansible.log").read_text(encoding="utf-8")
    assert all(f"not applicable: {pc} is a container" in log for pc in PCS)
    for pc in PCS:
        unit = lab.run("systemctl show -p ActiveState -p ConditionResult auditd.service", on=pc)
        assert sorted(unit.split()) == ["ActiveState=inactive", "ConditionResult=no"], unit


def test_verify_passes_all_a_container_can_prove(lab: Lab) -> None:
    out = lab.work / "after"
    run, results = lab.verify(out)
    assert run.returncode == 0, run.stdout + run.stderr
    status = by_control(results)
    assert {h for h, _ in status} == set(PCS)
    wrong = {
        key: s
        for key, s in status.items()
        if s != ("not_applicable" if key[1] in KERNEL_CONTROLS else "pass")
    }
    assert wrong == {}
    families = {c.split("-")[1] for _, c in status}
    assert {"NET", "PKG", "USB", "PRN", "ACC", "LOG", "TIME", "SYS"} <= families
    check = lab.cli("report", "verify", out, "--pubkey", lab.paths.state_dir / "keys/signing.pub")
    assert check.returncode == 0, check.stdout + check.stderr


def test_second_provision_changes_nothing(lab: Lab) -> None:
    run, summary = lab.provision(lab.work / "second")
    assert run.returncode == 0, run.stdout + run.stderr
    changed = {h["host"]: h["changed"] for h in summary["hosts"]}
    assert changed and set(changed.values()) == {0}, changed
    # Check mode predicts no change either: the audit, log and time role on the PCs (the
    # other roles' check runs are their own lab tests'; a whole-site one costs minutes).
    run, summary = lab.provision(lab.work / "check", "--check", "--tags", "campus_audit",
                                 "--limit", ",".join(PCS))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    changed = {h["host"]: h["changed"] for h in summary["hosts"]}
    assert changed and set(changed.values()) == {0}, changed


def test_a_changed_program_or_sshd_config_is_named_against_the_baseline(lab: Lab) -> None:
    """AUD-02: the baseline the first provisioning run took; a program changed in /usr/bin
    and a line added to sshd_config are named, and once put back the PC passes again."""
    pc = PCS[0]
    lab.run("cp -p /usr/bin/yes /root/yes.kept && printf '\\0' >> /usr/bin/yes && "
            "cp -p /etc/ssh/sshd_config /root/sshd_config.kept && "
            "echo '# a line nobody reviewed' >> /etc/ssh/sshd_config", on=pc)  # fmt: skip
    try:
        run, got = lab.verify_on(lab.work / "tampered", pc, ["CP-AUD-02"])
    finally:
        lab.run("cp -p /root/yes.kept /usr/bin/yes && rm /root/yes.kept && "
                "mv /root/sshd_config.kept /etc/ssh/sshd_config", on=pc)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    status, message = got["CP-AUD-02"]
    assert status == "fail", got
    assert "changed /usr/bin/yes" in message and "changed /etc/ssh/sshd_config" in message
    run, got = lab.verify_on(lab.work / "put-back", pc, ["CP-AUD-02"])
    assert got["CP-AUD-02"][0] == "pass", got


# Each check that concludes from an absence, and the tool its probe stands on.
PROBES = {"CP-NET-01": "timeout", "CP-PRN-01": "ss", "CP-USB-02": "ps"}
# sshd -T alone shows the global settings; a Match block for some connections hides there.
MATCH_ROOT = f"\\nMatch Address {ADMIN_SUBNET}\\n    PermitRootLogin yes\\n"


def test_a_probe_that_cannot_run_is_an_error_and_a_match_block_is_seen(lab: Lab) -> None:
    """The locked-down PC passes these checks; without their probes' tools it must not.

    In the same run, a Match block that lets root in from the admin network fails ACC-02.
    """
    pc = next(h for h in lab.result.plan.hosts if h.name == PCS[0])
    hide = " && ".join(f'mv "$(command -v {t})" /root/{t}.hidden' for t in PROBES.values())
    back = "; ".join(f'mv /root/{t}.hidden "/usr/bin/{t}"' for t in PROBES.values())
    broken = control.run_on(
        lab.paths, pc, "cp -p /etc/ssh/sshd_config /root/sshd_config.kept && "
        f"printf '{MATCH_ROOT}' >> /etc/ssh/sshd_config && {hide}"
    )  # fmt: skip
    assert broken.returncode == 0, broken.stderr
    try:
        run, got = lab.verify_on(lab.work / "no-probes", pc.name, [*PROBES, "CP-ACC-02"])
    finally:
        restored = control.run_on(
            lab.paths, pc, f"{back}; mv /root/sshd_config.kept /etc/ssh/sshd_config"
        )
    assert restored.returncode == 0, restored.stderr
    assert run.returncode == 1, run.stdout + run.stderr
    assert set(got) == {*PROBES, "CP-ACC-02"}
    for control_id in PROBES:
        status, message = got[control_id]
        assert status == "error", (control_id, status, message)
        assert message.startswith("probe error: "), (control_id, message)
    assert got["CP-ACC-02"][0] == "fail", got["CP-ACC-02"]
    first = next(ADMIN_SUBNET.hosts())
    assert f"PermitRootLogin is yes (for root@{first}" in got["CP-ACC-02"][1]


def test_a_refused_sudo_is_an_error_for_every_control(lab: Lab) -> None:
    """verify logs in as an admin and becomes root with sudo; sudo refused, nothing passes."""
    pc = PCS[0]
    # From this machine, in the container's root as mounted here: with root login off and
    # sudo refused, no SSH session could put the grant back.
    root = lab.paths.host_dir(pc) / "merged"
    grant, kept = root / "etc/sudoers.d/campus-admins", root / "root/campus-admins.kept"
    assert grant.is_file(), grant
    grant.rename(kept)
    try:
        out = lab.work / "sudo-refused"
        keys = lab.paths.state_dir / "keys"
        run = lab.cli("verify", lab.spec, "--lab", "--prefix", lab.paths.prefix, "--out", out,
                      "--limit", pc, "--passphrase-file", keys / "passphrase")  # fmt: skip
    finally:
        kept.rename(grant)
    assert run.returncode == 1, run.stdout + run.stderr
    results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
    assert results.results and {r.host for r in results.results} == {pc}
    wrong = {r.control: (r.status, r.message[:200]) for r in results.results
             if r.status != "error" or "sudo" not in r.message}  # fmt: skip
    assert wrong == {}, wrong


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
        out = lab.ssh(LOG_HOSTS[pc], f"grep -c -- {token} {LOG_DIR}/{pc}.log")
        return out.stdout.strip() not in ("", "0")

    return probe


def test_a_line_logged_on_each_pc_reaches_its_log_host(lab: Lab) -> None:
    for pc, log_host in LOG_HOSTS.items():
        token = f"campus-test-{secrets.token_hex(8)}"
        lab.run(f"logger -t campus-test {token}", on=pc)
        took = wait_for(arrived(lab, pc, token))
        print(f"{pc} -> {log_host}: {took:.1f} s")
        listing = lab.run(f"stat -c '%a %U:%G %n' {LOG_DIR} {LOG_DIR}/*.log", on=log_host)
        assert listing.split("\n")[0] == f"750 root:adm {LOG_DIR}", listing
        # Remote lines go to the per-host files only, not into the log host's own syslog.
        assert lab.run("grep -c campus-test- /var/log/syslog || true", on=log_host).strip() == "0"


def test_lines_logged_while_the_log_host_is_down_arrive_later(lab: Lab) -> None:
    pc = PCS[0]
    log_host = LOG_HOSTS[pc]
    lab.run("systemctl stop rsyslog.service syslog.socket", on=log_host)
    token = f"campus-outage-{secrets.token_hex(8)}"
    try:
        lab.run(f"logger -t campus-test {token}", on=pc)
        time.sleep(3)
        assert not arrived(lab, pc, token)()
        # The configuration is right, the delivery is not: LOG-01 looks, and fails.
        keys = lab.paths.state_dir / "keys"
        out = lab.work / "log-host-down"
        run = lab.cli("verify", lab.spec, "--lab", "--prefix", lab.paths.prefix, "--out", out,
                      "--limit", pc, "--controls", "CP-LOG-01",
                      "--passphrase-file", keys / "passphrase")  # fmt: skip
        assert run.returncode == 1, run.stdout + run.stderr
        results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
        assert by_control(results) == {(pc, "CP-LOG-01"): "fail"}
    finally:
        lab.run("systemctl start rsyslog.service", on=log_host)
    took = wait_for(arrived(lab, pc, token))
    print(f"{pc} -> {log_host} after the outage: {took:.1f} s")


def test_pcs_follow_their_sites_ntp_server(lab: Lab) -> None:
    for pc, ntp_host in NTP_HOSTS.items():
        server = str(lab.result.plan.host(ntp_host).address.ip)
        config = lab.run(
            "grep -E '^(server|pool|sourcedir|confdir)' /etc/chrony/chrony.conf", on=pc
        )
        assert config.splitlines() == [f"server {server} iburst"]

        def selected(pc: str = pc, server: str = server) -> bool:
            sources = lab.ssh(pc, "chronyc -n sources").stdout
            return f"^* {server}" in sources

        wait_for(selected)
        clients = lab.run("chronyc -n clients", on=ntp_host)
        assert str(lab.result.plan.host(pc).address.ip) in clients, clients


def test_no_secret_is_in_anything_the_runs_left_behind(lab: Lab) -> None:
    lab.ps.stop()
    keys = lab.paths.state_dir / "keys"
    secrets = keys_dir_secrets(keys, (keys / "passphrase").read_text(encoding="utf-8").strip())
    assert {"keystore passphrase", "evidence-signing key", "archive key (OpenPGP secret key)"} <= {
        s.label for s in secrets
    }
    hosts = [lab.paths.host_dir(h.name) / "upper" for h in lab.result.plan.hosts]
    places = [lab.work, lab.paths.inventory, lab.paths.root / "ssh",
              *(h / sub for h in hosts for sub in HOST_WRITES if (h / sub).exists())]  # fmt: skip
    assert (lab.work / "output").is_dir() and (lab.work / "first" / "summary.json").is_file()
    assert any(p.name == "log" for p in places[3:]), "no PC's /var/log was scanned"
    leaks = [*scan_files(places, secrets), *lab.ps.scan(secrets)]
    print(f"secrets scan: {len(secrets)} secrets, {len(places)} places, "
          f"{len(lab.ps.snapshots)} ps snapshots")  # fmt: skip
    assert leaks == [], [str(leak) for leak in leaks]
