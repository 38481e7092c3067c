"""What needs a kernel of its own, on one QEMU PC (Sangam, with its mirror): under TCG each
boot costs minutes, so the QEMU driver, USB-01 and AUD-01 share the session's VM
(tests/lab/volume_vm.py), which the volume modules then take as this module leaves it.

In this order, each test building on the VM the one before left:
1. the driver: the VM boots its own kernel, a USB stick is attached, dm-crypt works on
   the data disk (LUKS format, open, wrong key refused, close, the disk wiped blank again
   for the volume modules);
2. unprovisioned, the kernel-level checks fail: USB-01 (usb-storage would load), AUD-01
   (no auditd), VOL-01 (no open LUKS mapping), SYS-02 (a symbol map all may read), SYS-03
   (no AppArmor), TIME-01 (no chrony);
3. with Sangam's NTP server provisioned (a container), one provisioning run
   (campus_apt_client, campus_hardening, campus_usb and campus_audit's auditd and time
   parts) reboots the VM once: the stick is gone, USB-01, USB-02, PRN-01, AUD-01, SYS-01
   and SYS-02 (read back from the VM's own kernel), SYS-03 (AppArmor enforcing) and
   TIME-01 (chrony on the VM's own clock has selected the campus NTP) pass;
4. auditd runs with the campus rules, and a module load, a change to sudo's drop-ins and
   a clock set by root's session each leave a record;
5. a second run of campus_hardening and campus_usb changes nothing and does not reboot;
6. with lsinitramfs hidden, USB-01 is an error, not a pass.
The container side of these roles is in test_usb_hardening_lab.py and test_campus_lab.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from campus_provision.lab.plan import VM_DATA_DISK
from tests.lab.conftest import Lab, changed_counts, changed_log_lines, failures
from tests.lab.volume_vm import VolumeVm

pytestmark = [pytest.mark.lab, pytest.mark.vm]
VM = "sgm-a01"
USB_CONTROLS = ("CP-USB-01", "CP-USB-02", "CP-PRN-01")
ROLES = ("campus_apt_client", "campus_hardening", "campus_usb", "campus_audit")
# campus_apt_client runs once, in the first run. Of campus_audit auditd and time (a VM
# has a clock of its own, which TIME-01 proves follows the campus NTP); forwarding is
# proven on the containers (each task costs seconds under TCG).
FIRST_RUN_TAGS = "campus_apt_client,campus_hardening,campus_usb,aud,time"
NTP_SERVER = "sgm-infra"  # Sangam's NTP host, a container: its server is campus_time_server
SECOND_RUN_TAGS = "campus_hardening,campus_usb"  # campus_apt_client's is test_mirror_lab's


@pytest.fixture(scope="module")
def lab(volume_vm_lab: VolumeVm) -> Lab:
    vm = volume_vm_lab
    assert not vm.provisioned and not vm.kernel_roles, "this module starts from the bare VM"
    vm.kernel_roles = True  # the volume modules find campus_usb and campus_audit in place
    return Lab(vm.paths, vm.result, vm.extra, ROLES)


def usb_disks(lab: Lab) -> list[str]:
    disks = lab.sh(VM, "lsblk -dn -o NAME,TRAN")
    return [line for line in disks.splitlines() if line.split()[-1:] == ["usb"]]


def test_vm_boots_its_own_kernel_and_answers_ssh(lab: Lab) -> None:
    host = lab.host(VM)
    assert host.driver == "qemu"
    comm, hostname, kernel = lab.sh(VM, "cat /proc/1/comm; hostname; uname -r").split()
    assert (comm, hostname) == ("systemd", VM)
    assert kernel.endswith("-amd64")
    print(f"VM up in {lab.result.seconds:.0f} s")


def test_usb_stick_is_attached(lab: Lab) -> None:
    out = lab.sh(VM, "cat /sys/bus/usb/devices/*/product 2>/dev/null; true")
    assert "QEMU USB HARDDRIVE" in out, out
    assert usb_disks(lab)


def test_luks_format_and_open_on_the_data_disk(lab: Lab) -> None:
    key = secrets.token_hex(32)
    # The key goes on stdin, never in argv; pbkdf2 with few iterations keeps TCG fast.
    fmt = lab.ssh(VM, f"cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 "
                  f"--pbkdf-force-iterations 1000 --key-file - {VM_DATA_DISK}", key)  # fmt: skip
    assert fmt.returncode == 0, fmt.stderr
    opened = lab.ssh(VM, f"cryptsetup open --key-file - {VM_DATA_DISK} labtest && "
                     "test -b /dev/mapper/labtest && cryptsetup status labtest", key)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "type:    LUKS2" in opened.stdout
    wrong = lab.ssh(VM, f"cryptsetup open --test-passphrase --key-file - {VM_DATA_DISK}",
                    "not-the-key")  # fmt: skip
    assert wrong.returncode != 0
    assert lab.ssh(VM, "cryptsetup close labtest").returncode == 0
    # Blank again, as the volume modules expect their data disk (no signature left).
    lab.sh(VM, f"wipefs --all --quiet {VM_DATA_DISK}")
    assert lab.sh(VM, f"wipefs --no-act --output TYPE --noheadings {VM_DATA_DISK}") == ""


def test_kernel_controls_fail_on_an_unprovisioned_vm(lab: Lab, tmp_path: Path) -> None:
    """On a VM the kernel-level controls are checked for real, so they can fail."""
    kernel = ("CP-USB-01", "CP-AUD-01", "CP-VOL-01", "CP-SYS-02", "CP-SYS-03", "CP-TIME-01")
    results = lab.checks(tmp_path, (VM,), kernel)
    why = {r.control: (r.status, r.message) for r in results}
    assert {r.host for r in results} == {VM}, results
    assert (
        why["CP-USB-01"][0] == "fail" and "modprobe would load usb-storage" in why["CP-USB-01"][1]
    ), why
    assert why["CP-AUD-01"][0] == "fail" and "auditd is not running" in why["CP-AUD-01"][1], why
    assert why["CP-VOL-01"][0] == "fail" and "no open LUKS mapping" in why["CP-VOL-01"][1], why
    # Debian leaves the kernel's symbol map readable to all (its settings differ too).
    assert why["CP-SYS-02"][0] == "fail", why
    assert "System.map-" in why["CP-SYS-02"][1] and "is 644 root" in why["CP-SYS-02"][1], why
    assert why["CP-SYS-03"] == ("fail", "apparmor is not installed: no profile confines anything")
    assert why["CP-TIME-01"][0] == "fail", why  # no chrony: the campus NTP is not configured


def test_provisioning_reboots_once_and_the_stick_is_gone(lab: Lab, tmp_path: Path) -> None:
    # The site's NTP server first, as site.yml orders it, so the VM's chrony has a source.
    ntp = lab.play(tmp_path, (NTP_SERVER,), group="ntp_servers",
                   roles=("campus_apt_client", "campus_time_server"))  # fmt: skip
    assert ntp.ok(), failures(ntp)
    boot = lab.sh(VM, "cat /proc/sys/kernel/random/boot_id")
    run = lab.play(tmp_path, (VM,), tags=FIRST_RUN_TAGS)
    assert run.ok(), failures(run)
    assert {h.host for h in run.hosts} == {VM} and run.hosts[0].changed > 0, run.hosts
    print(f"VM first run: {run.seconds:.0f} s")
    assert lab.sh(VM, "cat /proc/sys/kernel/random/boot_id") != boot  # it rebooted
    assert not usb_disks(lab)
    state = lab.sh(VM, "grep -cE '^(usb_storage|uas) ' /proc/modules || true; "
                   "lsinitramfs /boot/initrd.img-$(uname -r) | grep -c usb-storage || true; "
                   "grep -c '^usbhid ' /proc/modules || true; "
                   "sysctl -n kernel.dmesg_restrict fs.suid_dumpable")  # fmt: skip
    # Nothing blocked loaded or in the initramfs; usbhid is free to load (the VM's
    # tablet may load it); the sysctls hold after the reboot.
    assert state.split()[:2] == ["0", "0"] and state.split()[3:] == ["1", "0"], state
    plan = lab.sh(VM, "modprobe -n -v usbhid 2>&1 || true")
    assert "/bin/false" not in plan
    # The sysctls, read back from the VM's own kernel after the reboot, are in effect.
    # TIME-01 on a clock of the PC's own: chrony has selected the campus NTP server.
    proved = (*USB_CONTROLS, "CP-AUD-01", "CP-SYS-01", "CP-SYS-02", "CP-SYS-03", "CP-TIME-01")
    after = lab.statuses(tmp_path, (VM,), proved)
    assert after == {(VM, c): "pass" for c in proved}, after


def test_auditd_watches_datasets_and_modules(lab: Lab) -> None:
    assert lab.sh(VM, "systemctl is-active auditd").strip() == "active"
    rules = lab.sh(VM, "auditctl -l")
    assert "-w /srv/datasets -p rwxa -k campus-datasets" in rules, rules
    assert "finit_module" in rules and "init_module" in rules, rules
    # The rules record for real: loading a module leaves a record with the campus key.
    lab.sh(VM, "modprobe dummy && modprobe -r dummy")
    found = lab.sh(VM, "ausearch --input-logs -k campus-modules -sc finit_module -i")
    assert "name=dummy" in found and "key=campus-modules" in found, found
    # So do a change to sudo's drop-ins and a clock set by a person's (root's) session.
    lab.sh(VM, "touch /etc/sudoers.d/zz-audit-test && rm /etc/sudoers.d/zz-audit-test && "
           "date -u -s \"$(date -u '+%Y-%m-%d %H:%M:%S')\" >/dev/null")  # fmt: skip
    for key in ("campus-sudoers", "campus-time"):
        found = lab.sh(VM, f"ausearch --input-logs -k {key} -i")
        assert f"key={key}" in found, found


def test_second_run_changes_nothing_and_does_not_reboot(lab: Lab, tmp_path: Path) -> None:
    boot = lab.sh(VM, "cat /proc/sys/kernel/random/boot_id")
    run = lab.play(tmp_path, (VM,), tags=SECOND_RUN_TAGS)
    assert run.ok(), failures(run)
    print(f"VM second run: {run.seconds:.0f} s")
    assert changed_counts(run) == {VM: 0}, changed_log_lines(run)
    assert lab.sh(VM, "cat /proc/sys/kernel/random/boot_id") == boot


def test_without_lsinitramfs_usb_01_is_an_error_not_a_pass(lab: Lab, tmp_path: Path) -> None:
    """The locked-down VM passes USB-01; with its initramfs probe gone it must not."""
    lab.sh(
        VM,
        "command -v lsinitramfs > /root/lsinitramfs.path && "
        'mv "$(cat /root/lsinitramfs.path)" /root/lsinitramfs.hidden',
    )
    try:
        hidden = lab.statuses(tmp_path, (VM,), USB_CONTROLS)
    finally:
        lab.sh(VM, 'mv /root/lsinitramfs.hidden "$(cat /root/lsinitramfs.path)"')
    assert hidden[(VM, "CP-USB-01")] == "error", hidden
    assert lab.statuses(tmp_path, (VM,), USB_CONTROLS)[(VM, "CP-USB-01")] == "pass"
