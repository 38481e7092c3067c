#!/usr/bin/python3
"""Ansible module: the dataset volumes of one PC, LUKS2 on a data disk, in one pass.

One module instead of a dozen tasks: under the lab's TCG every task costs seconds, and
the steps (partition, key file, luksFormat, open, mkfs, mount, access, crypttab and fstab)
depend on each other's results (device nodes, LUKS UUIDs). It looks at everything first and
refuses, changing nothing, when a partition holds anything it did not create or a volume
does not open with the keystore's current key; only then does it act. Keys arrive as a
no_log parameter (over SSH, never on the controller's disk), reach cryptsetup through the
0600 key file or stdin, and are never returned.
"""

from __future__ import annotations

import grp
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

DOCUMENTATION = r"""
module: campus_dataset_volumes
short_description: LUKS2 dataset volumes on a PC's data disk, unlocked and mounted at boot
description:
  - One GPT partition per volume on I(disk), named after the dataset; LUKS2 with the given
    cipher, key size and PBKDF, labelled C(<id>@<version>); ext4; mounted at
    I(mount_root)/<id>; root-owned, read-only (POSIX ACL) for the reader groups; crypttab
    and fstab entries so it unlocks and mounts at boot.
  - Never formats a partition that holds anything, and fails when an existing volume
    does not open with the given key.
options:
  disk: {type: path, required: true, description: The data disk.}
  volumes:
    {type: list, elements: dict, required: true, description: The campus_host_datasets entries.}
  keys: {type: list, elements: str, required: true, description: One key per volume (no_log).}
author: campus-provision
"""

LUKS_TYPE_GUID = "CA7D7CCB-63ED-4C53-861C-1742536059CC"  # GPT "Linux LUKS"
MIB = 2**20
NO_TABLE = "does not contain a recognized partition table"
SETTLE_SECONDS = 30
GPT_NAME_MAX, LUKS_LABEL_MAX = 36, 47
MOUNT_OPTIONS = ["nodev", "nosuid", "noexec"]
CRYPTTAB, FSTAB = "/etc/crypttab", "/etc/fstab"
SWAP_PREFIX = "cpswap-"  # campus_provision.volumes.swap's temporary partition names


class RefusedError(Exception):
    """A state the module will not touch: the message says what and why."""


