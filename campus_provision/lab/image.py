"""The lab's Debian 12 image: one generic base rootfs, and a bootable VM disk made from it.

Every lab host boots the same image; what makes it one host (name, address, machine id,
SSH keys) is a *seed* written by :func:`write_seed`. Containers get the seed in their
overlay's upper directory; VMs get it on a small disk labelled ``CPLSEED``
(:func:`make_seed_disk`) that ``campus-lab-seed.service`` in the image copies onto ``/``
early at boot, before networking and sshd.

Images are cached under ``images_dir/<key>/`` where the key hashes everything that
changes their content (:func:`image_key`). Builds happen under a temporary name beside
the final one and are renamed into place, so a killed build never leaves half an image
under the final name; leftovers are removed by the next call. A lock file per key lets
parallel callers (``pytest -n 2``, two ``lab up``) share one build.

Everything that chroots or mounts runs in a private mount and PID namespace
(``unshare``) that dies with the process: a crash or a SIGKILL cannot leave a mount
behind on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from campus_provision.errors import CampusProvisionError
from campus_provision.lab.seed import HostSeed

SUITE = "bookworm"
ARCH = "amd64"
VARIANT = "minbase"
# The mirror this machine's apt uses; debootstrap talks to nothing else.
MIRROR = "http://deb.debian.org/debian"

# A generic PC: systemd as PID 1, sshd, python3 for Ansible, nftables for the egress
# policy, a kernel + initramfs-tools for VMs, cryptsetup-bin for LUKS volumes. Not here:
# systemd-resolved (7 s of VM boot under TCG), auditd and usbutils (the roles install
# what they need from the campus mirror, as on a real PC).
BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "udev",
    "kmod",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "nftables",
    "procps",
    "iputils-ping",
    "e2fsprogs",
    "cryptsetup-bin",
    "linux-image-amd64",
    "initramfs-tools",
    "ca-certificates",
)

# Bump whenever the prep of the rootfs, the seed unit/script or the VM disk layout
# changes: it is part of the image key, so old caches are not reused.
PREP_VERSION = 1

SEED_LABEL = "CPLSEED"
SEED_TREE = "root-overlay"  # on the seed disk: this directory is copied onto /
SEED_DISK_BYTES = 8 * 2**20
# Upper bound for udev to show the seed disk's by-label link; it normally takes well
# under a second, but TCG is slow and a missing disk must not stall boot for long.
SEED_WAIT_SECONDS = 20

VM_DISK_BYTES = 4 * 2**30
SECTOR_BYTES = 512
PARTITION_START_SECTOR = 2048  # 1 MiB: the gap before it holds GRUB's core.img
VM_ROOT_LABEL = "campus-root"
VM_INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")
GRUB_I386_PC = Path("/usr/lib/grub/i386-pc")
GRUB_CORE_MODULES = (
    "biosdisk",
    "part_msdos",
    "ext2",
    "normal",
    "linux",
    "configfile",
    "search",
    "search_fs_uuid",
    "echo",
    "serial",
    "terminal",
    "test",
    "gzio",
)

DEBOOTSTRAP_TIMEOUT = 1800.0  # 105-120 s measured here; a slow mirror gets 30 min
INITRAMFS_TIMEOUT = 600.0
STEP_TIMEOUT = 600.0  # cp, mkfs, grub-mkimage: seconds each here
LOCK_TIMEOUT = 2400.0  # longer than a whole build, so a waiter outlives the builder

ProgressFn = Callable[[str], None]

_TMP_MARK = ".tmp-"  # every temporary name under images_dir/<key>/ contains this
# Host tools and the Debian package each comes from (named in the error if missing).
_TOOLS = {
    "debootstrap": "debootstrap",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "chroot": "coreutils",
    "cp": "coreutils",
    "umount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
    "grub-mkimage": "grub-common",
    "ssh-keygen": "openssh-client",
}
# Children get a fixed, minimal environment: a caller's TMPDIR or locale must not leak
# into a chroot where they do not exist.
_BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class ImageError(CampusProvisionError):
    """Raised when a lab image or seed cannot be built.

    Not root, a missing host tool (the message names its Debian package), debootstrap
    failing (the message ends with its last lines and the full log's path), a step of
    the VM disk build failing, another build holding the lock for too long, or a seed
    whose values cannot be written safely into config files. Exit code 1.
    """


@dataclass(frozen=True)
class Image:
    """A cached lab image; ``built``/``seconds`` describe the call that returned it."""

    key: str
    rootfs: Path
    vm_disk: Path | None
    built: bool
    seconds: float


def image_key() -> str:
    """16 hex digits naming an image by everything that changes its content."""
    h = hashlib.sha256()
    for part in (SUITE, ARCH, VARIANT, ",".join(BASE_PACKAGES), f"prep-{PREP_VERSION}"):
        h.update(part.encode())
        h.update(b"\0")  # so ("ab", "c") and ("a", "bc") differ
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- base rootfs


def ensure_base(
    images_dir: Path, *, progress: ProgressFn | None = None, rebuild: bool = False
) -> Image:
    """Return the base rootfs for :func:`image_key`, building it first if needed.

    ``rebuild`` replaces a cached image (and its VM disk); only do that with the lab
    down, since running containers and VMs use the old files.
    """
    say = progress or _quiet
    started = time.monotonic()
    _require_root()
    key = image_key()
    key_dir = images_dir / key
    rootfs = key_dir / "rootfs"
    with _locked(images_dir, key, say):
        _remove_stale(key_dir)
        if rootfs.is_dir() and not rebuild:
            return Image(key, rootfs, _vm_disk_if_built(key_dir), False, _since(started))
        say(f"image {key}: building the base rootfs ({SUITE}, {len(BASE_PACKAGES)} packages)")
        tmp = key_dir / f".rootfs{_TMP_MARK}{os.getpid()}"
        try:
            _debootstrap(tmp, images_dir / f"{key}.log", say)
            say("prep: generic identity, networkd, sshd host keys, seed unit")
            _prep_rootfs(tmp)
            _install_rootfs(tmp, rootfs, key_dir)
        except BaseException:
            _remove_tree(tmp)
            raise
    seconds = _since(started)
    say(f"image {key}: base rootfs built in {seconds:.0f} s")
    return Image(key, rootfs, None, True, seconds)


def _install_rootfs(tmp: Path, rootfs: Path, key_dir: Path) -> None:
    """Rename the finished rootfs into place; an old one (rebuild) goes, with its disk."""
    if rootfs.exists():
        old = key_dir / f".rootfs.old{_TMP_MARK}{os.getpid()}"
        rootfs.rename(old)
        (key_dir / "disk.raw").unlink(missing_ok=True)  # made from the old rootfs
        tmp.rename(rootfs)
        _remove_tree(old)
    else:
        tmp.rename(rootfs)


def _debootstrap(target: Path, log: Path, say: ProgressFn) -> None:
    """Run debootstrap into ``target``; stream its output to ``log`` and ``say``."""
    debootstrap = _tool("debootstrap")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(mode=0o755)
    argv = _contained(
        [
            debootstrap,
            f"--variant={VARIANT}",
            f"--arch={ARCH}",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(target),
            MIRROR,
        ]
    )
    env = dict(_BASE_ENV, DEBIAN_FRONTEND="noninteractive")
    env.update({k: v for k, v in os.environ.items() if k in _PROXY_VARS})
    parser = _DebootstrapProgress(target, say)
    tail: list[str] = []
    expired = threading.Event()
    with log.open("w", encoding="utf-8") as out:
        out.write(f"# {' '.join(argv)}\n")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        )

        def expire() -> None:
            expired.set()
            proc.kill()

        # Reading blocks while debootstrap is silent; the timer bounds the whole run.
        watchdog = threading.Timer(DEBOOTSTRAP_TIMEOUT, expire)
        watchdog.start()
        try:
            assert proc.stdout is not None  # noqa: S101 - stdout=PIPE above
            for line in proc.stdout:
                out.write(line)
                text = line.rstrip()
                if text:
                    tail = [*tail[-2:], text]
                    parser.feed(text)
            rc = proc.wait(timeout=30)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        if rc != 0:
            _append_inner_log(target, out)
    if rc != 0:
        why = f"timed out after {DEBOOTSTRAP_TIMEOUT:.0f} s" if expired.is_set() else f"exit {rc}"
        raise ImageError(f"debootstrap failed ({why}): {' | '.join(tail)}; full log: {log}")


def _append_inner_log(target: Path, out: TextIO) -> None:
    """debootstrap keeps its detailed log inside the target; keep it before cleanup."""
    inner = target / "debootstrap" / "debootstrap.log"
    if inner.is_file():
        out.write(f"\n# ---- {inner} ----\n")
        out.write(inner.read_text(encoding="utf-8", errors="replace"))


class _DebootstrapProgress:
    """Turns debootstrap's ``I:`` lines into a few short progress lines.

    Totals for extracting/unpacking/configuring come from the package lists debootstrap
    writes into the target once downloads are done; while downloading, only a count.
    """

    _PKG_FETCH = re.compile(r"^I: (Retrieving|Validating) (\S+) \S+$")
    _PKG_INSTALL = re.compile(r"^I: (Extracting|Unpacking|Configuring) (\S+)\.\.\.$")

    def __init__(self, target: Path, say: ProgressFn) -> None:
        self.target = target
        self.say = say
        self.seen: dict[str, set[str]] = {}
        self.last_verb = ""
        self.announced: set[str] = set()

    def feed(self, line: str) -> None:
        """Consume one output line of debootstrap."""
        if m := self._PKG_FETCH.match(line):
            self._count("retrieving", m.group(2), None)
        elif m := self._PKG_INSTALL.match(line):
            verb = m.group(1).lower()
            self._count(verb, m.group(2), self._total(verb))
        elif line.startswith("I: Retrieving InRelease"):
            self._once("debootstrap: fetching the package index")
        elif line.startswith("I: Resolving dependencies"):
            self._once("debootstrap: resolving dependencies")
        elif line.startswith("I: Base system installed successfully"):
            self.say("debootstrap: base system installed")
        elif line.startswith(("W: ", "E: ")):
            self.say(f"debootstrap: {line}")

    def _once(self, text: str) -> None:
        if text not in self.announced:
            self.announced.add(text)
            self.say(text)

    def _count(self, verb: str, package: str, total: int | None) -> None:
        names = self.seen.setdefault(verb, set())
        if package in names:
            return
        names.add(package)
        n = len(names) if total is None else min(len(names), total)
        # One line per phase change, then every tenth package: enough to see it move.
        if verb != self.last_verb or n % 10 == 0 or n == total:
            self.last_verb = verb
            if total is None:
                self.say(f"debootstrap: {verb} packages ({n} so far)")
            else:
                self.say(f"debootstrap: {verb} {n}/{total} packages")

    def _total(self, verb: str) -> int | None:
        required = self._listed("required")
        if verb == "extracting":  # the first stage extracts only the required set
            return required
        base = self._listed("base")
        return None if required is None or base is None else required + base

    def _listed(self, name: str) -> int | None:
        try:
            return len((self.target / "debootstrap" / name).read_text().split())
        except OSError:
            return None


# The seed unit: copies the seed disk's tree onto / before networkd and sshd start.
_SEED_SCRIPT = f"""#!/bin/sh
# campus-lab-seed: give this generic lab image its host identity (name, address,
# machine id, SSH keys) from the {SEED_LABEL} disk. Written by campus-provision.
set -eu
dev=/dev/disk/by-label/{SEED_LABEL}
mnt=/run/campus-lab-seed
# udev makes the by-label link shortly after coldplug: wait for it, but bounded.
if ! udevadm wait --timeout={SEED_WAIT_SECONDS} "$dev"; then
    echo "campus-lab-seed: no seed disk $dev after {SEED_WAIT_SECONDS} s" >&2
    exit 1
fi
mkdir -p "$mnt"
mount -t ext4 -o ro,nodev,nosuid,noexec "$dev" "$mnt"
trap 'umount "$mnt" && rmdir "$mnt"' EXIT
src="$mnt/{SEED_TREE}"
if [ ! -d "$src" ]; then
    echo "campus-lab-seed: $dev has no /{SEED_TREE}" >&2
    exit 1
fi
# The image's machine-id is empty, so PID 1 runs on a transient id bind-mounted read-only
# over /etc/machine-id. Uncover the real file so the seed's id lands on disk: it is this
# host's id from the next boot on (and systemd-machine-id-commit has nothing to commit).
if mountpoint -q /etc/machine-id; then
    umount /etc/machine-id
fi
# Owners: root, whoever made the seed disk.
cp -R --preserve=mode,timestamps --no-preserve=ownership "$src/." /
# PID 1 set the kernel hostname from /etc/hostname before this ran.
cat /etc/hostname > /proc/sys/kernel/hostname
echo "campus-lab-seed: identity applied, hostname $(cat /etc/hostname)"
"""

_SEED_UNIT = f"""[Unit]
Description=Lab host identity from the {SEED_LABEL} seed disk
# Early-boot unit: no default dependencies, explicit order instead.
DefaultDependencies=no
# Containers get the same files in their overlay and have neither seed disk nor udev.
ConditionVirtualization=!container
After=systemd-udevd.service systemd-udev-trigger.service local-fs.target
Before=systemd-networkd.service network-pre.target ssh.service
Before=systemd-machine-id-commit.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/campus-lab-seed
TimeoutStartSec={SEED_WAIT_SECONDS + 40}
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=sysinit.target
"""

# sshd -t (the unit's own ExecStartPre) fails without host keys, so generate first.
_SSH_DROPIN = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""

_GENERIC_HOSTS = """127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""

# What a usable base must contain; a missing one means the package list is wrong.
_REQUIRED_IN_ROOTFS = (
    "usr/bin/python3",
    "usr/sbin/sshd",
    "usr/sbin/nft",
    "usr/bin/udevadm",
    "usr/sbin/update-initramfs",
    "usr/lib/systemd/system/systemd-networkd.service",
    "usr/lib/systemd/system/ssh.service",
)


def _prep_rootfs(root: Path) -> None:
    """Make the fresh debootstrap tree a generic lab image with no host identity."""
    missing = [p for p in _REQUIRED_IN_ROOTFS if not (root / p).exists()]
    if missing:
        raise ImageError(f"the debootstrap tree lacks {', '.join(missing)}; check BASE_PACKAGES")
    etc = root / "etc"
    # Identity comes from the seed: no host keys, no machine id (empty = first boot).
    for hostkey in (etc / "ssh").glob("ssh_host_*"):
        hostkey.unlink()
    _write(etc / "machine-id", "", 0o444)
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    _write(etc / "hostname", "localhost\n", 0o644)
    _write(etc / "hosts", _GENERIC_HOSTS, 0o644)
    # debootstrap copies the build machine's resolv.conf; lab hosts have no DNS of ours.
    _write(etc / "resolv.conf", "# campus lab: no resolver configured in the image\n", 0o644)
    units = etc / "systemd/system"
    _link(units / "multi-user.target.wants/systemd-networkd.service", _lib_unit("networkd"))
    _link(units / "sockets.target.wants/systemd-networkd.socket", _lib_unit("networkd", "socket"))
    # Nothing waits for "online" (it would stall boot for 2 min without a link).
    _link(units / "systemd-networkd-wait-online.service", "/dev/null")
    # systemd 252 does not treat an empty machine-id as a first boot, but if a later
    # change made it one, the firstboot wizard would wait on a console nobody reads.
    _link(units / "systemd-firstboot.service", "/dev/null")
    _write(units / "ssh.service.d/hostkeys.conf", _SSH_DROPIN, 0o644)
    _write(root / "usr/local/sbin/campus-lab-seed", _SEED_SCRIPT, 0o755)
    _write(units / "campus-lab-seed.service", _SEED_UNIT, 0o644)
    _link(
        units / "sysinit.target.wants/campus-lab-seed.service",
        "/etc/systemd/system/campus-lab-seed.service",
    )
    # Downloaded .debs, apt's caches and the index of a mirror lab hosts cannot reach are
    # dead weight in every copy; the campus apt role fetches its own index.
    apt_junk = [
        *(root / "var/cache/apt/archives").glob("*.deb"),
        *(root / "var/cache/apt").glob("*.bin"),
        *(p for p in (root / "var/lib/apt/lists").iterdir() if p.is_file() and p.name != "lock"),
    ]
    for junk in apt_junk:
        junk.unlink()
    root.chmod(0o755)


def _lib_unit(name: str, kind: str = "service") -> str:
    return f"/lib/systemd/system/systemd-{name}.{kind}"


# --------------------------------------------------------------------------- VM disk


def ensure_vm_disk(images_dir: Path, image: Image, *, progress: ProgressFn | None = None) -> Image:
    """Return ``image`` with ``vm_disk`` set: a bootable raw disk made from its rootfs.

    MBR with one bootable ext4 partition at 1 MiB (filesystem UUID derived from the key),
    GRUB for BIOS in the MBR gap, a small initramfs (virtio + ext4 only), serial console.
    """
    say = progress or _quiet
    started = time.monotonic()
    _require_root()
    key_dir = images_dir / image.key
    disk = key_dir / "disk.raw"
    with _locked(images_dir, image.key, say):
        _remove_stale(key_dir)
        if disk.is_file():
            return replace(image, vm_disk=disk, built=False, seconds=_since(started))
        if not image.rootfs.is_dir():
            raise ImageError(f"no base rootfs at {image.rootfs}; call ensure_base first")
        tools = {t: _tool(t) for t in ("cp", "chroot", "mkfs.ext4", "sfdisk", "grub-mkimage")}
        log = images_dir / f"{image.key}.log"
        tree = key_dir / f".vm-tree{_TMP_MARK}{os.getpid()}"
        tmp_disk = key_dir / f".disk.raw{_TMP_MARK}{os.getpid()}"
        try:
            # A copy, not an overlay mount: nothing to unmount, and the shared rootfs
            # (lowerdir of running containers) is never written.
            say(f"vm-disk: copying the rootfs of image {image.key}")
            _run([tools["cp"], "-a", "--reflink=auto", str(image.rootfs), str(tree)], log=log)
            fs_uuid = vm_fs_uuid(image.key)
            kver = _kernel_version(tree)
            _write_vm_files(tree, fs_uuid)
            say(f"vm-disk: initramfs for {kver} (modules: {' '.join(VM_INITRAMFS_MODULES)})")
            _run(
                _contained(
                    [tools["chroot"], str(tree), "update-initramfs", "-u", "-k", kver],
                    proc=tree / "proc",
                ),
                log=log,
                timeout=INITRAMFS_TIMEOUT,
            )
            say(f"vm-disk: {VM_DISK_BYTES // 2**30} GiB disk, MBR, ext4 at 1 MiB (mkfs.ext4 -d)")
            _make_disk(tmp_disk, tree, fs_uuid=fs_uuid, key=image.key, tools=tools, log=log)
            say("vm-disk: GRUB (i386-pc) into the MBR gap")
            _install_grub(tmp_disk, key_dir, tools["grub-mkimage"], log)
            tmp_disk.rename(disk)
        finally:
            _remove_tree(tree)
            tmp_disk.unlink(missing_ok=True)
    seconds = _since(started)
    say(f"vm-disk: {disk} built in {seconds:.0f} s")
    return replace(image, vm_disk=disk, built=True, seconds=seconds)


def vm_fs_uuid(key: str) -> str:
    """The VM root filesystem's UUID: fixed per image key, so grub.cfg and fstab agree."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"campus-provision:lab-image:{key}:root"))


def _vm_disk_if_built(key_dir: Path) -> Path | None:
    disk = key_dir / "disk.raw"
    return disk if disk.is_file() else None


def _kernel_version(root: Path) -> str:
    """The one installed kernel's version; the /vmlinuz and /initrd.img links must name it."""
    versions = sorted(p.name for p in (root / "usr/lib/modules").iterdir() if p.is_dir())
    links_ok = len(versions) == 1 and all(
        (root / link).is_symlink()
        and (root / link).readlink() == Path(f"boot/{link}-{versions[0]}")
        for link in ("vmlinuz", "initrd.img")
    )
    if not links_ok:
        raise ImageError(
            f"expected one kernel and /vmlinuz, /initrd.img linking to it in {root}: {versions}"
        )
    return versions[0]


def _write_vm_files(tree: Path, fs_uuid: str) -> None:
    """The files only a VM has: fstab, a small initramfs config, GRUB's config and modules."""
    _write(tree / "etc/fstab", f"UUID={fs_uuid}  /  ext4  errors=remount-ro  0  1\n", 0o644)
    conf = tree / "etc/initramfs-tools/initramfs.conf"
    # MODULES=list: only what a virtio/ext4 root needs. With the default (most) an
    # update-initramfs inside a TCG guest takes minutes instead of seconds.
    # FSTYPE: the fsck hook cannot probe the root device from a chroot, so name it (then
    # the initramfs checks / before mounting it, as Debian's does). COMPRESS: zstd is not
    # in the image; saying gzip spares a warning on every update-initramfs.
    settings = {"MODULES": "list", "FSTYPE": "ext4", "COMPRESS": "gzip"}
    text = conf.read_text()
    for name, value in settings.items():
        text, found = re.subn(rf"(?m)^{name}=.*$", f"{name}={value}", text)
        if not found:
            text += f"{name}={value}\n"
    _write(conf, text, 0o644)
    _write(tree / "etc/initramfs-tools/modules", "\n".join(VM_INITRAMFS_MODULES) + "\n", 0o644)
    grub = tree / "boot/grub"
    grub.mkdir(parents=True, exist_ok=True)
    _write(grub / "grub.cfg", _grub_cfg(fs_uuid), 0o644)
    # Modules core.img loads lazily from the prefix must come from the same GRUB build.
    shutil.copytree(GRUB_I386_PC, grub / "i386-pc", dirs_exist_ok=True)


def _grub_cfg(fs_uuid: str) -> str:
    # /vmlinuz and /initrd.img are the symlinks the kernel package maintains: a kernel
    # upgraded inside the VM boots next time, as on a real PC (GRUB follows symlinks).
    return f"""serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set default=0
menuentry "campus lab ({SUITE})" {{
    search --no-floppy --fs-uuid --set=root {fs_uuid}
    linux /vmlinuz root=UUID={fs_uuid} ro console=ttyS0,115200n8
    initrd /initrd.img
}}
"""


def _make_disk(
    disk: Path, tree: Path, *, fs_uuid: str, key: str, tools: dict[str, str], log: Path
) -> None:
    """Sparse file, MBR with one bootable Linux partition, ext4 filled from ``tree``."""
    part_sectors = VM_DISK_BYTES // SECTOR_BYTES - PARTITION_START_SECTOR
    with disk.open("wb") as fh:
        fh.truncate(VM_DISK_BYTES)
    table = (
        "label: dos\n"
        f"label-id: 0x{key[:8]}\n"  # fixed disk id per image, like the fs UUID
        f"start={PARTITION_START_SECTOR}, size={part_sectors}, type=83, bootable\n"
    )
    _run(
        [tools["sfdisk"], "-q", "--no-reread", "--no-tell-kernel", str(disk)], log=log, stdin=table
    )
    # mkfs.ext4 writes the filesystem straight into the partition's byte range:
    # no loop device, no mount.
    _run(
        [
            tools["mkfs.ext4"],
            "-q",
            "-F",
            "-L",
            VM_ROOT_LABEL,
            "-U",
            fs_uuid,
            "-E",
            f"offset={PARTITION_START_SECTOR * SECTOR_BYTES}",
            "-d",
            str(tree),
            str(disk),
            f"{part_sectors * SECTOR_BYTES // 1024}k",
        ],
        log=log,
    )


def _install_grub(disk: Path, key_dir: Path, grub_mkimage: str, log: Path) -> None:
    """GRUB for BIOS without grub-install: core.img in sectors 1.., boot.img's code in 0."""
    boot_img = GRUB_I386_PC / "boot.img"
    if not boot_img.is_file():
        raise ImageError(f"missing {boot_img} (Debian package grub-pc-bin); run 'make lab-deps'")
    core = key_dir / f".core.img{_TMP_MARK}{os.getpid()}"
    try:
        _run(
            [
                grub_mkimage,
                "-O",
                "i386-pc",
                "-o",
                str(core),
                "-p",
                "(hd0,msdos1)/boot/grub",
                *GRUB_CORE_MODULES,
            ],
            log=log,
        )
        core_bytes = core.read_bytes()
    finally:
        core.unlink(missing_ok=True)
    gap = (PARTITION_START_SECTOR - 1) * SECTOR_BYTES
    if len(core_bytes) > gap:
        raise ImageError(f"GRUB core.img is {len(core_bytes)} bytes, the MBR gap holds {gap}")
    with disk.open("r+b") as fh:
        # Only the 440 bytes of boot code: the disk id and partition table stay.
        fh.write(boot_img.read_bytes()[:440])
        fh.seek(SECTOR_BYTES)
        fh.write(core_bytes)


# --------------------------------------------------------------------------- seeds

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", re.IGNORECASE)
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")


def write_seed(root: Path, seed: HostSeed) -> None:
    """Write one host's identity files under ``root`` (idempotent).

    ``root`` is a container's overlay upper dir or the tree of a VM seed disk. SSH host
    keys are generated once and kept on later calls, so a host keeps its keys.
    """
    _check_seed(seed)
    # Directory modes are set explicitly (not left to the umask): in an overlay the upper
    # dir's modes win over the image's, so /root must stay 0700 and / 0755.
    _mkdir(root, 0o755)
    for d in ("etc", "etc/ssh", "etc/systemd", "etc/systemd/network"):
        _mkdir(root / d, 0o755)
    for d in ("root", "root/.ssh"):
        _mkdir(root / d, 0o700)
    etc = root / "etc"
    _write(etc / "hostname", f"{seed.hostname}\n", 0o644)
    _write(etc / "hosts", f"{_GENERIC_HOSTS}127.0.1.1\t{seed.hostname}\n", 0o644)
    _write(etc / "machine-id", f"{seed.machine_id}\n", 0o444)
    network = (
        f"[Match]\nMACAddress={seed.mac.lower()}\n\n"
        f"[Network]\nAddress={seed.address.with_prefixlen}\nGateway={seed.gateway}\n"
    )
    _write(etc / "systemd/network/10-lab.network", network, 0o644)
    keys = (
        seed.authorized_keys if seed.authorized_keys.endswith("\n") else seed.authorized_keys + "\n"
    )
    _write(root / "root/.ssh/authorized_keys", keys, 0o600)
    # -A makes only the key types that are missing: a second call changes nothing.
    _run([_tool("ssh-keygen"), "-q", "-A", "-f", str(root)])


def _check_seed(seed: HostSeed) -> None:
    """Refuse values that would break (or inject lines into) the files they go into."""
    problems = []
    if not _HOSTNAME.match(seed.hostname):
        problems.append(f"hostname {seed.hostname!r} is not a DNS label")
    if not _MAC.match(seed.mac):
        problems.append(f"MAC {seed.mac!r} is not aa:bb:cc:dd:ee:ff")
    if not _MACHINE_ID.match(seed.machine_id) or set(seed.machine_id) == {"0"}:
        problems.append("machine_id must be 32 lowercase hex digits, not all zero")
    if seed.gateway not in seed.address.network:
        problems.append(f"gateway {seed.gateway} is outside {seed.address.network}")
    if not seed.authorized_keys.strip() or "\0" in seed.authorized_keys:
        problems.append("authorized_keys is empty: nobody could log in")
    if problems:
        raise ImageError(f"seed for {seed.hostname!r}: {'; '.join(problems)}")


def make_seed_disk(dest: Path, seed: HostSeed) -> None:
    """Write a small ext4 image labelled CPLSEED holding ``/root-overlay/`` = the seed."""
    mkfs = _tool("mkfs.ext4")
    _check_seed(seed)
    tmp_disk = dest.with_name(f".{dest.name}{_TMP_MARK}{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="campus-seed-") as tmp:
        tree = Path(tmp) / "tree"
        _mkdir(tree, 0o755)
        write_seed(tree / SEED_TREE, seed)
        try:
            with tmp_disk.open("wb") as fh:
                fh.truncate(SEED_DISK_BYTES)
            # Read-only at boot: no journal needed; root_owner so / on it is root's.
            _run(
                [
                    mkfs,
                    "-q",
                    "-F",
                    "-L",
                    SEED_LABEL,
                    "-O",
                    "^has_journal",
                    "-m",
                    "0",
                    "-E",
                    "root_owner=0:0",
                    "-d",
                    str(tree),
                    str(tmp_disk),
                ]
            )
            tmp_disk.rename(dest)
        finally:
            tmp_disk.unlink(missing_ok=True)


# --------------------------------------------------------------------------- helpers


def _quiet(_line: str) -> None:
    """The default progress sink."""


def _since(started: float) -> float:
    return time.monotonic() - started


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ImageError(
            "building lab images needs root (debootstrap, chroot, device nodes); run as root"
        )


def _tool(name: str) -> str:
    """Absolute path of a host tool, or an ImageError naming its Debian package."""
    search = os.pathsep.join([os.environ.get("PATH", ""), _BASE_ENV["PATH"]])
    found = shutil.which(name, path=search)
    if found is None:
        package = _TOOLS.get(name, name)
        raise ImageError(
            f"missing host tool {name} (Debian package {package}); run 'make lab-deps'"
        )
    return found


def _contained(argv: Sequence[str], *, proc: Path | None = None) -> list[str]:
    """Wrap ``argv`` so it runs in private mount + PID namespaces that die with us.

    Mounts it makes (debootstrap's /proc and /sys, our /proc for a chroot) vanish with
    the namespace, whatever happens. setpriv's parent-death signal kills unshare if we
    die, and --kill-child takes the whole PID namespace with it.
    """
    wrapper = [
        _tool("setpriv"),
        "--pdeathsig",
        "KILL",
        _tool("unshare"),
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
    ]
    if proc is not None:
        wrapper.append(f"--mount-proc={proc}")
    return [*wrapper, *argv]


def _run(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    timeout: float = STEP_TIMEOUT,
    stdin: str | None = None,
) -> str:
    """Run a command; its output goes to ``log`` (appended) and failures raise ImageError."""
    name = Path(argv[0]).name
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(_BASE_ENV),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageError(
            f"{name} did not finish within {timeout:.0f} s: {' '.join(argv)}"
        ) from None
    output = proc.stdout + proc.stderr
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"# {' '.join(argv)}  (exit {proc.returncode})\n{output}")
    if proc.returncode != 0:
        lines = [ln for ln in output.splitlines() if ln.strip()]
        detail = " | ".join(lines[-3:]) or f"exit {proc.returncode}"
        where = f"; full log: {log}" if log is not None else ""
        raise ImageError(f"{name} failed (exit {proc.returncode}): {detail}{where}")
    return proc.stdout


@contextlib.contextmanager
def _locked(images_dir: Path, key: str, say: ProgressFn) -> Iterator[None]:
    """Hold the image's lock; wait (bounded) while another process builds it."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with (images_dir / f"{key}.lock").open("a") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        waiting = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    say(f"image {key}: waiting for another build of it to finish")
                    waiting = True
                if time.monotonic() > deadline:
                    raise ImageError(
                        f"image {key}: another process held {fh.name} for {LOCK_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_stale(key_dir: Path) -> None:
    """Remove what a killed build left (we hold the lock, so nobody is building)."""
    if key_dir.is_dir():
        for entry in key_dir.iterdir():
            if entry.name.startswith(".") and _TMP_MARK in entry.name:
                _remove_tree(entry)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in our mount namespace, deepest first."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4]
        # mountinfo escapes space, tab, newline and backslash as octal.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a file or tree; never through a mount (a bind-mounted /dev would go too)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        mounts = _mounts_under(path)
        for point in mounts:
            subprocess.run([_tool("umount"), point], capture_output=True, timeout=30, check=False)
        left = _mounts_under(path)
        if left:
            raise ImageError(f"refusing to delete {path}: still mounted at {', '.join(left)}")
        shutil.rmtree(path)
    else:
        path.unlink()


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o7777 != mode:
        path.chmod(mode)


def _write(path: Path, text: str, mode: int) -> None:
    """Write a file atomically, or leave it alone if it already has this content and mode.

    Replacing (not writing through) matters inside an image tree: a symlink there may
    point at an absolute path that means something else on the build machine.
    """
    data = text.encode()
    with contextlib.suppress(OSError):
        if (
            not path.is_symlink()
            and path.read_bytes() == data
            and path.stat().st_mode & 0o7777 == mode
        ):
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link(path: Path, target: str) -> None:
    """Create or correct a symlink (unit enablement and masking inside the image)."""
    if path.is_symlink() and str(path.readlink()) == target:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)
