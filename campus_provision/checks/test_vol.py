"""VOL: dataset volumes are LUKS2 with strong parameters, mounted safely, keys kept root-only.

dm-crypt needs the PC's own kernel: on a container these controls do not apply.
"""

from __future__ import annotations

from typing import Any

from campus_provision.checks.conftest import Evidence, family_enabled, not_applicable
from campus_provision.shell import quote

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


def _field(text: str, name: str) -> str | None:
    """The value of the first ``name: value`` line of cryptsetup's output."""
    return next(
        (
            ln.split(":", 1)[1].strip()
            for ln in text.splitlines()
            if ln.strip().startswith(f"{name}:")
        ),
        None,
    )


def test_CP_VOL_01_volumes_are_luks2_strong(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    problems = []
    for vol in _volumes(hostvars, is_container):
        status = evidence.run(f"cryptsetup status {quote(vol['id'])}")
        device = _field(status.stdout, "device")
        if status.rc != 0 or device is None:
            problems.append(f"{vol['id']}: no open LUKS mapping")
            continue
        dump = evidence.run(f"cryptsetup luksDump {quote(device)}").stdout
        # The volume key as the kernel uses it (status), and every key slot's KDF (dump):
        # one pbkdf2 slot added later would be the weak way in.
        kdfs = [
            ln.split(":", 1)[1].strip()
            for ln in dump.splitlines()
            if ln.strip().startswith("PBKDF:")
        ]
        checks = {
            "LUKS2": _field(status.stdout, "type") == "LUKS2" and _field(dump, "Version") == "2",
            "aes-xts-plain64": _field(status.stdout, "cipher") == "aes-xts-plain64",
            "a 512-bit key": _field(status.stdout, "keysize") == "512 bits",
            "argon2id in every key slot": bool(kdfs) and set(kdfs) == {"argon2id"},
        }
        problems += [f"{vol['id']}: not {what}" for what, ok in checks.items() if not ok]
    assert not problems, "; ".join(problems)


def test_CP_VOL_02_mounts_are_safe_and_read_only_to_analysts(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    problems = []
    for vol in _volumes(hostvars, is_container):
        path = f"{MOUNT_ROOT}/{vol['id']}"
        mount = evidence.run(f"findmnt -no SOURCE,OPTIONS --mountpoint {quote(path)}")
        if mount.rc != 0 or len(mount.stdout.split()) != 2:
            problems.append(f"{path} is not mounted")
            continue
        source, opts = mount.stdout.split()
        if source != f"/dev/mapper/{vol['id']}":
            problems.append(f"{path} is {source}, not the volume's mapping /dev/mapper/{vol['id']}")
        missing = {"nodev", "nosuid", "noexec"} - set(opts.split(","))
        if missing:
            problems.append(f"{path} lacks {', '.join(sorted(missing))}")
        owner = evidence.run(f"stat -c %U {quote(path)}").stdout.strip()
        if owner != "root":
            problems.append(f"{path} is owned by {owner or '?'}, not root")
        problems += _acl_problems(evidence, vol, path)
    assert not problems, "; ".join(problems)


def _acl_problems(evidence: Evidence, vol: dict[str, Any], path: str) -> list[str]:
    """Only root writes; named entries are the dataset's reader groups, read-only; others
    read only open data that names no readers (every account of the PC may read it)."""
    acl = evidence.run(f"getfacl --omit-header --absolute-names --no-effective {quote(path)}")
    if acl.rc != 0:
        return [f"{path}: cannot read its ACL (getfacl: {acl.stderr.strip() or acl.rc})"]
    readers = set(vol.get("readers") or [])
    open_to_all = vol.get("tier") == "open" and not readers
    problems = []
    for line in acl.stdout.split():
        kind, name, perms = [*line.removeprefix("default:").split(":"), "", ""][:3]
        if kind == "user" and not name:
            continue
        if "w" in perms:
            problems.append(f"{path}: {line} lets more than root write")
        if kind == "user" and name:
            problems.append(f"{path}: {line} names a person, not a reader group")
        elif kind == "group" and name and name not in readers:
            problems.append(f"{path}: {line} is not one of its reader groups {sorted(readers)}")
        elif kind == "other" and perms != "---" and not open_to_all:
            problems.append(f"{path}: {line}: open to every account")
    return problems


def test_CP_VOL_03_no_plaintext_key_outside_root_files(
    host: Any, hostvars: dict[str, Any], evidence: Evidence, is_container: bool
) -> None:
    volumes = _volumes(hostvars, is_container)
    problems = []
    listing = evidence.run(f"stat -c '%n %U %a' {KEY_DIR} {KEY_DIR}/* 2>/dev/null")
    modes = {}
    for line in listing.stdout.splitlines():
        name, owner, mode = line.rsplit(" ", 2)
        modes[name] = (owner, mode)
        allowed = "700" if name == KEY_DIR else "600"
        if owner != "root" or mode != allowed:
            problems.append(f"{name} is {owner} {mode}, must be root {allowed}")
    crypttab = evidence.run("cat /etc/crypttab 2>/dev/null").stdout
    keyed = {}
    for line in crypttab.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.lstrip().startswith("#"):
            keyed[fields[0]] = fields[2]
            if fields[2] not in ("none", "-") and not fields[2].startswith(f"{KEY_DIR}/"):
                problems.append(f"crypttab takes the key of {fields[0]} from {fields[2]}")
    # Each volume's key is where this control looks: in a root-only file crypttab names.
    for vol in volumes:
        where = keyed.get(vol["id"])
        if where is None:
            problems.append(f"{vol['id']}: no crypttab entry, so no known root-only key file")
        elif where.startswith(f"{KEY_DIR}/") and where not in modes:
            problems.append(f"{vol['id']}: its key file {where} is missing")
    assert not problems, "; ".join(problems)
