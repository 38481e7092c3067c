"""Workstations (and service hosts) as ``systemd-nspawn --boot`` containers.

Each container boots systemd as PID 1 on an overlay over the shared base rootfs, in a
network namespace of its own with a veth on the campus bridge. ``--keep-unit`` and
``--register=no`` because the machine's PID 1 is not systemd (no system bus); a cgroup
of its own per container because ``--keep-unit`` would otherwise put every container in
the caller's cgroup, where their systemd instances fight over the same unit cgroups.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from campus_provision.lab import net
from campus_provision.lab.image import write_seed
from campus_provision.lab.plan import LabHost
from campus_provision.lab.proc import pid_from, run, spawn, stop
from campus_provision.lab.seed import HostSeed
from campus_provision.lab.state import LabPaths


def mounted(path: Path) -> bool:
    """True if ``path`` is a mount point."""
    target = str(path)
    with Path("/proc/self/mountinfo").open() as fh:
        return any(line.split()[4] == target for line in fh)


def machine_name(paths: LabPaths, host: LabHost) -> str:
    return f"{paths.prefix}-{host.name}"


def pid_of(paths: LabPaths, host: LabHost) -> int | None:
    """The container's nspawn pid if it runs, else None."""
    return pid_from(paths.host_dir(host.name) / "nspawn.pid", paths.marker)


def start(paths: LabPaths, host: LabHost, rootfs: Path, seed: HostSeed) -> int:
    """Boot the container unless it runs already; return its pid."""
    existing = pid_of(paths, host)
    if existing is not None:
        return existing
    d = paths.host_dir(host.name)
    upper, work, merged = d / "upper", d / "work", d / "merged"
    for p in (upper, work, merged):
        p.mkdir(parents=True, exist_ok=True)
    write_seed(upper, seed)
    if not mounted(merged):
        opts = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)])
    ns = paths.host_ns(host.index)
    net.add_host_link(paths, host.index, host.mac, ns)
    # The container has a network namespace of its own, so its /proc/sys/net is its own
    # too: writable (nspawn mounts all of /proc/sys read-only otherwise), so the network
    # sysctls a role sets take effect there and SYS-01 can read them back. The kernel's
    # settings stay the host's, read-only.
    cmd = [
        "env", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network",
        "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
        f"--machine={machine_name(paths, host)}", f"--hostname={host.name}",
        "-D", str(merged), f"--network-namespace-path=/run/netns/{ns}",
        "--capability=CAP_NET_ADMIN", "--console=read-only",
    ]  # fmt: skip
    log = d / "console.log"
    log.unlink(missing_ok=True)
    return spawn(cmd, pidfile=d / "nspawn.pid", log=log, cgroups=paths.cgroup_dirs(host.name))


def stop_host(paths: LabPaths, host: LabHost) -> None:
    """Power the container off (SIGTERM is a clean poweroff for nspawn), then unplug it."""
    pid = pid_of(paths, host)
    if pid is not None:
        stop(pid, paths.marker, grace=15)
    merged = paths.host_dir(host.name) / "merged"
    for _ in range(20):
        if not mounted(merged):
            break
        if run(["umount", str(merged)], check=False) == "" and not mounted(merged):
            break
        time.sleep(0.1)
    if mounted(merged):
        run(["umount", "-l", str(merged)], check=False)
    net.delete_ns(paths.host_ns(host.index))
    net.forget_host(paths, host.address)
    for cg in paths.cgroup_dirs(host.name):
        remove_cgroup(cg)


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup tree bottom-up (cgroup files cannot be unlinked, only dirs removed)."""
    if not path.exists():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
