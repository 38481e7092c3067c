"""USB: no USB storage device can appear, and nothing mounts removable media by itself."""

from __future__ import annotations

import re
from typing import Any

from campus_provision.checks.conftest import (
    Evidence,
    family_enabled,
    not_applicable,
    probe_failed,
    unit_states,
)

MODULES = ("usb-storage", "uas")
AGENT = re.compile(r"udiskie|automount|gvfs-udisks2-vo.*")


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
    # The listing proves itself: it must show the initramfs's own /init, and lsinitramfs
    # must exit 0; a missing tool or initrd is an error, never "no usb-storage in it".
    initramfs = evidence.run(
        '{ lsinitramfs "/boot/initrd.img-$(uname -r)"; echo "lsinitramfs exit $?"; } 2>&1'
        " | grep -E '(^|/)init$|usb-storage|^lsinitramfs exit |No such file|not found'"
    )
    entries = initramfs.stdout.splitlines()
    if any("usb-storage" in e for e in entries):
        problems.append("the initramfs still carries usb-storage (update-initramfs -u and reboot)")
    assert not problems, "; ".join(problems)
    if loaded.rc not in (0, 1):
        probe_failed(f"/proc/modules could not be read (grep exit {loaded.rc})")
    if disks.rc != 0 or not disks.stdout.strip():
        probe_failed(f"lsblk listed no disk at all, not even the PC's own (exit {disks.rc})")
    if "lsinitramfs exit 0" not in entries or "init" not in entries:
        probe_failed("lsinitramfs could not list the running kernel's initramfs (no /init seen)")


def test_CP_USB_02_automount_is_off(
    host: Any, hostvars: dict[str, Any], evidence: Evidence
) -> None:
    family_enabled(hostvars, "USB")
    problems = []
    for unit, (active, enabled) in unit_states(
        evidence, ("udisks2.service", "autofs.service")
    ).items():
        if active == "active" or enabled == "enabled":
            problems.append(f"{unit} is {active}, {enabled or 'not installed'}")
    listing = evidence.run("ps -eo pid=,comm=")
    processes = [line.split(None, 1) for line in listing.stdout.splitlines() if line.strip()]
    if listing.rc != 0 or not any(p[0] == "1" for p in processes):
        probe_failed(f"ps does not list PID 1 (exit {listing.rc})")
    agents = [" ".join(p) for p in processes if AGENT.fullmatch(p[-1]) is not None]
    if agents:
        problems.append(f"automount agents running: {'; '.join(agents)}")
    if not problems:
        evidence.note("no automounter enabled or running")
    assert not problems, "; ".join(problems)
