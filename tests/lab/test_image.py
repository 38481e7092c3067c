"""The lab image: a real debootstrap build, its generic prep, the VM disk, and seeds.

The image tests build (or reuse) the real cached image under the lab's state directory
(``$CAMPUS_LAB_STATE/images``, default ``/var/lib/campus-provision/lab/images``): a first
build takes about two minutes. Without root they fail with the reason; they never skip.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from campus_provision.lab import image
from campus_provision.lab.image import (
    PARTITION_START_SECTOR,
    SECTOR_BYTES,
    SEED_LABEL,
    SEED_TREE,
    Image,
    ImageError,
    ensure_base,
    ensure_vm_disk,
    image_key,
    make_seed_disk,
    vm_fs_uuid,
    write_seed,
)
from campus_provision.lab.seed import HostSeed

SEED = HostSeed(
    hostname="sgm-a01",
    mac="02:FE:00:01:00:0B",
    address=IPv4Interface("10.254.1.11/24"),
    gateway=IPv4Address("10.254.1.1"),
    authorized_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests lab",
    machine_id="0123456789abcdef0123456789abcdef",
)


def images_dir() -> Path:
    state = os.environ.get("CAMPUS_LAB_STATE")
    return Path(state) / "images" if state else Path("/var/lib/campus-provision/lab/images")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("image tests need root (debootstrap, chroot, device nodes): run them as root")


def debugfs(target: str, request: str) -> str:
    """Run one debugfs request read-only against an image (``file?offset=N`` for a partition)."""
    out = subprocess.run(
        ["/usr/sbin/debugfs", "-R", request, target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[Image, list[str]]]:
    require_root()
    lines: list[str] = []
    built = ensure_base(images_dir(), progress=lines.append)
    print(f"ensure_base: built={built.built} in {built.seconds:.1f} s ({built.rootfs})")
    yield built, lines


# ------------------------------------------------------------------ no root needed


def test_write_seed_files_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "upper"
    write_seed(root, SEED)
    etc = root / "etc"
    assert (etc / "hostname").read_text() == "sgm-a01\n"
    assert "127.0.1.1\tsgm-a01\n" in (etc / "hosts").read_text()
    assert (etc / "machine-id").read_text() == SEED.machine_id + "\n"
    assert (etc / "systemd/network/10-lab.network").read_text() == (
        "[Match]\nMACAddress=02:fe:00:01:00:0b\n\n"
        "[Network]\nAddress=10.254.1.11/24\nGateway=10.254.1.1\n"
    )
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == SEED.authorized_keys + "\n"

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert (mode(root), mode(etc), mode(root / "root")) == (0o755, 0o755, 0o700)
    assert (mode(root / "root/.ssh"), mode(keys), mode(etc / "machine-id")) == (0o700, 0o600, 0o444)
    hostkeys = sorted(p.name for p in (etc / "ssh").glob("ssh_host_*_key"))
    assert hostkeys == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key", "ssh_host_rsa_key"]
    assert all(mode(etc / "ssh" / k) == 0o600 for k in hostkeys)

    # Idempotent: a second run keeps the host keys and changes no file.
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    write_seed(root, SEED)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hostname", "pc1\nEvil=1", "not a DNS label"),
        ("mac", "02:fe:00:00:00", "MAC"),
        ("machine_id", "0" * 32, "machine_id"),
        ("gateway", IPv4Address("10.9.9.1"), "outside"),
        ("authorized_keys", " \n", "nobody could log in"),
    ],
)
def test_write_seed_refuses_values_that_break_config_files(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    bad = HostSeed(**{**SEED.__dict__, field: value})
    with pytest.raises(ImageError, match=message):
        write_seed(tmp_path / "upper", bad)
    assert not (tmp_path / "upper").exists()


def test_image_key_changes_with_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    key = image_key()
    assert len(key) == 16
    assert int(key, 16) >= 0
    assert image_key() == key
    monkeypatch.setattr(image, "BASE_PACKAGES", (*image.BASE_PACKAGES, "auditd"))
    assert image_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(image, "PREP_VERSION", image.PREP_VERSION + 1)
    assert image_key() != key


def test_ensure_base_refuses_without_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="needs root"):
        ensure_base(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_debootstrap_progress_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    parser = image._DebootstrapProgress(tmp_path, lines.append)
    (tmp_path / "debootstrap").mkdir()
    (tmp_path / "debootstrap/required").write_text("adduser apt base-files\n")
    (tmp_path / "debootstrap/base").write_text("python3 sudo\n")
    for line in [
        "I: Retrieving InRelease ",
        "I: Resolving dependencies of required packages...",
        "I: Retrieving adduser 3.134",
        "I: Validating adduser 3.134",
        "I: Retrieving apt 2.6.1",
        "I: Extracting adduser...",
        "I: Extracting apt...",
        "I: Extracting base-files...",
        "I: Unpacking required packages...",
        "I: Unpacking adduser...",
        "I: Configuring libc-bin...",
        "I: Configuring libc-bin...",
        "W: Failure trying to run: chroot foo",
        "I: Base system installed successfully.",
    ]:
        parser.feed(line)
    assert lines == [
        "debootstrap: fetching the package index",
        "debootstrap: resolving dependencies",
        "debootstrap: retrieving packages (1 so far)",
        "debootstrap: extracting 1/3 packages",
        "debootstrap: extracting 3/3 packages",
        "debootstrap: unpacking 1/5 packages",
        "debootstrap: configuring 1/5 packages",
        "debootstrap: W: Failure trying to run: chroot foo",
        "debootstrap: base system installed",
    ]


# ------------------------------------------------------------------ the real image


@pytest.mark.lab
@pytest.mark.slow
def test_base_rootfs_is_generic_and_complete(base: tuple[Image, list[str]]) -> None:
    img, lines = base
    root = img.rootfs
    assert img.key == image_key()
    assert root == images_dir() / img.key / "rootfs"
    for path in ("usr/bin/python3", "usr/sbin/sshd", "usr/sbin/nft", "usr/sbin/cryptsetup"):
        assert (root / path).is_file(), path
    assert list((root / "etc/ssh").glob("ssh_host_*")) == []
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert not (root / "root/.ssh/authorized_keys").exists()
    units = root / "etc/systemd/system"
    seed_link = units / "sysinit.target.wants/campus-lab-seed.service"
    assert seed_link.readlink() == Path("/etc/systemd/system/campus-lab-seed.service")
    unit = (units / "campus-lab-seed.service").read_text()
    assert "ConditionVirtualization=!container" in unit
    assert "Before=systemd-networkd.service network-pre.target ssh.service" in unit
    assert os.access(root / "usr/local/sbin/campus-lab-seed", os.X_OK)
    networkd = units / "multi-user.target.wants/systemd-networkd.service"
    assert networkd.readlink() == Path("/lib/systemd/system/systemd-networkd.service")
    assert (units / "systemd-networkd-wait-online.service").readlink() == Path("/dev/null")
    assert (
        "ExecStartPre=/usr/bin/ssh-keygen -A" in (units / "ssh.service.d/hostkeys.conf").read_text()
    )
    assert not (root / "usr/lib/systemd/system/systemd-resolved.service").exists()
    if img.built:  # the progress lines come from debootstrap's own output
        assert any(line.startswith("debootstrap: configuring") for line in lines)


@pytest.mark.lab
def test_second_call_reuses_the_image_quickly(base: tuple[Image, list[str]]) -> None:
    img, _ = base
    started = time.monotonic()
    again = ensure_base(images_dir())
    assert time.monotonic() - started < 1
    assert (again.built, again.rootfs, again.key) == (False, img.rootfs, img.key)
    assert again.seconds < 1


@pytest.mark.lab
def test_stale_temp_dir_of_a_killed_build_is_removed(base: tuple[Image, list[str]]) -> None:
    img, _ = base
    stale = img.rootfs.parent / ".rootfs.tmp-999999"
    (stale / "etc").mkdir(parents=True)
    (stale / "etc/half-written").write_text("killed here")
    again = ensure_base(images_dir())
    assert not stale.exists()
    assert again.rootfs.is_dir()


@pytest.mark.lab
def test_failed_debootstrap_is_one_line_with_its_log_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root()
    # A closed local port: fails at once, and no traffic leaves the machine.
    monkeypatch.setattr(image, "MIRROR", "http://127.0.0.1:9/debian")
    with pytest.raises(ImageError) as err:
        ensure_base(tmp_path)
    message = str(err.value)
    log = tmp_path / f"{image_key()}.log"
    assert message.startswith("debootstrap failed (exit 1): ")
    assert message.endswith(f"full log: {log}")
    assert "\n" not in message
    assert log.is_file()
    assert list((tmp_path / image_key()).iterdir()) == []


@pytest.mark.lab
@pytest.mark.slow
def test_vm_disk_is_a_bootable_mbr_disk_with_kernel_and_initrd(
    base: tuple[Image, list[str]],
) -> None:
    img, _ = base
    with_disk = ensure_vm_disk(images_dir(), img)
    disk = with_disk.vm_disk
    assert disk == images_dir() / img.key / "disk.raw"
    print(f"ensure_vm_disk: built={with_disk.built} in {with_disk.seconds:.1f} s")
    assert disk.stat().st_size == 4 * 2**30
    assert disk.stat().st_blocks * 512 < disk.stat().st_size  # sparse
    with disk.open("rb") as fh:
        mbr = fh.read(512)
    assert mbr[510:512] == b"\x55\xaa"
    assert mbr[:440] != bytes(440)  # GRUB's boot code

    table = json.loads(
        subprocess.run(
            ["/usr/sbin/sfdisk", "-J", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    [part] = table["partitions"]
    assert (part["start"], part["type"], part.get("bootable")) == (
        PARTITION_START_SECTOR,
        "83",
        True,
    )

    # debugfs opens the filesystem at the partition's byte offset: no loop device, no mount.
    fs = f"{disk}?offset={PARTITION_START_SECTOR * SECTOR_BYTES}"
    boot = debugfs(fs, "ls -l /boot")
    assert "vmlinuz-" in boot
    assert "initrd.img-" in boot
    uuid = vm_fs_uuid(img.key)
    assert f"UUID={uuid}" in debugfs(fs, "cat /etc/fstab")
    grub_cfg = debugfs(fs, "cat /boot/grub/grub.cfg")
    assert f"root=UUID={uuid}" in grub_cfg
    assert "console=ttyS0" in grub_cfg
    assert "MODULES=list" in debugfs(fs, "cat /etc/initramfs-tools/initramfs.conf")
    assert "normal.mod" in debugfs(fs, "ls /boot/grub/i386-pc")
    # The shared rootfs stays generic: VM-only files live only on the disk.
    assert "UUID=" not in (img.rootfs / "etc/fstab").read_text()

    started = time.monotonic()
    again = ensure_vm_disk(images_dir(), img)
    assert (again.built, again.vm_disk) == (False, disk)
    assert time.monotonic() - started < 1
    assert ensure_base(images_dir()).vm_disk == disk


@pytest.mark.lab
def test_seed_disk_holds_the_seed_under_its_label(tmp_path: Path) -> None:
    dest = tmp_path / "seed.img"
    make_seed_disk(dest, SEED)
    assert dest.stat().st_size == 8 * 2**20
    header = subprocess.run(
        ["/usr/sbin/dumpe2fs", "-h", str(dest)], capture_output=True, text=True, check=True
    ).stdout
    assert f"Filesystem volume name:   {SEED_LABEL}" in header
    assert debugfs(str(dest), f"cat /{SEED_TREE}/etc/hostname") == "sgm-a01\n"
    ssh_dir = debugfs(str(dest), f"ls -l /{SEED_TREE}/root/.ssh")
    assert "authorized_keys" in ssh_dir
    assert "ssh_host_ed25519_key" in debugfs(str(dest), f"ls /{SEED_TREE}/etc/ssh")
    assert list(tmp_path.iterdir()) == [dest]  # no temp file left beside it
