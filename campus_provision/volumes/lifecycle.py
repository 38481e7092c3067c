"""Retire (and swap) a dataset volume on a PC: journaled steps that a crash cannot derail.

``retire`` destroys a volume so that its data cannot be recovered, then forgets it:

1. ``plan``: what is there (partition node, disk, LUKS label and UUID, header size), in
   the journal before anything changes;
2. ``boot-entries``: the crypttab and fstab lines go (a reboot now mounts nothing);
3. ``unmount`` and 4. ``close``;
5. ``erase``: ``cryptsetup erase`` destroys every keyslot, so no key opens it any more;
6. ``wipe``: the whole LUKS2 header area (both headers, the keyslot area) is zeroed and
   ``wipefs -a`` removes any signature left;
7. ``verify-erased``: ``cryptsetup isLuks`` fails, the header area reads as zeros, and
   the keystore's key opens nothing;
8. ``remove-keyfile``: the PC's key file and the empty mount point go;
9. ``delete-partition``: the (now blank) partition leaves the GPT, if it is one;
10. ``retire-keys``: the keystore forgets the volume's keys, only now that 7 proved
    that they open nothing;
11. ``done``: the end state, checked.

Every step writes its intent to the journal first and its end after, and looks at the
PC before acting, so a step done twice does nothing the second time. Retiring only goes
forward: the operator asked for the data to be destroyed, and :func:`resume_one` finishes
what a crash interrupted. Until step 10, the keystore holds every key of the volume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from campus_provision.errors import CampusProvisionError
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore, split_volume_id
from campus_provision.shell import quote as q
from campus_provision.volumes import VolumeError
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals, volume_lock
from campus_provision.volumes.load import MANIFEST as LOAD_MANIFEST
from campus_provision.volumes.load import check_source, load_files, sha256_file
from campus_provision.volumes.mirror import MirrorSource, refetch
from campus_provision.volumes.remote import Shell, check

KIND_RETIRE = "retire"
RETIRE_STEPS = (
    "plan", "boot-entries", "unmount", "close", "erase", "wipe", "verify-erased",
    "remove-keyfile", "delete-partition", "retire-keys", "done",
)  # fmt: skip
# How any operation's journal ends, as rotate-key's do: one that stopped before its plan
# was written is closed as rolled back (nothing had changed).
FINAL_STEPS = ("done", "rolled-back")
KIND_LOAD, KIND_CREATE = "load", "create"
LOAD_STEPS = ("plan", "send", "done")
CREATE_STEPS = ("plan", "provision", "done")
# swap's engine is campus_provision.volumes.swap; resume_one dispatches to it.
KINDS = (KIND_RETIRE, KIND_LOAD, KIND_CREATE, "swap")
_ZERO_BLOCK = 4096
SETTLE = "udevadm settle --timeout=30 >/dev/null 2>&1 || true"
# The table is written alone, and the kernel told partition by partition (partx -u: BLKPG,
# as sfdisk --append does), since the disk's other volumes are open and mounted: a whole
# re-read of a disk in use fails.
SFDISK = "sfdisk --quiet --no-reread --no-tell-kernel"


def tell_kernel(disk: str) -> str:
    """Shell: tell the kernel the changed partitions of ``disk``, then let udev settle."""
    return f"partx -u {q(disk)} || true; {SETTLE}"


@dataclass(frozen=True)
class Layout:
    """Where a PC keeps its volumes' pieces (the role's defaults; tests use a temp dir)."""

    crypttab: str = "/etc/crypttab"
    fstab: str = "/etc/fstab"
    key_dir: str = "/etc/cryptsetup-keys.d"
    mount_root: str = "/srv/datasets"
    by_partlabel: str = "/dev/disk/by-partlabel"
    reload_systemd: bool = True

    def key_file(self, dataset: str) -> str:
        return f"{self.key_dir}/{dataset}.key"

    def mount_point(self, dataset: str) -> str:
        return f"{self.mount_root}/{dataset}"

    def device(self, partition_name: str) -> str:
        return f"{self.by_partlabel}/{partition_name}"


@dataclass(frozen=True)
class Probe:
    """What a device path is on the PC: its node, signature and place on the disk."""

    node: str | None
    kind: str = ""
    label: str = ""
    uuid: str = ""
    disk: str | None = None
    partno: int | None = None


def probe(shell: Shell, device: str) -> Probe:
    """Look at ``device`` (a by-partlabel link, a node, or a file in the tests)."""
    script = (
        f'dev=$(readlink -f -- {q(device)} 2>/dev/null) && [ -e "$dev" ] || exit 0\n'
        'echo "node=$dev"\n'
        "blkid -p -o export -- \"$dev\" 2>/dev/null | grep -E '^(TYPE|LABEL|UUID)='\n"
        'n=$(basename -- "$dev")\n'
        'if [ -r "/sys/class/block/$n/partition" ]; then\n'
        '  echo "partno=$(cat "/sys/class/block/$n/partition")"\n'
        '  echo "disk=/dev/$(basename "$(readlink -f "/sys/class/block/$n/..")")"\n'
        "fi\n"
        "exit 0"
    )
    out = check(shell, script, f"looking at {device}")
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "node" not in found:
        return Probe(None)
    partno = found.get("partno")
    return Probe(
        node=found["node"],
        kind=found.get("TYPE", ""),
        label=found.get("LABEL", ""),
        uuid=found.get("UUID", ""),
        disk=found.get("disk"),
        partno=int(partno) if partno and partno.isdigit() else None,
    )


def header_bytes(shell: Shell, node: str) -> int:
    """The LUKS2 metadata and keyslot area's size: everything before the data."""
    out = check(shell, f"cryptsetup luksDump --dump-json-metadata {q(node)}", "luksDump")
    try:
        meta = json.loads(out)
        config = meta["config"]
        areas = 2 * (int(config["json_size"]) + 4096) + int(config["keyslots_size"])
        offsets = [int(s["offset"]) for s in meta.get("segments", {}).values()]
    except (ValueError, KeyError, TypeError):
        raise VolumeError(f"{shell.where}: {node}: luksDump gave no LUKS2 layout") from None
    size = max([areas, *offsets])
    return -(-size // _ZERO_BLOCK) * _ZERO_BLOCK


def device_bytes(shell: Shell, node: str) -> int:
    out = check(
        shell,
        f"if [ -b {q(node)} ]; then blockdev --getsize64 {q(node)}; else stat -c %s {q(node)}; fi",
        f"the size of {node}",
    )
    return int(out.strip())


def unfinished(journal_dir: Path, volume: str) -> list[Journal]:
    """The journals of ``volume`` (any kind) whose operation has not ended."""
    return [j for j in journals(journal_dir, volume) if not j.finished(FINAL_STEPS)]


def refuse_unfinished(journal_dir: Path, volume: str) -> None:
    for j in unfinished(journal_dir, volume):
        raise VolumeError(
            f"{volume}: {j.kind} {j.op} is unfinished ({j.path}): "
            "run 'campus-provision volumes resume' first"
        )


@dataclass
class RetirePlan:
    """What retire found before it began (journaled as the plan step's note)."""

    dataset: str
    device: str
    node: str
    label: str
    uuid: str
    disk: str | None
    partno: int | None
    partition_name: str
    header_bytes: int
    key_ids: list[str] = field(default_factory=list)

    def note(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_note(cls, note: str | None, source: Path) -> RetirePlan:
        try:
            data: dict[str, Any] = json.loads(note or "")
            plan = cls(**data)
        except (ValueError, TypeError):
            raise VolumeError(f"{source}: the plan record of this retire is damaged") from None
        # Its numbers go into commands on the PC as they are: numbers, or it is damaged.
        if type(plan.header_bytes) is not int or type(plan.partno) not in (int, type(None)):
            raise VolumeError(f"{source}: the plan record of this retire is damaged")
        return plan


@dataclass(frozen=True)
class OperationResult:
    """How one operation (or its resumption) ended: ids only, never a key."""

    op: str
    kind: str
    volume: str
    old_key: str
    new_key: str | None
    outcome: str
    journal: Path
    detail: dict[str, Any] = field(default_factory=dict)


def plan_retire(
    store: VolumeKeystore, volume: str, shell: Shell, layout: Layout, device: str | None = None
) -> RetirePlan:
    """Look, change nothing: what retiring ``volume`` would destroy (VolumeError if unsafe).

    Refuses when the keystore has no key for it (the passphrase is proven on the newest),
    the device is missing, or holds something other than this dataset's LUKS volume.
    """
    _, dataset = split_volume_id(volume)
    keys = store.keys(volume)
    if not keys:
        raise VolumeError(f"{volume}: no key in the keystore: not a volume this campus made")
    store.verify_passphrase(volume)
    path = device or layout.device(dataset)
    found = probe(shell, path)
    if found.node is None:
        raise VolumeError(f"{shell.where}: {path}: no such device: nothing to retire")
    if found.kind != "crypto_LUKS" or not found.label.startswith(f"{dataset}@"):
        what = f"a LUKS volume labelled {found.label or '(none)'}" if found.kind else "no volume"
        if found.kind and found.kind != "crypto_LUKS":
            what = found.kind
        raise VolumeError(
            f"{shell.where}: {path} ({found.node}) holds {what}, not {dataset}'s LUKS volume: "
            "not touching it"
        )
    size = min(header_bytes(shell, found.node), device_bytes(shell, found.node))
    return RetirePlan(
        dataset=dataset, device=path, node=found.node, label=found.label, uuid=found.uuid,
        disk=found.disk, partno=found.partno, partition_name=Path(path).name,
        header_bytes=size, key_ids=[k.key_id for k in keys],
    )  # fmt: skip


class RetireSteps:
    """One retire's steps, each idempotent: it checks the PC before acting."""

    def __init__(
        self,
        store: VolumeKeystore,
        shell: Shell,
        layout: Layout,
        journal: Journal,
        plan: RetirePlan,
        progress: Callable[[str], None],
    ) -> None:
        self.store = store
        self.shell = shell
        self.layout = layout
        self.journal = journal
        self.plan = plan
        self.progress = progress
        self.volume = journal.volume
        self._secret: bytes | None = None

    def fail(self, what: str) -> VolumeError:
        return VolumeError(f"{self.volume}: {what} (journal {self.journal.path})")

    def sh(self, script: str, what: str, stdin: bytes = b"") -> str:
        return check(self.shell, script, what, stdin)

    def key(self) -> bytes:
        """The volume's current key (for the proof that it opens nothing any more)."""
        if self._secret is None:
            self._secret = self.store.secret(self.volume, self.journal.old_key)
        return self._secret

    def forward(self, start: str, stop_after: str | None, note: str | None = None) -> str:
        actions: dict[str, Callable[[], None]] = {
            "boot-entries": self.boot_entries, "unmount": self.unmount, "close": self.close,
            "erase": self.erase, "wipe": self.wipe, "verify-erased": self.verify_erased,
            "remove-keyfile": self.remove_keyfile, "delete-partition": self.delete_partition,
            "retire-keys": self.retire_keys, "done": self.check_done,
        }  # fmt: skip
        for name in RETIRE_STEPS[RETIRE_STEPS.index(start) :]:
            self.progress(f"{self.volume}: {name}")
            self.journal.record(name, INTENT, note=note)
            note = None
            actions[name]()
            self.journal.record(name, DONE)
            if name == stop_after and name != "done":
                return f"stopped after {name}"
        return "retired"

    # -- the steps ---------------------------------------------------------------------------

    def boot_entries(self) -> None:
        ds, mount = self.plan.dataset, self.layout.mount_point(self.plan.dataset)
        script = _drop_lines(self.layout.crypttab, 1, ds) + _drop_lines(self.layout.fstab, 2, mount)
        if self.layout.reload_systemd:
            script += 'if [ -n "$changed" ]; then systemctl daemon-reload; fi\n'
        self.sh(script, "removing the crypttab and fstab entries")

    def unmount(self) -> None:
        mount = q(self.layout.mount_point(self.plan.dataset))
        self.sh(
            f"if findmnt -rn --mountpoint {mount} >/dev/null; then umount {mount}; fi",
            f"unmounting {self.layout.mount_point(self.plan.dataset)}",
        )

    def close(self) -> None:
        mapper = q(self.plan.dataset)
        self.sh(
            f"if cryptsetup status {mapper} >/dev/null 2>&1; then cryptsetup close {mapper}; fi",
            f"closing /dev/mapper/{self.plan.dataset}",
        )

    def _still_this_volume(self) -> bool:
        """Whether the node still holds the volume planned (False once wiped)."""
        found = probe(self.shell, self.plan.node)
        if found.kind == "crypto_LUKS" and found.uuid != self.plan.uuid:
            raise self.fail(
                f"{self.plan.node} now holds another LUKS volume ({found.label}): stopping"
            )
        return found.kind == "crypto_LUKS"

    def erase(self) -> None:
        if self._still_this_volume():
            self.sh(
                f"cryptsetup erase --batch-mode {q(self.plan.node)}",
                f"cryptsetup erase {self.plan.node}",
            )

    def wipe(self) -> None:
        node = q(self.plan.node)
        count = self.plan.header_bytes // _ZERO_BLOCK
        self._still_this_volume()  # another volume there now stops it
        self.sh(
            f"dd if=/dev/zero of={node} bs={_ZERO_BLOCK} count={count} conv=notrunc,fsync "
            f"status=none && wipefs -a -q {node}",
            f"zeroing the LUKS2 header area of {self.plan.node}",
        )

    def verify_erased(self) -> None:
        node = q(self.plan.node)
        out = self.sh(
            f"if cryptsetup isLuks {node}; then echo luks; fi; "
            f"if cmp -s -n {self.plan.header_bytes} {node} /dev/zero; then echo zero; fi",
            f"checking {self.plan.node}",
        )
        if "luks" in out.split() or "zero" not in out.split():
            raise self.fail(f"{self.plan.node} still holds a LUKS header after the wipe")
        opened = self.shell.run(
            f"cryptsetup open --test-passphrase --key-file=- --keyfile-size={KEYFILE_BYTES} {node}",
            self.key(),
        )
        if opened.returncode == 0:
            raise self.fail(f"the keystore's key still opens {self.plan.node}")

    def remove_keyfile(self) -> None:
        key = q(self.layout.key_file(self.plan.dataset))
        mount = q(self.layout.mount_point(self.plan.dataset))
        self.sh(
            f"if [ -e {key} ]; then shred -u -- {key} 2>/dev/null || rm -f -- {key}; fi; "
            f"if [ -d {mount} ] && ! findmnt -rn --mountpoint {mount} >/dev/null; then "
            f"rmdir -- {mount} 2>/dev/null || true; fi",
            "removing the key file",
        )

    def delete_partition(self) -> None:
        disk, partno = self.plan.disk, self.plan.partno
        if disk is None or partno is None:
            return  # not a partition (the tests' files)
        out = self.sh(f"sfdisk --json {q(disk)}", f"reading the partition table of {disk}")
        parts = json.loads(out).get("partitiontable", {}).get("partitions", [])
        there = [
            p
            for p in parts
            if p.get("node") == self.plan.node and p.get("name") == self.plan.partition_name
        ]
        if not there:
            return
        if probe(self.shell, self.plan.node).kind:
            raise self.fail(f"{self.plan.node} holds a signature again: not deleting it")
        self.sh(
            f"{SFDISK} --delete {q(disk)} {partno} || exit 1; {tell_kernel(disk)}",
            f"deleting partition {partno} of {disk}",
        )

    def retire_keys(self) -> None:
        self.key()  # kept for the done check
        for key in self.store.keys(self.volume):
            self.store.remove(self.volume, key.key_id)

    def check_done(self) -> None:
        if self.store.keys(self.volume):
            raise self.fail("the keystore still holds keys of the volume")
        ds = self.plan.dataset
        out = self.sh(
            f"awk -v k={q(ds)} '!/^[[:space:]]*#/ && $1==k' {q(self.layout.crypttab)} "
            "2>/dev/null; "
            f"awk -v k={q(self.layout.mount_point(ds))} '!/^[[:space:]]*#/ && $2==k' "
            f"{q(self.layout.fstab)} 2>/dev/null; "
            f"if [ -e {q(self.layout.key_file(ds))} ]; then echo keyfile; fi; "
            f"if cryptsetup isLuks {q(self.plan.node)} 2>/dev/null; then echo luks; fi",
            "checking the end state",
        )
        if out.strip():
            raise self.fail(f"left behind on {self.shell.where}: {out.strip()}")


def _drop_lines(path: str, field_no: int, value: str) -> str:
    """Shell: remove the uncommented lines of ``path`` whose field ``field_no`` is ``value``.

    Written aside, synced and renamed, so a crash leaves the old file or the new one.
    """
    tmp = q(f"{Path(path).parent}/.{Path(path).name}.campus-tmp")
    match = f"!/^[[:space:]]*#/ && ${field_no}==k"
    return (
        f"if [ -f {q(path)} ] && awk -v k={q(value)} '{match} {{f=1}} END {{exit !f}}' "
        f"{q(path)}; then\n"
        f"  awk -v k={q(value)} '!({match})' {q(path)} > {tmp} && chmod 644 {tmp} && "
        f"sync -- {tmp} && mv -f -- {tmp} {q(path)} || exit 1\n"
        "  changed=1\n"
        "fi\n"
    )


def stopped_error(op: str, journal: Journal, exc: CampusProvisionError) -> VolumeError:
    last = journal.last
    where = f"{last.step} ({last.state})" if last else "the start"
    return VolumeError(
        f"{journal.volume}: {op} {journal.op} stopped at {where}: {exc}; "
        f"'campus-provision volumes resume' finishes it (journal {journal.path})"
    )


def retire(
    store: VolumeKeystore,
    volume: str,
    shell: Shell,
    journal_dir: Path,
    *,
    layout: Layout | None = None,
    device: str | None = None,
    stop_after: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> OperationResult:
    """Crypto-erase ``volume`` on its PC and forget it (see the module docstring).

    Refuses, changing nothing, when an operation on the volume is unfinished, the
    keystore has no key of it (or the passphrase is wrong), or the device does not hold
    this dataset's LUKS volume. ``stop_after`` leaves it there (the tests' crash).
    """
    layout = layout or Layout()
    if stop_after is not None and stop_after not in RETIRE_STEPS:
        raise VolumeError(f"{stop_after!r}: not a step of retire ({', '.join(RETIRE_STEPS)})")
    refuse_unfinished(journal_dir, volume)
    with volume_lock(journal_dir, volume):
        refuse_unfinished(journal_dir, volume)
        plan = plan_retire(store, volume, shell, layout, device)
        journal = Journal.create(
            journal_dir, volume, KIND_RETIRE, plan.key_ids[-1], "plan",
            keys_before=tuple(plan.key_ids),
        )  # fmt: skip
        journal.record("plan", DONE, note=plan.note())
        engine = RetireSteps(store, shell, layout, journal, plan, progress)
        if stop_after == "plan":
            outcome = "stopped after plan"
        else:
            try:
                outcome = engine.forward("boot-entries", stop_after)
            except CampusProvisionError as exc:
                raise stopped_error("retire", journal, exc) from exc
    return _result(journal, outcome, plan)


def _result(journal: Journal, outcome: str, plan: RetirePlan | None) -> OperationResult:
    detail: dict[str, Any] = {}
    if plan is not None:
        detail = {"label": plan.label, "device": plan.node, "keys_removed": plan.key_ids}
    return OperationResult(
        journal.op, journal.kind, journal.volume, journal.old_key, journal.new_key,
        outcome, journal.path, detail,
    )  # fmt: skip


def resume_one(
    store: VolumeKeystore,
    journal: Journal,
    shell: Shell,
    *,
    layout: Layout | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> OperationResult:
    """Finish the operation ``journal`` records (a kind in :data:`KINDS`), under its lock.

    The caller holds no lock; this takes the volume's, re-reads the journal and goes on
    from its last record: a retire or a load is carried to its end; a create is closed
    when the PC shows the volume made (else VolumeError: 'volumes create' finishes it). An
    operation that had not got past its plan is closed as ``rolled-back`` (nothing had
    changed); a finished one is returned as it is.
    """
    layout = layout or Layout()
    if journal.kind not in KINDS:
        raise VolumeError(f"{journal.path}: a {journal.kind} journal, not one of {KINDS}")
    journal_dir = journal.path.parents[2]
    with volume_lock(journal_dir, journal.volume):
        journal = Journal.read(journal.path)
        if journal.finished(FINAL_STEPS):
            return _result(journal, f"already {journal.records[-1].step}", None)
        planned = next((r for r in journal.records if r.step == "plan" and r.state == DONE), None)
        if planned is None:
            journal.record("rolled-back", INTENT, note="stopped before its plan was written")
            journal.record("rolled-back", DONE)
            return _result(
                journal, "rolled back (stopped before its plan: nothing had changed)", None
            )
        last = journal.records[-1]
        note = f"resumed after {last.step} ({last.state})"
        try:
            if journal.kind == KIND_LOAD:
                return _resume_load(journal, planned.note, shell, layout, progress, note)
            if journal.kind == KIND_CREATE:
                return _resume_create(store, journal, shell, layout, note)
            if journal.kind == "swap":
                from campus_provision.volumes.swap import resume_swap  # noqa: PLC0415 - a cycle

                return resume_swap(store, journal, planned.note, shell, layout, progress, note)
            plan = RetirePlan.from_note(planned.note, journal.path)
            store.verify_passphrase(journal.volume)
            engine = RetireSteps(store, shell, layout, journal, plan, progress)
            index = RETIRE_STEPS.index(last.step) + (1 if last.state == DONE else 0)
            outcome = engine.forward(RETIRE_STEPS[index], None, note=note)
        except CampusProvisionError as exc:
            raise stopped_error(journal.kind, journal, exc) from exc
    return _result(journal, outcome, plan)


# -- load ------------------------------------------------------------------------------------


def _manifest_digest(source: Path) -> str:
    return sha256_file(source / LOAD_MANIFEST)


def _current_key(store: VolumeKeystore, volume: str) -> str:
    current = store.current(volume)
    if current is None:
        raise VolumeError(
            f"{volume}: no key in the keystore: create the volume first "
            "('campus-provision volumes create')"
        )
    return current.key_id


def load_volume(
    store: VolumeKeystore,
    volume: str,
    shell: Shell,
    journal_dir: Path,
    source: Path | MirrorSource,
    *,
    layout: Layout | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> OperationResult:
    """Load the dataset files in ``source`` onto ``volume``'s mounted volume, journaled.

    ``source`` is a directory here, checked against its manifest first (VolumeError,
    nothing sent, if it does not match; see :mod:`campus_provision.volumes.load`), or a
    signed manifest on the mirror (:func:`~campus_provision.volumes.mirror.mirror_source`),
    whose files the PC fetches itself.
    """
    layout = layout or Layout()
    split_volume_id(volume)
    if isinstance(source, Path):
        source = source.absolute()
        check_source(source)
    refuse_unfinished(journal_dir, volume)
    with volume_lock(journal_dir, volume):
        refuse_unfinished(journal_dir, volume)
        key_id = _current_key(store, volume)
        journal = Journal.create(journal_dir, volume, KIND_LOAD, key_id, "plan")
        if isinstance(source, Path):
            plan = {"source": str(source), "manifest_sha256": _manifest_digest(source)}
        else:
            plan = {"mirror": source.base_url, "manifest_sha256": source.manifest_sha256}
        journal.record("plan", DONE, note=json.dumps(plan))
        try:
            return _forward_load(journal, source, shell, layout, progress, None)
        except CampusProvisionError as exc:
            raise stopped_error("load", journal, exc) from exc


def _forward_load(
    journal: Journal,
    source: Path | MirrorSource,
    shell: Shell,
    layout: Layout,
    progress: Callable[[str], None],
    note: str | None,
) -> OperationResult:
    _, dataset = split_volume_id(journal.volume)
    files = check_source(source) if isinstance(source, Path) else list(source.files)
    journal.record("send", INTENT, note=note)
    loaded = load_files(shell, layout.mount_point(dataset), files,
                        mapper=f"/dev/mapper/{dataset}", progress=progress)  # fmt: skip
    journal.record("send", DONE, note=f"{loaded.sent} sent, {loaded.skipped} already there")
    journal.record("done", INTENT)
    journal.record("done", DONE)
    detail = {"files": len(files), "sent": loaded.sent, "skipped": loaded.skipped,
              "bytes_sent": loaded.bytes_sent, "source": str(source)}  # fmt: skip
    return OperationResult(journal.op, journal.kind, journal.volume, journal.old_key, None,
                           "loaded", journal.path, detail)  # fmt: skip


def _resume_load(
    journal: Journal,
    plan_note: str | None,
    shell: Shell,
    layout: Layout,
    progress: Callable[[str], None],
    note: str,
) -> OperationResult:
    try:
        plan = json.loads(plan_note or "")
        digest = str(plan["manifest_sha256"])
        mirror = plan.get("mirror")
        source = None if mirror is not None else Path(plan["source"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VolumeError(f"{journal.path}: the plan record of this load is damaged") from None
    if source is None:
        # The manifest whose signature was checked when the load began, or nothing.
        return _forward_load(journal, refetch(shell, str(mirror), digest), shell, layout,
                             progress, note)  # fmt: skip
    if not (source / LOAD_MANIFEST).is_file() or _manifest_digest(source) != digest:
        raise VolumeError(
            f"{source}: its manifest changed (or went) since the load began: not resuming "
            "with other data; restore it, or load again"
        )
    return _forward_load(journal, source, shell, layout, progress, note)


# -- create ----------------------------------------------------------------------------------


def begin_create(journal_dir: Path, volume: str, key_id: str, note: str) -> Journal:
    """The journal of one volume's create, up to the provision step's intent.

    An unfinished create journal of the volume is carried on (``volumes create`` again is
    how a create is finished); any other unfinished operation refuses.
    """
    with volume_lock(journal_dir, volume):
        pending = unfinished(journal_dir, volume)
        for j in pending:
            if j.kind != KIND_CREATE:
                refuse_unfinished(journal_dir, volume)
        if pending:
            journal = pending[-1]
            journal.record("provision", INTENT, note="again: " + note)
            return journal
        journal = Journal.create(journal_dir, volume, KIND_CREATE, key_id, "plan")
        journal.record("plan", DONE, note=note)
        journal.record("provision", INTENT)
        return journal


def end_create(journal: Journal, ok: bool, note: str | None = None) -> None:
    """Close a create's journal after the playbook: done when the host succeeded."""
    if ok:
        journal.record("provision", DONE, note=note)
        journal.record("done", INTENT)
        journal.record("done", DONE)


def volume_in_place(shell: Shell, dataset: str, label: str | None, layout: Layout) -> bool:
    """Whether the PC shows ``dataset``'s volume made: LUKS (labelled ``label``), mounted."""
    found = probe(shell, layout.device(dataset))
    if found.kind != "crypto_LUKS" or (label is not None and found.label != label):
        return False
    mount = q(layout.mount_point(dataset))
    return shell.run(f"findmnt -rn --mountpoint {mount}").returncode == 0


def _resume_create(
    store: VolumeKeystore, journal: Journal, shell: Shell, layout: Layout, note: str
) -> OperationResult:
    _, dataset = split_volume_id(journal.volume)
    if not volume_in_place(shell, dataset, None, layout):
        raise VolumeError(
            f"{journal.volume}: the volume is not made yet: run 'campus-provision volumes "
            "create' again (it carries this create on)"
        )
    journal.record("provision", DONE, note=note)
    journal.record("done", INTENT)
    journal.record("done", DONE)
    del store
    return OperationResult(journal.op, journal.kind, journal.volume, None or journal.old_key,
                           journal.old_key, "created", journal.path)  # fmt: skip
