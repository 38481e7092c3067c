"""Workstations as QEMU VMs, where a kernel of the PC's own is needed.

LUKS/dm-crypt, usb-storage and auditd need the guest's own kernel. The VM boots the
shared disk image through its own GRUB, kernel and initramfs (so initramfs changes take
effect, as on a real PC), from a qcow2 overlay, with a data disk for dataset volumes, a
USB stick on an xHCI controller, and a seed disk that gives it its identity. TCG only:
KVM aborts or hangs on this kind of machine.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from campus_provision.lab import net
from campus_provision.lab.image import make_seed_disk
from campus_provision.lab.plan import LabHost
from campus_provision.lab.proc import alive, pid_from, run, spawn, stop
from campus_provision.lab.seed import HostSeed
from campus_provision.lab.state import LabPaths

DATA_DISK_SERIAL = "campus-data"
DATA_DISK_BYTES = 512 * 2**20
STICK_BYTES = 64 * 2**20
MEMORY_MB = 768


def pid_of(paths: LabPaths, host: LabHost) -> int | None:
    """The VM's qemu pid if it runs, else None."""
    return pid_from(paths.host_dir(host.name) / "qemu.pid", paths.marker)


def start(paths: LabPaths, host: LabHost, vm_disk: Path, seed: HostSeed) -> int:
    """Boot the VM unless it runs already; return its pid."""
    existing = pid_of(paths, host)
    if existing is not None:
        return existing
    d = paths.host_dir(host.name)
    d.mkdir(parents=True, exist_ok=True)
    overlay, data, stick, seed_img = (
        d / "disk.qcow2",
        d / "data.img",
        d / "stick.img",
        d / "seed.img",
    )
    if not overlay.exists():
        run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(vm_disk),
                str(overlay),
            ]
        )
    if not data.exists():
        with data.open("wb") as fh:
            fh.truncate(DATA_DISK_BYTES)
    if not stick.exists():
        with stick.open("wb") as fh:
            fh.truncate(STICK_BYTES)
        run(["mkfs.vfat", "-n", "CAMPUSSTICK", str(stick)])
    if not seed_img.exists():
        # Once per VM: the seed holds its SSH host keys, which the lab's known_hosts has
        # from the first boot on; a VM started again keeps them, as a PC switched back on.
        make_seed_disk(seed_img, seed)
    tap = net.add_tap(paths, host.index)
    console = d / "console.log"
    console.unlink(missing_ok=True)
    cmd = [
        "ip", "netns", "exec", paths.campus_ns,
        "qemu-system-x86_64", "-name", host.name, "-nodefaults", "-display", "none",
        "-no-user-config", "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max",
        "-smp", "2", "-m", str(MEMORY_MB),
        "-drive", f"file={overlay},format=qcow2,if=none,id=root",
        "-device", "virtio-blk-pci,drive=root,bootindex=0",
        "-drive", f"file={data},format=raw,if=none,id=data",
        "-device", f"virtio-blk-pci,drive=data,serial={DATA_DISK_SERIAL}",
        "-drive", f"file={seed_img},format=raw,if=none,id=seed,readonly=on",
        "-device", "virtio-blk-pci,drive=seed,serial=campus-seed",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={host.mac},romfile=",
        "-device", "qemu-xhci,id=xhci",
        "-drive", f"if=none,id=stick,file={stick},format=raw",
        "-device", "usb-storage,bus=xhci.0,drive=stick,removable=on",
        "-serial", f"file:{console}",
        "-qmp", f"unix:{d / 'qmp.sock'},server=on,wait=off",
    ]  # fmt: skip
    return spawn(cmd, pidfile=d / "qemu.pid", log=d / "qemu.log")


def _powerdown(qmp: Path) -> bool:
    """Ask the guest to shut down through QMP (an ACPI power button press)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(qmp))
            sock.recv(4096)
            for command in ("qmp_capabilities", "system_powerdown"):
                sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
                sock.recv(4096)
        return True
    except OSError:
        return False


def stop_host(paths: LabPaths, host: LabHost, *, grace: float = 45) -> None:
    """Clean power-off if the guest cooperates in time, else kill; then unplug the tap."""
    pid = pid_of(paths, host)
    if pid is not None and _powerdown(paths.host_dir(host.name) / "qmp.sock"):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(pid, paths.marker):
            time.sleep(0.2)
    if pid is not None:
        stop(pid, paths.marker, grace=5)
    if paths.campus_ns in net.namespaces():
        run(["ip", "-n", paths.campus_ns, "link", "del", f"tap{host.index}"], check=False)
    net.forget_host(paths, host.address)
