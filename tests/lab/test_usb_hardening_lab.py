"""campus_hardening and campus_usb on real lab PCs: check, converge, idempotence, verify.

Two nspawn PCs (Sangam) for what a container can show (PRN-01, USB-02, the config USB-01
reads, sysctls, banner): first the checks fail, then provisioning, then re-runs for
changed=0. What needs a kernel of its own (USB-01: the initramfs, the guarded reboot, the
stick gone) is proven on the QEMU PC of test_kernel_vm_lab.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import (
    Lab,
    changed_counts,
    changed_log_lines,
    changed_tasks,
    failures,
    sangam_lab,
    tasks_with,
)

pytestmark = pytest.mark.lab
PCS = ("sgm-a01", "sgm-a02")
CONTROLS = ("CP-USB-01", "CP-USB-02", "CP-PRN-01")
ROLES = "campus_hardening,campus_usb"  # as tags
PLAY_ROLES = ("campus_apt_client", "campus_hardening", "campus_usb")
# Stand-ins for a PC that came with CUPS and udisks2 running: same unit names, installed
# where a package puts its units, enabled and active.
STAND_IN = """[Unit]
Description=lab stand-in for {name}
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


class TestContainers:
    """Two nspawn PCs; sgm-a02 starts with stand-ins for CUPS and udisks2 running."""

    @pytest.fixture(scope="class")
    @classmethod
    def lab(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
        yield from sangam_lab(tmp_path_factory.mktemp("cph"), "cph", 2, "nspawn", PLAY_ROLES)

    def test_checks_fail_where_printing_and_automount_run(self, lab: Lab, tmp_path: Path) -> None:
        for unit in ("cups.service", "udisks2.service"):
            out = lab.ssh("sgm-a02", f"cat > /lib/systemd/system/{unit} && systemctl daemon-reload "
                          f"&& systemctl enable --now {unit}", STAND_IN.format(name=unit))  # fmt: skip
            assert out.returncode == 0, out.stderr
        before = lab.statuses(tmp_path, PCS, CONTROLS)
        assert before == {
            # No 'install usb-storage /bin/false' yet: the check fails even in a container.
            ("sgm-a01", "CP-USB-01"): "fail", ("sgm-a02", "CP-USB-01"): "fail",
            # A bare lab PC runs no print service and no automounter: that is a pass.
            ("sgm-a01", "CP-USB-02"): "pass", ("sgm-a01", "CP-PRN-01"): "pass",
            ("sgm-a02", "CP-USB-02"): "fail", ("sgm-a02", "CP-PRN-01"): "fail",
        }, before  # fmt: skip

    def test_check_mode_on_fresh_pcs_changes_nothing(self, lab: Lab, tmp_path: Path) -> None:
        # Only the two roles under test: campus_apt_client's check run on a PC that still
        # has its installer's sources is campus_apt_client's business.
        run = lab.play(tmp_path, PCS, check=True, tags=ROLES)
        assert run.ok(), failures(run)
        assert all(h.changed > 0 for h in run.hosts), changed_counts(run)
        assert lab.sh("sgm-a01", "ls /etc/modprobe.d /etc/sysctl.d").count("campus") == 0
        assert lab.sh(
            "sgm-a02", "systemctl is-active cups.service udisks2.service || true"
        ).split() == ["active", "active"]

    def test_provisioning_turns_the_checks_green(self, lab: Lab, tmp_path: Path) -> None:
        run = lab.play(tmp_path, PCS)
        assert run.ok(), failures(run)
        assert {h.host for h in run.hosts} == set(PCS) and all(h.changed > 0 for h in run.hosts)
        after = lab.statuses(tmp_path, PCS, CONTROLS)
        assert after == {
            **{(pc, "CP-USB-01"): "not_applicable" for pc in PCS},  # no kernel of its own
            **{(pc, c): "pass" for pc in PCS for c in ("CP-USB-02", "CP-PRN-01")},
        }, after

    def test_what_the_roles_left_on_the_pcs(self, lab: Lab) -> None:
        plan = lab.sh("sgm-a01", "modprobe -n -v usb-storage 2>&1; modprobe -n -v uas 2>&1; "
                      "modprobe -n -v usbhid 2>&1 || true")  # fmt: skip
        assert plan.count("install /bin/false") == 2, plan
        units = lab.sh("sgm-a02", "systemctl is-enabled cups.service cups.socket "
                       "cups-browsed.service udisks2.service autofs.service || true")  # fmt: skip
        assert units.split() == ["masked"] * 5, units
        # A container's kernel settings are its host's, read-only (the handler forgives that
        # only there): the file is what a PC's boot would load.
        sysctl = lab.sh("sgm-a01", "cat /etc/sysctl.d/60-campus.conf")
        for line in ("net.ipv4.ip_forward = 0", "net.ipv4.conf.all.send_redirects = 0",
                     "net.ipv4.conf.all.rp_filter = 1", "kernel.kptr_restrict = 2"):  # fmt: skip
            assert f"\n{line}\n" in sysctl, sysctl
        files = lab.sh("sgm-a01", "cat /etc/sysctl.d/60-campus-coredump.conf "
                       "/etc/security/limits.d/60-campus-coredump.conf "
                       "/etc/systemd/coredump.conf.d/60-campus.conf")  # fmt: skip
        for line in ("fs.suid_dumpable = 0", "hard    core    0", "Storage=none"):
            assert line in files
        all_vars = lab.paths.inventory / "group_vars" / "all.yml"
        banner = yaml.safe_load(all_vars.read_text(encoding="utf-8"))["campus_banner"]
        shown = lab.sh(
            "sgm-a01", "cat /etc/issue.net; echo ==; cat /etc/motd; echo ==; cat /etc/issue"
        )
        net, motd, issue = shown.split("==\n")
        assert net == motd == issue == f"{banner}\n\n", shown

    def test_second_run_and_check_run_change_nothing(self, lab: Lab, tmp_path: Path) -> None:
        # The roles under test only: campus_apt_client's idempotence is test_mirror_lab's.
        again = lab.play(tmp_path, PCS, tags=ROLES)
        assert again.ok(), failures(again)
        assert changed_counts(again) == dict.fromkeys(PCS, 0), changed_log_lines(again)
        check = lab.play(tmp_path, PCS, check=True, tags=ROLES)
        assert check.ok(), failures(check)
        assert changed_counts(check) == dict.fromkeys(PCS, 0), changed_log_lines(check)

    def test_a_unit_started_again_is_masked_and_stopped_again(
        self, lab: Lab, tmp_path: Path
    ) -> None:
        # One systemctl read decides which units the roles touch: what someone unmasked and
        # started on sgm-a02 must be masked and stopped again, and nothing else changes.
        out = lab.ssh("sgm-a02", "systemctl unmask cups.service udisks2.service && "
                      "systemctl start cups.service udisks2.service && "
                      "systemctl is-active cups.service udisks2.service")  # fmt: skip
        assert out.returncode == 0 and out.stdout.split() == ["active", "active"], out
        run = lab.play(tmp_path, PCS, tags=ROLES)
        assert run.ok(), failures(run)
        assert changed_tasks(run) == {
            "sgm-a02": {
                "campus_hardening : Mask the print services",
                "campus_hardening : Stop the print services that run",
                "campus_usb : Mask the automount services",
                "campus_usb : Stop the automount services that run",
            }
        }
        assert {
            "campus_hardening : Mask the print services",
            "campus_usb : Mask the automount services",
        } <= tasks_with(run, "skipped")["sgm-a01"]
        units = "cups.service udisks2.service"
        state = lab.ssh("sgm-a02", f"systemctl is-enabled {units}; systemctl is-active {units}")
        assert state.stdout.split() == ["masked", "masked", "inactive", "inactive"], state

    def test_usbguard_switched_on_without_the_package_fails_clearly(
        self, lab: Lab, tmp_path: Path
    ) -> None:
        run = lab.play(tmp_path, ("sgm-a01",), tags="campus_usb", campus_usb_usbguard_enabled=True)
        (failed,) = [h for h in run.hosts if h.failed]
        assert failed.reason is not None and "not in the offline bundle" in failed.reason, failed