class Volumes:
    def __init__(self, module: AnsibleModule) -> None:
        self.m = module
        p = module.params
        self.check = module.check_mode
        self.disk = str(Path(p["disk"]).resolve())
        self.volumes: list[dict[str, Any]] = p["volumes"]
        self.keys: list[str] = p["keys"]
        self.key_dir: str = p["key_dir"]
        self.root: str = p["mount_root"]
        self.changed = False
        self.report: dict[str, list[str]] = {v["id"]: [] for v in self.volumes}
        self.mounted: list[str] = []
        self.diff: dict[str, str] = {"before": "", "after": ""}

    # -- helpers -------------------------------------------------------------------------

    def run(
        self, args: list[str], *, data: bytes | None = None, ok: tuple[int, ...] = (0,)
    ) -> tuple[int, str, str]:
        rc, out, err = self.m.run_command(
            args, data=data, binary_data=True, environ_update={"LC_ALL": "C"}
        )
        if rc not in ok:
            raise RefusedError(f"{' '.join(args)} failed (exit {rc}): {(err or out).strip()}")
        return rc, out, err

    def did(self, vol_id: str, what: str) -> None:
        self.changed = True
        self.report[vol_id].append(("would " if self.check else "") + what)

    def probe(self, device: str) -> dict[str, str]:
        """The signatures blkid finds on ``device`` (low-level probe, no cache)."""
        rc, out, _ = self.run(["blkid", "-p", "-o", "export", device], ok=(0, 2))
        if rc == 2:
            return {}
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def table(self) -> dict[str, Any] | None:
        rc, out, err = self.run(["sfdisk", "--json", self.disk], ok=(0, 1))
        if rc != 0:
            if NO_TABLE in err or not err.strip():
                return None
            raise RefusedError(f"sfdisk cannot read {self.disk}: {err.strip()}")
        return dict(json.loads(out)["partitiontable"])

    def disk_bytes(self) -> int:
        fd = os.open(self.disk, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)

    # -- look before acting --------------------------------------------------------------

    def plan(
        self,
    ) -> tuple[
        dict[str, Any] | None, dict[str, str], list[tuple[dict[str, Any], int]], dict[str, str]
    ]:
        """(table, node by id, partitions to add (volume, MiB), state by id), or RefusedError."""
        disk = Path(self.disk)
        if not disk.exists() or not stat.S_ISBLK(disk.stat().st_mode):
            raise RefusedError(f"the data disk {self.m.params['disk']} is not a block device here")
        problems = self.missing_groups()
        table = self.table()
        if table is None:
            found = self.probe(self.disk)
            if found:
                kind = found.get("TYPE") or found.get("PTTYPE") or "data"
                raise RefusedError(f"{self.disk} holds {kind} on the whole disk: not touching it")
        elif table.get("label") != "gpt":
            raise RefusedError(
                f"{self.disk} has a {table.get('label')} partition table, not GPT: not touching it"
            )
        parts = {str(x.get("name", "")): x for x in (table or {}).get("partitions", [])}
        swapping = sorted(name for name in parts if name.startswith(SWAP_PREFIX))
        if swapping:
            # 'volumes swap' names its new partition so while it runs; until it renames it
            # after the dataset, the old partition may be half retired: touch nothing.
            raise RefusedError(
                f"{self.disk} has partition {swapping[0]} of an unfinished 'volumes swap': "
                "finish it with 'campus-provision volumes resume' first"
            )
        nodes = {v["id"]: str(parts[v["id"]]["node"]) for v in self.volumes if v["id"] in parts}
        states: dict[str, str] = {}
        for vol, key in zip(self.volumes, self.keys, strict=True):
            node = nodes.get(vol["id"])
            states[vol["id"]] = "new" if node is None else self.existing(vol, node, key, problems)
        if problems:
            raise RefusedError("; ".join(problems))
        adding = self.sizes(table, [v for v in self.volumes if v["id"] not in nodes])
        return table, nodes, adding, states

    def missing_groups(self) -> list[str]:
        problems = []
        for vol in self.volumes:
            for group in vol["readers"]:
                try:
                    grp.getgrnam(group)
                except KeyError:
                    problems.append(
                        f"{vol['id']}: reader group {group} does not exist here "
                        "(campus_accounts creates the analyst groups)"
                    )
        return problems

    def existing(self, vol: dict[str, Any], node: str, key: str, problems: list[str]) -> str:
        """'blank' or 'luks' for a partition that is there; what is wrong goes to problems."""
        found = self.probe(node)
        kind = found.get("TYPE") or found.get("PTTYPE")
        if not kind:
            return "blank"
        if kind != "crypto_LUKS":
            problems.append(
                f"{vol['id']}: {node} holds {kind}, which this role did not create: "
                "not formatting it"
            )
        elif found.get("LABEL") != vol["label"]:
            problems.append(
                f"{vol['id']}: {node} is a LUKS volume labelled {found.get('LABEL') or '(none)'}, "
                f"not {vol['label']}: not touching it (a version swap is a later step)"
            )
        else:
            rc, _, _ = self.run(
                ["cryptsetup", "open", "--test-passphrase", "--key-file=-", node],
                data=key.encode("ascii"),
                ok=(0, 1, 2),
            )
            if rc != 0:
                problems.append(
                    f"{vol['id']}: the LUKS volume on {node} does not open with the keystore's "
                    "current key: left as it is (not reformatted); rotate or restore the key"
                )
        return "luks"

    def sizes(
        self, table: dict[str, Any] | None, missing: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], int]]:
        if not missing:
            return []
        p = self.m.params
        sector = int((table or {}).get("sectorsize", 512))
        total = self.disk_bytes() // sector
        last = total - 34  # the backup GPT takes the last 33 sectors
        used_end = max(
            (int(x["start"]) + int(x["size"]) for x in (table or {}).get("partitions", [])),
            default=2048,
        )
        free_mib = (last - used_end) * sector // MIB - 1  # one MiB lost to alignment at most
        need = [
            -(-(v["size_bytes"] * (100 + p["headroom_percent"]) // 100) // MIB) + p["overhead_mib"]
            for v in missing
        ]
        if sum(need) > free_mib:
            if not p["shrink_to_fit"]:
                raise RefusedError(
                    f"the datasets {', '.join(v['id'] for v in missing)} need {sum(need)} MiB; "
                    f"{self.disk} has {free_mib} MiB free"
                )
            need = [max(p["min_mib"], free_mib * n // sum(need)) for n in need]
            if sum(need) > free_mib:
                raise RefusedError(
                    f"{self.disk} has {free_mib} MiB free, too little even for small volumes"
                )
        return list(zip(missing, need, strict=True))

    # -- act -----------------------------------------------------------------------------

    def partition(
        self, table: dict[str, Any] | None, adding: list[tuple[dict[str, Any], int]]
    ) -> dict[str, str]:
        for vol, mib in adding:
            self.did(vol["id"], f"create a {mib} MiB partition on {self.disk}")
        if self.check or not adding:
            return {}
        lines = "".join(
            f'size={mib}MiB, type={LUKS_TYPE_GUID}, name="{vol["id"]}"\n' for vol, mib in adding
        )
        if table is None:
            self.run(["sfdisk", "--quiet", self.disk], data=f"label: gpt\n{lines}".encode())
        else:
            self.run(["sfdisk", "--quiet", "--append", self.disk], data=lines.encode())
        self.run(["udevadm", "settle", f"--timeout={SETTLE_SECONDS}"], ok=(0, 1))
        now = {
            str(x.get("name", "")): str(x["node"])
            for x in (self.table() or {}).get("partitions", [])
        }
        deadline = time.monotonic() + SETTLE_SECONDS
        while not all(Path(now.get(v["id"], "/nonexistent")).exists() for v, _ in adding):
            if time.monotonic() > deadline:
                raise RefusedError(
                    f"the new partitions on {self.disk} did not appear within {SETTLE_SECONDS} s"
                )
            time.sleep(0.5)
        return now

    def key_file(self, vol: dict[str, Any], key: str) -> str:
        path = Path(self.key_dir, f"{vol['id']}.key")
        data = key.encode("ascii")
        try:
            same = path.read_bytes() == data
            info = path.stat()
            same = (
                same
                and stat.S_IMODE(info.st_mode) == 0o600
                and info.st_uid == 0
                and info.st_gid == 0
            )
        except FileNotFoundError:
            same = False
        if same:
            return str(path)
        self.did(vol["id"], f"write the key file {path} (0600 root)")
        if not self.check:
            fd, tmp = tempfile.mkstemp(dir=self.key_dir, prefix=".key-")
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            Path(tmp).replace(path)
        return str(path)

    def key_dir_ready(self) -> None:
        try:
            info = Path(self.key_dir).stat()
            ok = stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == 0 and info.st_gid == 0
        except FileNotFoundError:
            info, ok = None, False
        if ok:
            return
        self.changed = True
        if not self.check:
            if info is None:
                Path(self.key_dir).mkdir(mode=0o700, parents=True)
            os.chown(self.key_dir, 0, 0)
            Path(self.key_dir).chmod(0o700)

    def luks(self, vol: dict[str, Any], node: str, key_path: str, state: str) -> None:
        p = self.m.params
        if state in ("new", "blank"):
            self.did(
                vol["id"],
                f"luksFormat {node} ({p['cipher']}, {p['key_size']}-bit key, {p['pbkdf']}), "
                f"label {vol['label']}",
            )
            if not self.check:
                cost = (
                    ["--pbkdf-force-iterations", str(p["pbkdf_force_iterations"])]
                    if p["pbkdf_force_iterations"]
                    else ["--iter-time", str(p["iter_time"])]
                )
                self.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
                          "--cipher", p["cipher"], "--key-size", str(p["key_size"]),
                          "--pbkdf", p["pbkdf"], "--pbkdf-memory", str(p["pbkdf_memory"]),
                          *cost, "--label", vol["label"], "--key-file", key_path,
                          node])  # fmt: skip
        rc, out, _ = self.run(["cryptsetup", "status", vol["id"]], ok=(0, 1, 4))
        device = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in out.splitlines()
                if ln.strip().startswith("device:")
            ),
            None,
        )
        if rc == 0 and device is not None:
            if Path(device).resolve() != Path(node).resolve():
                raise RefusedError(
                    f"{vol['id']}: /dev/mapper/{vol['id']} is open on {device}, not {node}"
                )
            return
        self.did(vol["id"], f"open {node} as /dev/mapper/{vol['id']}")
        if not self.check:
            self.run(
                ["cryptsetup", "open", "--type", "luks2", "--key-file", key_path, node, vol["id"]]
            )

    def filesystem(self, vol: dict[str, Any]) -> None:
        mapper = f"/dev/mapper/{vol['id']}"
        kind = (
            "" if self.check and not Path(mapper).exists() else self.probe(mapper).get("TYPE", "")
        )
        if kind == "ext4":
            return
        if kind:
            raise RefusedError(
                f"{vol['id']}: {mapper} holds {kind}, which this role did not create: "
                "not formatting it"
            )
        self.did(vol["id"], f"make an ext4 filesystem on {mapper}")
        if not self.check:
            self.run(["mkfs.ext4", "-q", "-m", "0", mapper])

    def mount(self, vol: dict[str, Any]) -> None:
        path = str(Path(self.root, vol["id"]))
        mapper = f"/dev/mapper/{vol['id']}"
        options = self.m.params["mount_options"]
        for directory, mode in ((self.root, 0o755), (path, 0o700)):
            if not Path(directory).is_dir():
                self.did(vol["id"], f"create {directory}")
                if not self.check:
                    Path(directory).mkdir(mode=mode, parents=True, exist_ok=True)
        rc, out, _ = self.run(
            ["findmnt", "--json", "-o", "SOURCE,OPTIONS", "--mountpoint", path], ok=(0, 1)
        )
        if rc != 0:
            self.did(vol["id"], f"mount {mapper} on {path} ({','.join(options)})")
            self.mounted.append(vol["id"])
            if not self.check:
                self.run(["mount", "-t", "ext4", "-o", ",".join(options), mapper, path])
            return
        found = json.loads(out)["filesystems"][0]
        if Path(found["source"]).resolve() != Path(mapper).resolve():
            raise RefusedError(
                f"{vol['id']}: {path} has {found['source']} mounted on it, not {mapper}"
            )
        if set(options) - set(found["options"].split(",")):
            self.did(vol["id"], f"remount {path} with {','.join(options)}")
            if not self.check:
                self.run(["mount", "-o", ",".join(["remount", *options]), path])

    def access(self, vol: dict[str, Any]) -> None:
        path = Path(self.root, vol["id"])
        if self.check and not path.is_mount():
            self.did(
                vol["id"],
                f"make {path} root-owned, read-only to "
                f"{', '.join(vol['readers']) or 'every account'}",
            )
            return
        everyone, readers = vol["world_readable"], sorted(set(vol["readers"]))
        mode = 0o755 if everyone else 0o750 if readers else 0o700
        info = path.stat()
        if (info.st_uid, info.st_gid) != (0, 0):
            self.did(vol["id"], f"chown root:root {path}")
            if not self.check:
                os.chown(path, 0, 0)
        open_to = "r-x" if everyone else "---"
        entries = ["user::rwx", f"group::{open_to}", f"other::{open_to}"]
        entries += [f"group:{g}:r-x" for g in readers]
        if readers:
            entries.append("mask::r-x")
        wanted = set(entries) | {f"default:{e}" for e in entries}
        _, out, _ = self.run(
            ["getfacl", "--omit-header", "--absolute-names", "--no-effective", str(path)]
        )
        have = {ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")}
        if have != wanted or stat.S_IMODE(info.st_mode) != mode:
            self.did(
                vol["id"],
                f"set {path} to {oct(mode)[2:]}, ACL {','.join(entries)} (also the default ACL)",
            )
            if not self.check:
                path.chmod(mode)
                spec = ",".join(entries + [f"default:{e}" for e in entries])
                self.run(["setfacl", "--set", spec, str(path)])

    def boot_entries(self, nodes: dict[str, str]) -> None:
        p = self.m.params
        crypttab: dict[str, str] = {}
        fstab: dict[str, str] = {}
        for vol in self.volumes:
            node = nodes.get(vol["id"])
            uuid = ""
            if node and Path(node).exists():
                uuid = self.probe(node).get("UUID", "")
            key_path = Path(self.key_dir, f"{vol['id']}.key")
            crypttab[vol["id"]] = (
                f"{vol['id']} UUID={uuid or '<new>'} {key_path} {','.join(p['crypttab_options'])}"
            )
            path = str(Path(self.root, vol["id"]))
            options = ",".join([*p["mount_options"], *p["fstab_options"]])
            fstab[path] = f"/dev/mapper/{vol['id']} {path} ext4 {options} 0 2"
        changed = [self.entries(CRYPTTAB, crypttab, 0), self.entries(FSTAB, fstab, 1)]
        if any(changed) and not self.check:
            self.run(["systemctl", "daemon-reload"])

    def entries(self, path: str, wanted: dict[str, str], field: int) -> bool:
        """Replace or add the lines of ``path`` whose field ``field`` is a key of ``wanted``."""
        try:
            before = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            before = ""
        lines, seen = [], set()
        for line in before.splitlines():
            fields = line.split()
            name = (
                fields[field] if len(fields) > field and not line.lstrip().startswith("#") else None
            )
            if name in wanted:
                if name not in seen:
                    lines.append(wanted[name])
                    seen.add(name)
                continue
            lines.append(line)
        lines += [text for name, text in wanted.items() if name not in seen]
        after = "\n".join(lines) + "\n"
        if after == before:
            return False
        self.changed = True
        self.diff["before"] += f"--- {path}\n{before}"
        self.diff["after"] += f"+++ {path}\n{after}"
        if not self.check:
            fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(after)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).chmod(0o644)
            Path(tmp).replace(path)
        return True

    def apply(self) -> None:
        table, nodes, adding, states = self.plan()
        self.key_dir_ready()
        nodes = {**nodes, **self.partition(table, adding)}
        for vol, key in zip(self.volumes, self.keys, strict=True):
            key_path = self.key_file(vol, key)
            node = nodes.get(vol["id"], f"(new partition for {vol['id']})")
            self.luks(vol, node, key_path, states[vol["id"]])
            self.filesystem(vol)
            self.mount(vol)
            self.access(vol)
        self.boot_entries(nodes)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "disk": {"type": "path", "required": True},
            # The rendered campus_host_datasets as they are: fields added there later
            # must not break the role; the ones used here are checked below.
            "volumes": {"type": "list", "elements": "dict", "required": True},
            "keys": {"type": "list", "elements": "str", "required": True, "no_log": True},
            "key_dir": {"type": "path", "default": "/etc/cryptsetup-keys.d"},
            "mount_root": {"type": "path", "default": "/srv/datasets"},
            "cipher": {"type": "str", "default": "aes-xts-plain64"},
            "key_size": {"type": "int", "default": 512},
            "pbkdf": {"type": "str", "default": "argon2id"},
            "pbkdf_memory": {"type": "int", "default": 1048576},
            "iter_time": {"type": "int", "default": 2000},
            "pbkdf_force_iterations": {"type": "int", "default": 0},
            "mount_options": {"type": "list", "elements": "str", "default": MOUNT_OPTIONS},
            "fstab_options": {"type": "list", "elements": "str", "default": ["nofail"]},
            "crypttab_options": {"type": "list", "elements": "str", "default": ["luks", "nofail"]},
            "headroom_percent": {"type": "int", "default": 10},
            "overhead_mib": {"type": "int", "default": 32},
            "min_mib": {"type": "int", "default": 40},
            "shrink_to_fit": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )  # fmt: skip
    if len(module.params["keys"]) != len(module.params["volumes"]):
        module.fail_json(msg="one key per volume is needed")
    for key in module.params["keys"]:
        if not re.fullmatch(r"[A-Za-z0-9+/=]{16,512}", key):
            module.fail_json(msg="a volume key is not the keystore's keyfile text (base64)")
    for vol in module.params["volumes"]:
        missing = {"id", "version", "tier", "size_bytes"} - set(vol)
        if missing:
            module.fail_json(msg=f"a dataset without {', '.join(sorted(missing))}: {vol}")
        vol["id"], vol["version"] = str(vol["id"]), str(vol["version"])
        vol["readers"] = [str(g) for g in vol.get("readers") or []]
        vol["size_bytes"] = int(vol["size_bytes"])
        vol["label"] = f"{vol['id']}@{vol['version']}"
        # Open data nobody in particular is named for: every account of the PC reads it.
        vol["world_readable"] = vol["tier"] == "open" and not vol["readers"]
        if len(vol["id"]) > GPT_NAME_MAX or len(vol["label"]) > LUKS_LABEL_MAX:
            module.fail_json(
                msg=f"{vol['id']}: a dataset id of at most {GPT_NAME_MAX} characters and an "
                f"id@version of at most {LUKS_LABEL_MAX} fit a GPT name and a LUKS2 label"
            )
    volumes = Volumes(module)
    try:
        volumes.apply()
    except RefusedError as exc:
        module.fail_json(msg=str(exc), changed=volumes.changed)
    done = [f"{vol_id}: {what}" for vol_id, whats in volumes.report.items() for what in whats]
    result: dict[str, Any] = {"changed": volumes.changed, "done": done, "mounted": volumes.mounted}
    if module._diff and volumes.diff["before"] != volumes.diff["after"]:
        result["diff"] = volumes.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
