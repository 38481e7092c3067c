"""The air gap for real: a bundle published on the lab mirror, PCs installing only from it.

One lab (Sangam, 2 nspawn PCs, small software profiles) for the whole module. The tests run
in file order: provision and prove PKG-01/02 first, then the tamper and wrong-key faults,
each of which leaves the lab as it found it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from campus_provision.lab import control
from campus_provision.lab.control import UpResult
from campus_provision.lab.state import LabPaths, read_record
from campus_provision.paths import playbooks_dir
from campus_provision.provision.runner import RunResult, run_playbook
from campus_provision.verify.runner import Target, run_checks
from tests.lab.conftest import (
    VENV_BIN,
    changed_tasks,
    lab_paths,
    login_inventory,
    require_lab,
    small_spec,
    ssh,
    tasks_with,
)

pytestmark = pytest.mark.lab
PCS = ("sgm-a01", "sgm-a02")
PINS = {"r-base-core": "4.2.2.20221110-2", "python3-pandas": "1.5.3+dfsg-2"}
MIRROR_ROOT = "/srv/campus-mirror"
CONTROLS = ("CP-PKG-01", "CP-PKG-02", "CP-ACC-01", "CP-ACC-02", "CP-ACC-03")


@dataclass(frozen=True)
class Lab:
    paths: LabPaths
    result: UpResult
    spec: Path
    extra: dict[str, str]  # campus_bundle_dir, campus_signing_pubkey

    @property
    def bundle(self) -> Path:
        return Path(self.extra["campus_bundle_dir"])

    def host(self, name: str) -> control.LabHost:
        return self.result.plan.host(name)

    def mirror_ip(self) -> str:
        return str(self.host("sgm-mirror").address.ip)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab()
    paths = lab_paths("cpa")
    control.down(paths)
    spec = small_spec(tmp_path_factory.mktemp("spec"))
    result = control.up(spec, paths, per_site=2, sites=["sangam"], mirror=True, progress=print)
    record = read_record(paths) or {}
    extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"]}
    try:
        yield Lab(paths, result, spec, extra)
    finally:
        control.down(paths)
        assert control.leftovers(paths) == []


def provision(lab: Lab, playbook: str, limit: str, tmp: Path, **extra: Any) -> RunResult:
    run = tmp / f"run-{len(list(tmp.glob('run-*')))}"
    return run_playbook(
        playbooks_dir() / playbook,
        login_inventory(lab.paths, run / "inventory", limit),
        run,
        limit=limit,
        extra_vars={**lab.extra, **extra},
    )


def statuses(lab: Lab, tmp: Path) -> dict[tuple[str, str], str]:
    inventory = login_inventory(lab.paths, tmp / "login", ",".join(PCS))
    target = Target(inventory=inventory, campus=lab.result.plan.campus,
                    spec_sha256="0" * 64, limit=",".join(PCS),
                    controls=CONTROLS, workers=2)  # fmt: skip
    return {(r.host, r.control): r.status for r in run_checks(target, tmp / "junit.xml").results}


def test_mirror_serves_the_bundle_read_only(lab: Lab) -> None:
    mirror = lab.host("sgm-mirror")
    out = ssh(lab.paths, mirror, f"readlink {MIRROR_ROOT}/current; systemctl is-active nginx; "
              "apt-cache policy nginx | sed -n 3p")  # fmt: skip
    link, active, candidate = out.stdout.split("\n")[:3]
    assert link == f"bundles/{link.rpartition('/')[2]}" and active == "active", out.stdout
    assert "(none)" not in candidate  # nginx came from the bundle itself
    pc = lab.host("sgm-a01")
    url = f"http://{lab.mirror_ip()}"
    probe = ssh(lab.paths, pc, "python3 -c \"import sys, urllib.request as u\n"
                f"print(u.urlopen('{url}/dists/bookworm/InRelease', timeout=5).status)\n"
                f"req = u.Request('{url}/bundle.json', data=b'x', method='PUT')\n"
                "try: u.urlopen(req, timeout=5)\n"
                "except Exception as e: print(getattr(e, 'code', e))\"")  # fmt: skip
    assert probe.stdout.split() == ["200", "403"], probe.stdout + probe.stderr


def test_root_login_stays_on_when_no_admin_can_log_in(lab: Lab, tmp_path: Path) -> None:
    # No key of this controller is an admin's: campus_accounts must not lock the PC away.
    run = provision(lab, "workstations.yml", "sgm-a02", tmp_path,
                    campus_accounts_admin_extra_keys=[])  # fmt: skip
    (host,) = run.hosts
    assert host.failed == 1 and host.reason is not None
    assert "could log in to sgm-a02 with a key from this controller" in host.reason
    assert "root login stays on" in host.reason
    pc = lab.host("sgm-a02")
    assert control.login_user(lab.paths, pc) == "root"
    assert ssh(lab.paths, pc, "sshd -T | grep -i '^permitrootlogin'").stdout.split()[1] != "no"


def test_two_pcs_install_from_the_mirror_only_and_converge(lab: Lab, tmp_path: Path) -> None:
    before = statuses(lab, tmp_path)
    # sgm-a02 already got its mirror source from the lockout test above.
    assert {s for (h, _), s in before.items() if h == "sgm-a01"} == {"fail"}, before

    first = provision(lab, "workstations.yml", ",".join(PCS), tmp_path)
    assert first.ok(), [h for h in first.hosts if h.failed or h.unreachable]
    assert {h.host for h in first.hosts} == set(PCS)
    assert all(h.changed > 0 for h in first.hosts)

    after = statuses(lab, tmp_path)
    assert set(after.values()) == {"pass"}, after
    for name in PCS:  # root login is off now; the lab reaches the PCs as an admin
        assert (
            control.login_user(lab.paths, lab.host(name))
            == lab.result.plan.campus.accounts.admins[0].username
        )

    for name in PCS:
        pc = lab.host(name)
        query = ssh(lab.paths, pc, "dpkg-query -W -f '${Package} ${Version}\\n' "
                    + " ".join(PINS) + "; apt-mark showhold")  # fmt: skip
        lines = query.stdout.splitlines()
        assert dict(line.split() for line in lines[: len(PINS)]) == PINS
        assert set(lines[len(PINS) :]) == set(PINS)
        # apt-get update talks to the mirror and nothing else.
        update = ssh(lab.paths, pc, "apt-get update 2>&1")
        assert update.returncode == 0, update.stdout
        urls = re.findall(r"^(?:Hit|Get|Ign|Err):\d+ (\S+)", update.stdout, re.M)
        assert urls and {u for u in urls if not u.startswith(f"http://{lab.mirror_ip()}")} == set()
        lists = ssh(lab.paths, pc, "ls /var/lib/apt/lists").stdout.split()
        indices = [f for f in lists if f.endswith(("Packages", "InRelease"))]
        assert indices and all(f.startswith(f"{lab.mirror_ip()}_") for f in indices), lists
    log = ssh(lab.paths, lab.host("sgm-mirror"), "cat /var/log/nginx/campus-mirror.access.log")
    for name in PCS:
        assert f"{lab.host(name).address.ip} - " in log.stdout  # the PCs really fetched from it

    second = provision(lab, "site.yml", ",".join((*PCS, "sgm-mirror")), tmp_path)
    assert second.ok()
    assert {h.host: h.changed for h in second.hosts} == dict.fromkeys((*PCS, "sgm-mirror"), 0)


def test_drift_is_put_back_and_only_drift_costs_a_change(lab: Lab, tmp_path: Path) -> None:
    # The roles skip what their first reads find in place (accounts, held packages, apt's
    # timers) without a round trip: what drifted on sgm-a01 must still be put back, and
    # nothing else on it or on sgm-a02 may change.
    site_vars = lab.paths.inventory / "group_vars" / "site_sangam.yml"
    analysts = yaml.safe_load(site_vars.read_text(encoding="utf-8"))["campus_site_analysts"]
    moved, reshelled = (SimpleNamespace(**a) for a in analysts[:2])
    left_group = moved.groups[0]
    pc = lab.host("sgm-a01")
    pin = next(iter(PINS))
    drift = ssh(lab.paths, pc, f"gpasswd --delete {moved.username} {left_group} && "
                f"rm -rf /home/{moved.username} && usermod -s /bin/sh {reshelled.username} && "
                f"apt-mark unhold {pin} && systemctl enable --now apt-daily.timer")  # fmt: skip
    assert drift.returncode == 0, drift.stderr

    run = provision(lab, "workstations.yml", ",".join(PCS), tmp_path)
    assert run.ok(), [h for h in run.hosts if h.failed or h.unreachable]
    assert changed_tasks(run) == {
        "sgm-a01": {
            "campus_apt_client : Stop and disable apt's daily timers",
            "campus_accounts : Create an account per analyst, in their groups",
            "campus_software : Hold the pinned packages at their versions",
        }
    }
    # On sgm-a02, where nothing drifted, those loops never went to the PC.
    assert {
        "campus_apt_client : Stop and disable apt's daily timers",
        "campus_accounts : Create a group per analyst group of the spec",
        "campus_accounts : Create an account per analyst, in their groups",
        "campus_accounts : Create an account per admin, in sudo, password locked",
        "campus_software : Hold the pinned packages at their versions",
    } <= tasks_with(run, "skipped")["sgm-a02"]
    state = ssh(lab.paths, pc, f"id -nG {moved.username}; test -d /home/{moved.username} && "
                f"echo home; getent passwd {reshelled.username} | cut -d: -f7; "
                f"apt-mark showhold; systemctl is-enabled apt-daily.timer; "
                "systemctl is-active apt-daily.timer")  # fmt: skip
    lines = state.stdout.splitlines()
    assert left_group in lines[0].split() and lines[1] == "home", state.stdout
    assert lines[2] != "/bin/sh" and set(lines[3:-2]) == set(PINS), state.stdout
    assert lines[-2:] == ["disabled", "inactive"], state.stdout


def test_a_tampered_deb_is_refused_and_the_mirror_keeps_serving(lab: Lab, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(lab.bundle, tampered)
    deb = sorted((tampered / "pool").rglob("python3-pandas_*.deb"))[0]
    data = bytearray(deb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    deb.write_bytes(bytes(data))
    rel = deb.relative_to(tampered).as_posix()

    check = subprocess.run(
        [str(VENV_BIN / "campus-provision"), "bundle", "verify", str(tampered),
         "--pubkey", lab.extra["campus_signing_pubkey"]],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert check.returncode == 1
    assert f"altered: {rel}" in check.stderr

    mirror = lab.host("sgm-mirror")
    current = ssh(lab.paths, mirror, f"readlink {MIRROR_ROOT}/current").stdout
    result = provision(lab, "mirrors.yml", "sgm-mirror", tmp_path,
                       campus_bundle_dir=str(tampered))  # fmt: skip
    assert not result.ok()
    (failed,) = [h for h in result.hosts if h.failed]
    assert failed.host == "sgm-mirror"
    assert failed.reason is not None and f"altered: {rel}" in failed.reason
    assert "bundle refused, nothing published" in failed.reason
    assert ssh(lab.paths, mirror, f"readlink {MIRROR_ROOT}/current").stdout == current
    listing = ssh(
        lab.paths, mirror, f"ls -A {MIRROR_ROOT}/incoming; echo --; ls {MIRROR_ROOT}/bundles"
    )
    incoming, _, bundles = listing.stdout.partition("--\n")
    assert incoming == "" and bundles.split() == [current.strip().rpartition("/")[2]], (
        listing.stdout
    )


def _resign_release_with_another_key(lab: Lab, tmp: Path) -> None:
    """What a tampered mirror looks like to apt: Release signed by a key the PCs don't trust."""
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "Intruder <x@lab.invalid>", "ed25519", "sign"],
                   env=env, check=True, timeout=120)  # fmt: skip
    release = lab.bundle / "dists" / "bookworm" / "Release"
    inrelease = tmp / "InRelease"
    subprocess.run([*gpg, "--clearsign", "--output", str(inrelease), str(release)],
                   env=env, check=True, timeout=120)  # fmt: skip
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, timeout=30)
    mirror = lab.host("sgm-mirror")
    dists = f"{MIRROR_ROOT}/current/dists/bookworm"
    out = ssh(lab.paths, mirror, f"mkdir -p /root/saved && cp -a {dists}/InRelease "
              f"{dists}/Release.gpg /root/saved/ && cat > {dists}/InRelease && "
              f"rm {dists}/Release.gpg", input=inrelease.read_text())  # fmt: skip
    assert out.returncode == 0, out.stderr


