"""The journal file: whole records only, a torn tail survives a crash, damage is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from campus_provision.volumes import VolumeError
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals

VOLUME = "pc-01/ds1"
OLD, NEW = "vk-20261126T120000Z-0123abcd", "vk-20261126T120500Z-4567cdef"


def make(tmp_path: Path) -> Journal:
    journal = Journal.create(
        tmp_path / "journal", VOLUME, "rotate-key", OLD, "new-key", keys_before=(OLD,)
    )
    journal.new_key = NEW
    journal.record("new-key", DONE)
    journal.record("add-slot", INTENT)
    return journal


def test_records_are_whole_lines_of_ids_in_a_private_file(tmp_path: Path) -> None:
    journal = make(tmp_path)
    assert journal.path == tmp_path / "journal" / "pc-01" / "ds1" / f"{journal.op}.jsonl"
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    lines = journal.path.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == ["new-key", "new-key", "add-slot"]
    assert set(json.loads(lines[0])) == {
        "v", "op", "kind", "volume", "old_key", "new_key", "step", "state", "time", "who",
        "keys_before",
    }  # fmt: skip
    again = Journal.read(journal.path)
    assert again.records == journal.records and again.new_key == NEW
    assert [j.op for j in journals(tmp_path / "journal")] == [journal.op]


def test_a_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path: Path) -> None:
    journal = make(tmp_path)
    with journal.path.open("ab") as fh:
        fh.write(b'{"v":1,"op":"op-2026')  # a crash while appending
    torn = Journal.read(journal.path)
    assert torn.records == journal.records
    torn.record("add-slot", DONE, slot=1)
    whole = Journal.read(journal.path)
    assert [(r.step, r.state) for r in whole.records][-2:] == [
        ("add-slot", INTENT),
        ("add-slot", DONE),
    ]
    assert whole.records[-1].slot == 1 and whole.torn_at is None


@pytest.mark.parametrize(
    "damage",
    [b"not json\n", b'{"v":1}\n', b'{"v":2,"op":"x"}\n'],
    ids=["not-json", "fields-missing", "unknown-format"],
)
def test_a_damaged_record_makes_the_journal_unreadable(tmp_path: Path, damage: bytes) -> None:
    journal = make(tmp_path)
    lines = journal.path.read_bytes().splitlines(keepends=True)
    journal.path.write_bytes(lines[0] + damage + lines[1])
    with pytest.raises(VolumeError, match=rf"{journal.path}: a damaged journal record"):
        Journal.read(journal.path)


def test_a_journal_in_another_volumes_directory_is_refused(tmp_path: Path) -> None:
    journal = make(tmp_path)
    moved = tmp_path / "journal" / "pc-02" / "ds1" / journal.path.name
    moved.parent.mkdir(parents=True, mode=0o700)
    journal.path.rename(moved)
    with pytest.raises(VolumeError, match="in another volume's directory"):
        journals(tmp_path / "journal")
