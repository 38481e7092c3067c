"""VOL: dataset volumes are LUKS2 with strong parameters, mounted safely, keys kept root-only.

dm-crypt needs the PC's own kernel: on a container these controls do not apply.
"""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable, quote

MOUNT_ROOT = "/srv/datasets"
KEY_DIR = "/etc/cryptsetup-keys.d"


def _volumes(hostvars: dict[str, Any], is_container: bool) -> list[dict[str, Any]]:
    family_enabled(hostvars, "VOL")
    volumes: list[dict[str, Any]] = hostvars.get("campus_host_datasets") or []
    if not volumes:
        not_applicable("no dataset volumes are assigned to this host")
    if is_container:
        not_applicable("dm-crypt needs the PC's own kernel; this host is a container")
    return volumes


def test_CP_VOL_01_volumes_are_luks2_strong(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    problems = []
    for vol in _volumes(hostvars, is_container):
        status = evidence.run(f"cryptsetup status {quote(vol['id'])}")
        device = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in status.stdout.splitlines()
                if ln.strip().startswith("device:")
            ),
            None,
        )
        if status.rc != 0 or device is None:
            problems.append(f"{vol['id']}: no open LUKS mapping")
            continue
        dump = evidence.run(f"cryptsetup luksDump {quote(device)}").stdout
        fields = [ln.strip() for ln in dump.splitlines()]
        checks = {
            "LUKS2": any(f.split() == ["Version:", "2"] for f in fields),
            "aes-xts-plain64": any(
                f.startswith("cipher:") and f.endswith("aes-xts-plain64") for f in fields
            ),
            "a 512-bit key": any(f.startswith("Cipher key:") and "512 bits" in f for f in fields),
            "argon2id": any(f.startswith("PBKDF:") and f.endswith("argon2id") for f in fields),
        }
        problems += [f"{vol['id']}: not {what}" for what, ok in checks.items() if not ok]
    assert not problems, "; ".join(problems)


def test_CP_VOL_02_mounts_are_safe_and_read_only_to_analysts(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    problems = []
    for vol in _volumes(hostvars, is_container):
        path = f"{MOUNT_ROOT}/{vol['id']}"
        mount = evidence.run(
            f"findmnt -no OPTIONS --target {quote(path)} --mountpoint {quote(path)}"
        )
        if mount.rc != 0:
            problems.append(f"{path} is not mounted")
            continue
        options = set(mount.stdout.strip().split(","))
        missing = {"nodev", "nosuid", "noexec"} - options
        if missing:
            problems.append(f"{path} lacks {', '.join(sorted(missing))}")
        perms = evidence.run(f"stat -c '%U %G %a' {quote(path)}").stdout.split()
        if len(perms) == 3 and (int(perms[2], 8) & 0o022 or int(perms[2], 8) & 0o007):
            problems.append(f"{path} is {perms[2]}: writable by its group or open to others")
    assert not problems, "; ".join(problems)


def test_CP_VOL_03_no_plaintext_key_outside_root_files(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    _volumes(hostvars, is_container)
    problems = []
    listing = evidence.run(f"stat -c '%n %U %a' {KEY_DIR} {KEY_DIR}/* 2>/dev/null")
    for line in listing.stdout.splitlines():
        name, owner, mode = line.rsplit(" ", 2)
        allowed = "700" if name == KEY_DIR else "600"
        if owner != "root" or mode != allowed:
            problems.append(f"{name} is {owner} {mode}, must be root {allowed}")
    crypttab = evidence.run("cat /etc/crypttab 2>/dev/null").stdout
    for line in crypttab.splitlines():
        fields = line.split()
        keyed = len(fields) >= 3 and not line.startswith("#") and fields[2] not in ("none", "-")
        if keyed and not fields[2].startswith(f"{KEY_DIR}/"):
            problems.append(f"crypttab takes the key of {fields[0]} from {fields[2]}")
    assert not problems, "; ".join(problems)