def _restore_release(lab: Lab) -> None:
    dists = f"{MIRROR_ROOT}/current/dists/bookworm"
    out = ssh(lab.paths, lab.host("sgm-mirror"), f"cp -a /root/saved/InRelease "
              f"/root/saved/Release.gpg {dists}/ && rm -r /root/saved")  # fmt: skip
    assert out.returncode == 0, out.stderr


def _cli_provision(lab: Lab, limit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "campus-provision"), "provision", str(lab.spec), "--lab",
         "--prefix", lab.paths.prefix, "--limit", limit, "--playbook",
         str(playbooks_dir() / "workstations.yml")],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_a_mirror_signed_with_another_key_fails_clearly(lab: Lab, tmp_path: Path) -> None:
    _resign_release_with_another_key(lab, tmp_path)
    try:
        run = _cli_provision(lab, "sgm-a02")
        assert run.returncode == 1, run.stdout + run.stderr
        text = run.stdout + run.stderr
        assert "sgm-a02" in text
        assert re.search(r"NO_PUBKEY|signatures couldn't be verified|not signed", text), text
        # The mirror role notices a published bundle was altered on the mirror itself.
        mirror = provision(lab, "mirrors.yml", "sgm-mirror", tmp_path)
        (failed,) = [h for h in mirror.hosts if h.failed]
        assert failed.reason is not None
        assert "altered: dists/bookworm/InRelease" in failed.reason, failed.reason
        assert "missing: dists/bookworm/Release.gpg" in failed.reason, failed.reason
    finally:
        _restore_release(lab)
    again = _cli_provision(lab, "sgm-a02")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_missing_release_signature_fails_clearly(lab: Lab, tmp_path: Path) -> None:
    dists = f"{MIRROR_ROOT}/current/dists/bookworm"
    mirror = lab.host("sgm-mirror")
    moved = ssh(lab.paths, mirror, f"mkdir -p /root/saved && mv {dists}/InRelease "
                f"{dists}/Release.gpg /root/saved/")  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    try:
        run = _cli_provision(lab, "sgm-a01")
        assert run.returncode == 1, run.stdout + run.stderr
        text = run.stdout + run.stderr
        assert "sgm-a01" in text and re.search(r"is (no longer|not) signed", text), text
    finally:
        _restore_release(lab)
