"""Swap a dataset volume to a new version: a new volume beside the old, loaded, switched to,
and the old one crypto-erased, every step journaled.

The new volume is formatted with the volume's *current* keystore key (on stdin), so the
PC's key file and the keystore need no change, and at every instant both volumes open with
a key the keystore holds; the old volume's master key still dies with ``cryptsetup erase``.

Partitions: the old one is named ``<id>`` (the role's layout). The new one is made at the
end of the disk, the same size, named ``cpswap-<8 hex>`` while the swap runs (any dataset
id fits the GPT name's 36 characters that way), opened as ``/dev/mapper/cpswap-<hex>`` and
mounted at ``<mount root>/.cpswap-<hex>`` to be loaded. Once the old one is erased and
deleted, the new one is renamed ``<id>``: the PC then looks exactly as the role makes a
volume at the new version, so a role run with the spec at that version changes nothing.

Steps: ``plan``, ``make-partition``, ``format``, ``open-new``, ``mkfs``, ``mount-new``,
``load``, ``switch`` (the mount, the mapper ``<id>`` and crypttab's UUID go to the new
volume), ``erase-old``, ``wipe-old``, ``verify-old``, ``delete-old``, ``rename``, ``done``.
Each looks at the PC before it acts; :func:`resume_swap` goes on from the journal (a swap
only goes forward: until ``switch`` the old volume is untouched and mounted, after it the
new one is).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from campus_provision.errors import CampusProvisionError
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore, split_volume_id
from campus_provision.shell import join
from campus_provision.shell import quote as q
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf
from campus_provision.volumes.journal import DONE, INTENT, Journal, volume_lock
from campus_provision.volumes.lifecycle import (
    SETTLE,
    SFDISK,
    Layout,
    OperationResult,
    RetirePlan,
    RetireSteps,
    device_bytes,
    header_bytes,
    probe,
    refuse_unfinished,
    stopped_error,
    tell_kernel,
)
from campus_provision.volumes.load import MANIFEST, check_source, load_files, sha256_file
from campus_provision.volumes.remote import Shell, check

KIND_SWAP = "swap"
SWAP_STEPS = (
    "plan", "make-partition", "format", "open-new", "mkfs", "mount-new", "load", "switch",
    "erase-old", "wipe-old", "verify-old", "delete-old", "rename", "done",
)  # fmt: skip
LUKS_TYPE_GUID = "CA7D7CCB-63ED-4C53-861C-1742536059CC"  # as the role's module
MOUNT_OPTIONS = "nodev,nosuid,noexec"
_VERSION_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
LUKS_LABEL_MAX = 47
_TEMP = re.compile(r"cpswap-[0-9a-f]{8}")
WAIT = "i=0; while [ ! -e {p} ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done; [ -e {p} ]"


@dataclass
class SwapPlan:
    """What the swap found and chose before it began (the plan step's note)."""

    dataset: str
    version: str
    old_label: str
    old_node: str
    old_uuid: str
    old_partno: int
    disk: str
    sectors: int
    temp: str  # cpswap-<hex>: the new partition's name, mapper and mount while it runs
    source: str
    manifest_sha256: str
    old_header_bytes: int
    pbkdf: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.dataset}@{self.version}"

    def note(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_note(cls, note: str | None, source: Path) -> SwapPlan:
        try:
            plan = cls(**json.loads(note or ""))
            Pbkdf(**plan.pbkdf)
        except (ValueError, TypeError):
            raise VolumeError(f"{source}: the plan record of this swap is damaged") from None
        # Its numbers and the temporary name go into commands on the PC (and sfdisk's
        # script) as they are: they must be what plan_swap wrote.
        numbers = (plan.old_partno, plan.sectors, plan.old_header_bytes)
        if not all(type(n) is int for n in numbers) or not _TEMP.fullmatch(str(plan.temp)):
            raise VolumeError(f"{source}: the plan record of this swap is damaged")
        return plan


def check_version(dataset: str, version: str) -> str:
    if not version or not set(version) <= _VERSION_CHARS:
        raise VolumeError(f"{version!r}: not a dataset version (letters, digits, . _ + -)")
    if len(f"{dataset}@{version}") > LUKS_LABEL_MAX:
        raise VolumeError(f"{dataset}@{version}: longer than a LUKS2 label ({LUKS_LABEL_MAX})")
    return version


def plan_swap(
    store: VolumeKeystore,
    volume: str,
    shell: Shell,
    version: str,
    source: Path,
    pbkdf: Pbkdf,
    layout: Layout,
) -> SwapPlan:
    """Look, change nothing: the swap of ``volume`` to ``version`` (VolumeError if it cannot).

    Refuses when the keystore has no key (or the passphrase is wrong), the source does not
    match its manifest, the volume is not there, mounted, at another version already, or
    the disk has no room for a second volume of the same size.
    """
    _, dataset = split_volume_id(volume)
    check_version(dataset, version)
    if store.current(volume) is None:
        raise VolumeError(f"{volume}: no key in the keystore: create the volume first")
    store.verify_passphrase(volume)
    source = source.absolute()
    check_source(source)
    old = probe(shell, layout.device(dataset))
    if old.node is None or old.kind != "crypto_LUKS" or not old.label.startswith(f"{dataset}@"):
        raise VolumeError(
            f"{shell.where}: {layout.device(dataset)} is not {dataset}'s LUKS volume: "
            "create it first"
        )
    if old.label == f"{dataset}@{version}":
        raise VolumeError(f"{volume}: the volume is at version {version} already")
    if old.disk is None or old.partno is None:
        raise VolumeError(f"{shell.where}: {old.node} is not a partition of a disk")
    mount = q(layout.mount_point(dataset))
    if shell.run(f"findmnt -rn --mountpoint {mount}").returncode != 0:
        raise VolumeError(f"{shell.where}: {layout.mount_point(dataset)} is not mounted")
    table = json.loads(check(shell, f"sfdisk --json {q(old.disk)}", "reading the GPT"))
    parts = table["partitiontable"].get("partitions", [])
    (mine,) = [p for p in parts if p.get("node") == old.node]
    sectors = int(mine["size"])
    stray = [p["name"] for p in parts if str(p.get("name", "")).startswith("cpswap-")]
    if stray:
        raise VolumeError(
            f"{shell.where}: {old.disk} has a partition {stray[0]} of an earlier swap: "
            "'volumes resume' finishes it"
        )
    free = _free_sectors(shell, old.disk, table["partitiontable"])
    if free < sectors:
        raise VolumeError(
            f"{shell.where}: {old.disk} has {free} free sectors at its end, the new volume "
            f"needs {sectors}: not swapping"
        )
    return SwapPlan(
        dataset=dataset, version=version, old_label=old.label, old_node=old.node,
        old_uuid=old.uuid, old_partno=old.partno, disk=old.disk, sectors=sectors,
        temp=f"cpswap-{secrets.token_hex(4)}", source=str(source),
        manifest_sha256=sha256_file(source / MANIFEST),
        old_header_bytes=min(header_bytes(shell, old.node), device_bytes(shell, old.node)),
        pbkdf=asdict(pbkdf),
    )  # fmt: skip


def _free_sectors(shell: Shell, disk: str, table: dict[str, Any]) -> int:
    sector = int(table.get("sectorsize", 512))
    total = device_bytes(shell, disk) // sector
    last = total - 34  # the backup GPT
    end = max((int(p["start"]) + int(p["size"]) for p in table.get("partitions", [])), default=2048)
    return last - end - 2048  # a MiB lost to alignment at most


class _Swap:
    def __init__(
        self,
        store: VolumeKeystore,
        shell: Shell,
        layout: Layout,
        journal: Journal,
        plan: SwapPlan,
        progress: Callable[[str], None],
    ) -> None:
        self.store, self.shell, self.layout = store, shell, layout
        self.journal, self.plan, self.progress = journal, plan, progress
        self.volume = journal.volume
        ds = plan.dataset
        self.mount = layout.mount_point(ds)
        self.new_dev = layout.device(plan.temp)
        self.final_dev = layout.device(ds)
        self.temp_mount = f"{layout.mount_root}/.{plan.temp}"
        old = RetirePlan(
            dataset=ds, device=plan.old_node, node=plan.old_node, label=plan.old_label,
            uuid=plan.old_uuid, disk=plan.disk, partno=plan.old_partno, partition_name=ds,
            header_bytes=plan.old_header_bytes,
        )  # fmt: skip
        self.old = RetireSteps(store, shell, layout, journal, old, progress)

    def key(self) -> bytes:
        return self.old.key()

    def sh(self, script: str, what: str, stdin: bytes = b"") -> str:
        return check(self.shell, script, what, stdin)

    def forward(self, start: str, stop_after: str | None, note: str | None = None) -> str:
        actions: dict[str, Callable[[], None]] = {
            "make-partition": self.make_partition, "format": self.format,
            "open-new": self.open_new, "mkfs": self.mkfs, "mount-new": self.mount_new,
            "load": self.load, "switch": self.switch, "erase-old": self.erase_old,
            "wipe-old": self.old.wipe, "verify-old": self.old.verify_erased,
            "delete-old": self.old.delete_partition, "rename": self.rename,
            "done": self.check_done,
        }  # fmt: skip
        for name in SWAP_STEPS[SWAP_STEPS.index(start) :]:
            self.progress(f"{self.volume}: {name}")
            self.journal.record(name, INTENT, note=note)
            note = None
            actions[name]()
            self.journal.record(name, DONE)
            if name == stop_after and name != "done":
                return f"stopped after {name}"
        return "swapped"

    def _new_node(self) -> str | None:
        """The new partition's node, found by its name (temporary, or final once renamed)."""
        out = self.sh(f"sfdisk --json {q(self.plan.disk)}", "reading the GPT")
        for p in json.loads(out)["partitiontable"].get("partitions", []):
            if p.get("name") == self.plan.temp or (
                p.get("name") == self.plan.dataset and p.get("node") != self.plan.old_node
            ):
                return str(p["node"])
        return None

    def make_partition(self) -> None:
        if self._new_node() is None:
            line = f'size={self.plan.sectors}, type={LUKS_TYPE_GUID}, name="{self.plan.temp}"\n'
            disk = self.plan.disk
            self.sh(f"{SFDISK} --append {q(disk)} || exit 1; {tell_kernel(disk)}",
                    "adding the new partition", line.encode())  # fmt: skip
        self.sh(WAIT.format(p=q(self.new_dev)), f"waiting for {self.new_dev}")

    def format(self) -> None:
        found = probe(self.shell, self.new_dev)
        if found.kind == "crypto_LUKS" and found.label == self.plan.label:
            return
        if found.kind:
            raise VolumeError(
                f"{self.shell.where}: {self.new_dev} holds {found.kind} ({found.label}): "
                "not formatting it"
            )
        pbkdf = Pbkdf(**self.plan.pbkdf)
        self.sh(
            "cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 "
            f"--key-size 512 {join(pbkdf.args())} --label {q(self.plan.label)} "
            f"--key-file=- --keyfile-size={KEYFILE_BYTES} {q(self.new_dev)}",
            f"luksFormat {self.new_dev}",
            self.key(),
        )

    def open_new(self) -> None:
        temp = q(self.plan.temp)
        self.sh(
            f"cryptsetup status {temp} >/dev/null 2>&1 || cryptsetup open --type luks2 "
            f"--key-file=- --keyfile-size={KEYFILE_BYTES} {q(self.new_dev)} {temp}",
            f"opening {self.new_dev}",
            self.key(),
        )

    def mkfs(self) -> None:
        mapper = f"/dev/mapper/{self.plan.temp}"
        kind = probe(self.shell, mapper).kind
        if kind == "ext4":
            return
        if kind:
            raise VolumeError(f"{self.shell.where}: {mapper} holds {kind}: not formatting it")
        self.sh(f"mkfs.ext4 -q -m 0 {q(mapper)}", f"mkfs.ext4 {mapper}")

    def mount_new(self) -> None:
        t, m = q(self.temp_mount), q(self.mount)
        self.sh(
            f"mkdir -p -m 0700 {t} && if ! findmnt -rn --mountpoint {t} >/dev/null; then "
            f"mount -t ext4 -o {MOUNT_OPTIONS} {q('/dev/mapper/' + self.plan.temp)} {t}; fi && "
            # The new root as the old: root-owned, its mode and ACL (the reader groups).
            f"chown 0:0 {t} && chmod --reference={m} {t} && "
            f"getfacl --omit-header --absolute-names {m} | setfacl --set-file=- {t}",
            f"mounting the new volume on {self.temp_mount}",
        )

    def load(self) -> None:
        source = Path(self.plan.source)
        if sha256_file(source / MANIFEST) != self.plan.manifest_sha256:
            raise VolumeError(f"{source}: its manifest changed since the swap began")
        files = check_source(source)
        load_files(self.shell, self.temp_mount, files,
                   mapper=f"/dev/mapper/{self.plan.temp}", progress=self.progress)  # fmt: skip

    def switch(self) -> None:
        ds, temp = q(self.plan.dataset), q(self.plan.temp)
        t, m = q(self.temp_mount), q(self.mount)
        node = self._new_node()
        if node is None:
            raise VolumeError(f"{self.shell.where}: the new partition is gone")
        uuid = probe(self.shell, node).uuid
        if not uuid:
            raise VolumeError(f"{self.shell.where}: {node} has no LUKS UUID")
        crypttab = q(self.layout.crypttab)
        tmp = q(f"{Path(self.layout.crypttab).parent}/.{Path(self.layout.crypttab).name}.tmp")
        reload = "systemctl daemon-reload" if self.layout.reload_systemd else "true"
        self.sh(
            "set -e\n"
            f"if findmnt -rn --mountpoint {t} >/dev/null; then umount {t}; fi\n"
            f"if cryptsetup status {temp} >/dev/null 2>&1; then cryptsetup close {temp}; fi\n"
            f"cur=$(cryptsetup status {ds} 2>/dev/null | sed -n 's/^ *device: *//p')\n"
            f'if [ -n "$cur" ] && [ "$(readlink -f "$cur")" != {q(node)} ]; then\n'
            f"  if findmnt -rn --mountpoint {m} >/dev/null; then umount {m}; fi\n"
            f"  cryptsetup close {ds}\n"
            "fi\n"
            f"if ! cryptsetup status {ds} >/dev/null 2>&1; then\n"
            f"  cryptsetup open --type luks2 --key-file=- --keyfile-size={KEYFILE_BYTES} "
            f"{q(node)} {ds}\n"
            "else cat >/dev/null; fi\n"
            f"if ! findmnt -rn --mountpoint {m} >/dev/null; then\n"
            f"  mount -t ext4 -o {MOUNT_OPTIONS} /dev/mapper/{ds} {m}\n"
            "fi\n"
            f"awk -v k={ds} -v u={q('UUID=' + uuid)} "
            "'!/^[[:space:]]*#/ && $1==k {$2=u} {print}' " + f"{crypttab} > {tmp}\n"
            f"if ! cmp -s {tmp} {crypttab}; then chmod 644 {tmp}; sync -- {tmp}; "
            f"mv -f -- {tmp} {crypttab}; {reload}; else rm -f -- {tmp}; fi\n"
            f"rmdir -- {t} 2>/dev/null || true\n",
            "switching the mount to the new volume",
            self.key(),
        )

    def erase_old(self) -> None:
        mapper = self.shell.run(
            f"cryptsetup status {q(self.plan.dataset)} | sed -n 's/^ *device: *//p'"
        ).stdout.strip()
        if (
            mapper
            and self.sh(f"readlink -f {q(mapper)}", "resolving").strip() == self.plan.old_node
        ):
            raise VolumeError(f"{self.shell.where}: the old volume is still open: not erasing")
        self.old.erase()

    def rename(self) -> None:
        node = self._new_node()
        if node is None:
            raise VolumeError(f"{self.shell.where}: the new partition is gone")
        partno = probe(self.shell, node).partno
        self.sh(
            f"{SFDISK} --part-label {q(self.plan.disk)} {partno} {q(self.plan.dataset)} "
            f"|| exit 1; udevadm trigger --action=change {q(node)}; {SETTLE}; "
            + WAIT.format(p=q(self.final_dev)),
            f"naming {node} {self.plan.dataset}",
        )

    def check_done(self) -> None:
        found = probe(self.shell, self.final_dev)
        if found.label != self.plan.label:
            raise VolumeError(f"{self.final_dev} is labelled {found.label}, not {self.plan.label}")
        out = self.sh(
            f"findmnt -rn -o SOURCE --mountpoint {q(self.mount)}; "
            f"awk -v k={q(self.plan.dataset)} '$1==k {{print $2}}' {q(self.layout.crypttab)}",
            "checking the end state",
        ).split()
        if out[-1:] != [f"UUID={found.uuid}"]:
            raise VolumeError(f"crypttab does not name the new volume: {out}")


def swap(
    store: VolumeKeystore,
    volume: str,
    shell: Shell,
    journal_dir: Path,
    version: str,
    source: Path,
    *,
    pbkdf: Pbkdf | None = None,
    layout: Layout | None = None,
    stop_after: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> OperationResult:
    """Swap ``volume`` to dataset ``version`` from ``source`` (see the module docstring)."""
    layout = layout or Layout()
    refuse_unfinished(journal_dir, volume)
    with volume_lock(journal_dir, volume):
        refuse_unfinished(journal_dir, volume)
        plan = plan_swap(store, volume, shell, version, source, pbkdf or Pbkdf(), layout)
        current = store.current(volume)
        assert current is not None  # noqa: S101 - plan_swap refused otherwise
        journal = Journal.create(journal_dir, volume, KIND_SWAP, current.key_id, "plan")
        journal.new_key = current.key_id
        journal.record("plan", DONE, note=plan.note())
        engine = _Swap(store, shell, layout, journal, plan, progress)
        try:
            outcome = engine.forward("make-partition", stop_after)
        except CampusProvisionError as exc:
            raise stopped_error("swap", journal, exc) from exc
    return _result(journal, outcome, plan)


def _result(journal: Journal, outcome: str, plan: SwapPlan) -> OperationResult:
    detail = {"old_label": plan.old_label, "label": plan.label, "old_device": plan.old_node}
    return OperationResult(journal.op, journal.kind, journal.volume, journal.old_key,
                           journal.old_key, outcome, journal.path, detail)  # fmt: skip


def resume_swap(
    store: VolumeKeystore,
    journal: Journal,
    plan_note: str | None,
    shell: Shell,
    layout: Layout,
    progress: Callable[[str], None],
    note: str,
) -> OperationResult:
    """Go on with a swap from its journal's last record (the caller holds the lock)."""
    plan = SwapPlan.from_note(plan_note, journal.path)
    store.verify_passphrase(journal.volume)
    engine = _Swap(store, shell, layout, journal, plan, progress)
    last = journal.records[-1]
    index = SWAP_STEPS.index(last.step) + (1 if last.state == DONE else 0)
    return _result(journal, engine.forward(SWAP_STEPS[index], None, note=note), plan)
