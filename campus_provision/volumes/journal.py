"""The operations journal: what a volume operation is about to do, and what it has done.

One JSON-lines file per operation on one volume, in a tree only the operator can open::

    <journal_dir>/<hostname>/<dataset-id>/<op-id>.jsonl     (directories 0700, files 0600)

``<journal_dir>`` is ``<keys_dir>/journal`` by default. Before a step acts, a record with
state ``intent`` is appended and fsync'd; after it, one with state ``done``. So after a
crash the last record says where the operation stood: an ``intent`` without its ``done``
is a step that may or may not have happened, and whoever resumes must look at the volume
to know. A record names keys by id only (never a key, its hash or anything derived from
it) and carries the operation, the volume, the step, the time and the OS user, all that a
signed record of the operation needs.

A crash while appending can leave the last line torn; it is ignored (its step had not
begun, since a step acts only after its intent is on disk) and cut off before the next
append. Any other bad line makes the journal unreadable: it needs an operator, not a guess.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campus_provision.keys import KeyStoreError
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.signing import private_dir
from campus_provision.keys.volumes import check_key_id, split_volume_id
from campus_provision.volumes import VolumeError

JOURNAL_DIR = "journal"
SUFFIX = ".jsonl"
FORMAT = 1
INTENT, DONE = "intent", "done"
_OP_RE = re.compile(r"op-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
_LOCK = ".lock"


def default_journal_dir(keys_dir: Path) -> Path:
    """Where the journals live by default: beside the keys they are about."""
    return keys_dir / JOURNAL_DIR


@dataclass(frozen=True)
class Record:
    """One line of a journal (key ids only)."""

    op: str
    kind: str
    volume: str
    old_key: str
    new_key: str | None
    step: str
    state: str
    time: str
    who: str
    slot: int | None = None
    keys_before: tuple[str, ...] | None = None
    note: str | None = None
    v: int = FORMAT

    def to_json(self) -> str:
        data: dict[str, object] = {
            "v": self.v, "op": self.op, "kind": self.kind, "volume": self.volume,
            "old_key": self.old_key, "new_key": self.new_key, "step": self.step,
            "state": self.state, "time": self.time, "who": self.who,
        }  # fmt: skip
        if self.slot is not None:
            data["slot"] = self.slot
        if self.keys_before is not None:
            data["keys_before"] = list(self.keys_before)
        if self.note is not None:
            data["note"] = self.note
        return json.dumps(data, ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str, source: Path) -> Record:
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("v") != FORMAT:
                raise ValueError("not a journal record of format 1")
            new_key = data.get("new_key")
            keys_before = data.get("keys_before")
            record = cls(
                op=_str(data, "op"), kind=_str(data, "kind"), volume=_str(data, "volume"),
                old_key=check_key_id(_str(data, "old_key")),
                new_key=None if new_key is None else check_key_id(str(new_key)),
                step=_str(data, "step"), state=_str(data, "state"), time=_str(data, "time"),
                who=_str(data, "who"),
                slot=_int_or_none(data.get("slot")),
                keys_before=None if keys_before is None
                else tuple(check_key_id(str(k)) for k in keys_before),
                note=None if data.get("note") is None else str(data["note"]),
            )  # fmt: skip
        except (ValueError, TypeError, KeyStoreError) as exc:
            raise VolumeError(f"{source}: a damaged journal record: {exc}") from None
        if record.state not in (INTENT, DONE):
            raise VolumeError(f"{source}: a journal record in state {record.state!r}")
        return record


def _str(data: dict[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"no {name}")
    return value


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("a slot that is not a number")
    return value


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _line(record: Record) -> bytes:
    return (record.to_json() + "\n").encode("ascii")


def volume_dir(journal_dir: Path, volume: str) -> Path:
    """The journals' directory of ``volume`` (whether or not it exists)."""
    hostname, dataset = split_volume_id(volume)
    return journal_dir / hostname / dataset


