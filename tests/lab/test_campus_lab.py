"""The example campus's lab slice, locked down end to end with the commands IT staff run.

One lab (prefix ``cpx``) from the example spec as it is (the full analyst profile): one
nspawn PC per site, both sites' mirrors, log hosts, NTP/DNS hosts and the licence server.
The tests run in file order, like an operator would:

1. ``verify`` on the bare PCs fails, and says why (the checks can fail);
2. ``provision --lab`` (site.yml: mirrors, services, workstations) succeeds on every host;
3. ``verify`` passes every control a container can prove; those that need a kernel of the
   PC's own (USB-01, AUD-01, VOL-*) are "not applicable", never "pass"; the evidence is
   signed and ``report verify`` accepts it;
4. a second ``provision`` changes nothing on any host;
5. no secret of the lab's keystore (its passphrase, the evidence-signing key, the archive
   key) is in anything the runs left behind: run directories, evidence, inventories, the
   commands' output, the logs and files the runs wrote on the PCs and the mirrors, and the
   ``ps`` snapshots taken every half second from before the bundle was built to the end.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import ADMIN_SUBNET
from campus_provision.lab.state import LabPaths
from campus_provision.verify.results import RunResults
from tests.conftest import EXAMPLE
from tests.lab.conftest import VENV_BIN, lab_paths, require_lab
from tests.leaks import PsSampler, keys_dir_secrets, scan_files

pytestmark = pytest.mark.lab
PCS = ("sgm-a01", "gp-l1-01")
# A container shares the host's kernel: module loading, auditd and dm-crypt are not its own,
# and nor is its clock (TIME-01 proves the configuration, then says so).
KERNEL_CONTROLS = {"CP-USB-01", "CP-AUD-01", "CP-VOL-01", "CP-VOL-02", "CP-VOL-03", "CP-TIME-01"}
PROVISION_TIMEOUT = 2400
# What the runs write on a host, under its overlay's upper directory (the rest is the image).
HOST_WRITES = ("etc", "root", "home", "tmp", "var/log", "var/tmp", "var/lib/campus")


@dataclass(frozen=True)
class Lab:
    paths: LabPaths
    result: UpResult
    work: Path
    ps: PsSampler

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

    def verify(self, out: Path) -> tuple[subprocess.CompletedProcess[str], RunResults]:
        keys = self.paths.state_dir / "keys"
        run = self.cli("verify", EXAMPLE, "--lab", "--prefix", self.paths.prefix, "--out", out,
                       "--passphrase-file", keys / "passphrase")  # fmt: skip
        results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
        return run, results

    def provision(self, run_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        run = self.cli("provision", EXAMPLE, "--lab", "--prefix", self.paths.prefix,
                       "--run-dir", run_dir, timeout=PROVISION_TIMEOUT)  # fmt: skip
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
        return run, summary


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    paths = lab_paths("cpx")
    control.down(paths)
    sampler = PsSampler().start()  # from before the bundle is built (gpg, the archive key)
    try:
        result = control.up(EXAMPLE, paths, per_site=1, mirror=True, progress=print)
        yield Lab(paths, result, tmp_path_factory.mktemp("campus"), sampler)
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
        for control_id in ("CP-NET-01", "CP-PKG-01", "CP-ACC-02"):
            assert status[(pc, control_id)] == "fail", (pc, control_id)
    why = {(r.host, r.control): r.message for r in results.results}
    assert "reachable" in why[("sgm-a01", "CP-NET-01")]


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
    assert {"NET", "PKG", "USB", "PRN", "ACC", "LOG", "TIME"} <= families
    check = lab.cli("report", "verify", out, "--pubkey", lab.paths.state_dir / "keys/signing.pub")
    assert check.returncode == 0, check.stdout + check.stderr


def test_second_provision_changes_nothing(lab: Lab) -> None:
    run, summary = lab.provision(lab.work / "second")
    assert run.returncode == 0, run.stdout + run.stderr
    changed = {h["host"]: h["changed"] for h in summary["hosts"]}
    assert changed and set(changed.values()) == {0}, changed


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
        out = lab.work / "no-probes"
        keys = lab.paths.state_dir / "keys"
        run = lab.cli("verify", EXAMPLE, "--lab", "--prefix", lab.paths.prefix, "--out", out,
                      "--limit", pc.name, "--controls", ",".join([*PROBES, "CP-ACC-02"]),
                      "--passphrase-file", keys / "passphrase")  # fmt: skip
    finally:
        restored = control.run_on(
            lab.paths, pc, f"{back}; mv /root/sshd_config.kept /etc/ssh/sshd_config"
        )
    assert restored.returncode == 0, restored.stderr
    assert run.returncode == 1, run.stdout + run.stderr
    results = RunResults.from_json((out / "results.json").read_text(encoding="utf-8"))
    got = {r.control: (r.status, r.message) for r in results.results}
    assert set(got) == {*PROBES, "CP-ACC-02"}
    for control_id in PROBES:
        status, message = got[control_id]
        assert status == "error", (control_id, status, message)
        assert message.startswith("probe error: "), (control_id, message)
    assert got["CP-ACC-02"][0] == "fail", got["CP-ACC-02"]
    first = next(ADMIN_SUBNET.hosts())
    assert f"PermitRootLogin is yes (for root@{first}" in got["CP-ACC-02"][1]


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
