"""USB: no USB storage device can appear, and nothing mounts removable media by itself."""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable

MODULES = ("usb-storage", "uas")


def test_CP_USB_01_usb_storage_cannot_load(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    family_enabled(hostvars, "USB")
    problems = []
    for module in MODULES:
        plan = evidence.run(f"modprobe -n -v {module} 2>&1")
        if "install /bin/false" not in plan.stdout and "install /bin/true" not in plan.stdout:
            problems.append(f"modprobe would load {module} (no 'install {module} /bin/false')")
    if problems:
        assert not problems, "; ".join(problems)
    if is_container:
        not_applicable("modprobe is configured to refuse; proving it needs the PC's own kernel")
    loaded = evidence.run("grep -E '^(usb_storage|uas) ' /proc/modules")
    if loaded.rc == 0:
        problems.append(
            f"loaded now: {', '.join(ln.split()[0] for ln in loaded.stdout.splitlines())}"
        )
    disks = evidence.run("lsblk -dn -o NAME,TRAN")
    usb = [ln.split()[0] for ln in disks.stdout.splitlines() if ln.split()[-1:] == ["usb"]]
    if usb:
        problems.append(f"USB block devices present: {', '.join(usb)}")
    initramfs = evidence.run(
        "lsinitramfs /boot/initrd.img-$(uname -r) 2>/dev/null | grep -c usb-storage"
    )
    if initramfs.stdout.strip() not in ("", "0"):
        problems.append("the initramfs still carries usb-storage (update-initramfs -u and reboot)")
    assert not problems, "; ".join(problems)


def test_CP_USB_02_automount_is_off(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "USB")
    problems = []
    for unit in ("udisks2.service", "autofs.service"):
        active = evidence.run(f"systemctl is-active {unit}").stdout.strip()
        enabled = evidence.run(f"systemctl is-enabled {unit} 2>/dev/null").stdout.strip()
        if active == "active" or enabled == "enabled":
            problems.append(f"{unit} is {active}, {enabled or 'not installed'}")
    agents = evidence.run(
        "ps -eo pid=,comm= | grep -E ' (udiskie|automount|gvfs-udisks2-vo.*)$' || true"
    )
    if agents.stdout.strip():
        problems.append(f"automount agents running: {agents.stdout.strip()}")
    if not problems:
        evidence.note("no automounter enabled or running")
    assert not problems, "; ".join(problems)