@dataclass
class Journal:
    """One operation's journal file and the records read from or written to it."""

    path: Path
    op: str
    kind: str
    volume: str
    old_key: str
    new_key: str | None = None
    records: list[Record] = field(default_factory=list)
    torn_at: int | None = None

    @classmethod
    def create(
        cls,
        journal_dir: Path,
        volume: str,
        kind: str,
        old_key: str,
        first_step: str,
        *,
        keys_before: tuple[str, ...] | None = None,
    ) -> Journal:
        """A new journal for an operation on ``volume``, holding ``first_step``'s intent.

        The file appears whole (written aside, fsync'd, renamed): never empty, so a journal
        on disk always says which operation it is.
        """
        directory = volume_dir(journal_dir, volume)
        for d in (journal_dir, directory.parent, directory):
            private_dir(d)
        now = dt.datetime.now(dt.UTC)
        op = f"op-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        journal = cls(directory / f"{op}{SUFFIX}", op, kind, volume, check_key_id(old_key))
        record = journal._make(first_step, INTENT, None, keys_before, None)
        if journal.path.exists():
            raise VolumeError(f"{journal.path}: a journal with this id exists already")
        try:
            write_atomic(journal.path, _line(record), 0o600)
        except OSError as exc:
            raise VolumeError(
                f"{journal.path}: cannot create the journal: {exc.strerror}"
            ) from None
        journal.records.append(record)
        return journal

    @classmethod
    def read(cls, path: Path) -> Journal:
        """The journal at ``path`` (VolumeError if damaged; a torn last line is dropped)."""
        op = path.name.removesuffix(SUFFIX)
        if not path.name.endswith(SUFFIX) or not _OP_RE.fullmatch(op):
            raise VolumeError(f"{path}: not a journal file name (expected <op-id>{SUFFIX})")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VolumeError(f"{path}: cannot read the journal: {exc.strerror}") from None
        whole = data.rfind(b"\n") + 1  # bytes in complete lines: every record ends in \n
        lines = data[:whole].decode("utf-8", "replace").splitlines()
        records = [Record.from_json(line, path) for line in lines]
        if not records:
            raise VolumeError(f"{path}: a journal without a complete record")
        first = records[0]
        if len({(r.op, r.kind, r.volume, r.old_key) for r in records}) != 1:
            raise VolumeError(f"{path}: records of more than one operation")
        if first.op != op:
            raise VolumeError(f"{path}: holds operation {first.op}, not {op} (renamed?)")
        new_key = next((r.new_key for r in reversed(records) if r.new_key), None)
        journal = cls(path, op, first.kind, first.volume, first.old_key, new_key, records)
        # A torn tail was never acted upon (a step acts only once its intent line is whole);
        # it is cut off before the next append, which would otherwise join it.
        journal.torn_at = whole if whole < len(data) else None
        return journal

    @property
    def last(self) -> Record | None:
        return self.records[-1] if self.records else None

    def finished(self, final_steps: tuple[str, ...]) -> bool:
        """Whether the last record is the ``done`` of one of ``final_steps``."""
        last = self.last
        return last is not None and last.state == DONE and last.step in final_steps

    def _make(
        self,
        step: str,
        state: str,
        slot: int | None,
        keys_before: tuple[str, ...] | None,
        note: str | None,
    ) -> Record:
        return Record(
            op=self.op, kind=self.kind, volume=self.volume, old_key=self.old_key,
            new_key=self.new_key, step=step, state=state, time=_now(), who=_who(),
            slot=slot, keys_before=keys_before, note=note,
        )  # fmt: skip

    def record(
        self,
        step: str,
        state: str,
        *,
        slot: int | None = None,
        keys_before: tuple[str, ...] | None = None,
        note: str | None = None,
    ) -> Record:
        """Append one record and fsync it; only then may the step act (or count as done)."""
        record = self._make(step, state, slot, keys_before, note)
        line = _line(record)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                if self.torn_at is not None:
                    os.ftruncate(fd, self.torn_at)
                    self.torn_at = None
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise VolumeError(
                f"{self.path}: cannot append to the journal: {exc.strerror}"
            ) from None
        self.records.append(record)
        return record


def journals(journal_dir: Path, volume: str | None = None) -> list[Journal]:
    """Every journal under ``journal_dir`` (of ``volume`` only, if given), oldest first."""
    if volume is not None:
        dirs = [volume_dir(journal_dir, volume)]
    else:
        dirs = [d for h in sorted(journal_dir.glob("*")) if h.is_dir() for d in sorted(h.glob("*"))]
    found = [Journal.read(p) for d in dirs if d.is_dir() for p in sorted(d.glob("*" + SUFFIX))]
    for j in found:
        if volume_dir(journal_dir, j.volume) != j.path.parent:
            raise VolumeError(f"{j.path}: a journal of {j.volume} in another volume's directory")
    return sorted(found, key=lambda j: (j.records[0].time, j.op))


@contextlib.contextmanager
def volume_lock(journal_dir: Path, volume: str) -> Iterator[None]:
    """Hold the volume's lock (no second operation on it meanwhile, from any process)."""
    directory = volume_dir(journal_dir, volume)
    for d in (journal_dir, directory.parent, directory):
        private_dir(d)
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VolumeError(
                f"{volume}: another operation on this volume is running now (lock "
                f"{directory / _LOCK}); wait for it to end"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
