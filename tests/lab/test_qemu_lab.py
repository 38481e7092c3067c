"""The QEMU driver: a VM with a kernel of its own (dm-crypt works), a data disk, a USB stick."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from campus_provision.lab.control import UpResult
from campus_provision.lab.plan import VM_DATA_DISK
from campus_provision.lab.state import LabPaths
from campus_provision.verify.runner import Target, run_checks
from tests.lab.conftest import ssh

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.vm_short]
Lab = tuple[LabPaths, UpResult]


def test_vm_boots_its_own_kernel_and_answers_ssh(vm_lab: Lab) -> None:
    paths, result = vm_lab
    host = result.plan.host("sgm-a01")
    assert host.driver == "qemu"
    out = ssh(paths, host, "cat /proc/1/comm; hostname; uname -r")
    comm, hostname, kernel = out.stdout.split()
    assert (comm, hostname) == ("systemd", "sgm-a01")
    assert kernel.endswith("-amd64")
    print(f"VM up in {result.seconds:.0f} s")


def test_luks_format_and_open_on_the_data_disk(vm_lab: Lab) -> None:
    paths, result = vm_lab
    host = result.plan.host("sgm-a01")
    key = secrets.token_hex(32)
    # The key goes on stdin, never in argv; pbkdf2 with few iterations keeps TCG fast.
    fmt = ssh(paths, host, f"cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 "
              f"--pbkdf-force-iterations 1000 --key-file - {VM_DATA_DISK}", input=key)  # fmt: skip
    assert fmt.returncode == 0, fmt.stderr
    opened = ssh(paths, host, f"cryptsetup open --key-file - {VM_DATA_DISK} labtest && "
                 "test -b /dev/mapper/labtest && cryptsetup status labtest", input=key)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "type:    LUKS2" in opened.stdout
    wrong = ssh(paths, host, f"cryptsetup open --test-passphrase --key-file - {VM_DATA_DISK}",
                input="not-the-key")  # fmt: skip
    assert wrong.returncode != 0
    assert ssh(paths, host, "cryptsetup close labtest").returncode == 0


def test_usb_stick_is_attached(vm_lab: Lab) -> None:
    paths, result = vm_lab
    host = result.plan.host("sgm-a01")
    out = ssh(paths, host, "cat /sys/bus/usb/devices/*/product 2>/dev/null; lsblk -dn -o NAME,TRAN")
    assert "QEMU USB HARDDRIVE" in out.stdout, out.stdout
    assert any(
        line.split()[-1] == "usb" for line in out.stdout.splitlines() if len(line.split()) == 2
    )


def test_kernel_controls_fail_on_an_unprovisioned_vm(vm_lab: Lab, tmp_path: Path) -> None:
    """On a VM the kernel-level controls are checked for real, so they can fail."""
    paths, result = vm_lab
    target = Target(
        inventory=paths.inventory / "hosts.yml", campus=result.plan.campus,
        spec_sha256="0" * 64, controls=("CP-USB-01", "CP-AUD-01", "CP-VOL-01"), workers=1,
    )  # fmt: skip
    run = run_checks(target, tmp_path / "junit.xml")
    why = {r.control: (r.status, r.message) for r in run.results}
    assert (
        why["CP-USB-01"][0] == "fail" and "modprobe would load usb-storage" in why["CP-USB-01"][1]
    )
    assert (
        why["CP-AUD-01"] == ("fail", why["CP-AUD-01"][1])
        and "auditd is not running" in why["CP-AUD-01"][1]
    )
    assert why["CP-VOL-01"][0] == "fail" and "no open LUKS mapping" in why["CP-VOL-01"][1]
