"""The journals of load and create, and how resume_one finishes them (a directory here
stands in for the PC's mounted volume: there is no device-mapper on this machine)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from campus_provision.volumes import VolumeError
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals
from campus_provision.volumes.lifecycle import (
    FINAL_STEPS,
    LOAD_STEPS,
    Layout,
    begin_create,
    end_create,
    load_volume,
    resume_one,
)
from campus_provision.volumes.remote import LocalShell
from campus_provision.volumes.swap import SwapPlan, check_version
from tests.volumes.conftest import VOLUME, Vol


def _source(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
    )
    return directory


def test_load_is_journaled_and_ends_done(vol: Vol, mounted: Layout, tmp_path: Path) -> None:
    source = _source(tmp_path / "src", {"a.csv": b"1\n", "b.csv": b"2\n"})
    result = load_volume(vol.store, VOLUME, LocalShell(), vol.journal_dir, source, layout=mounted)
    assert result.outcome == "loaded" and result.detail["sent"] == 2
    assert (Path(mounted.mount_point("ds1")) / "b.csv").read_bytes() == b"2\n"
    (journal,) = journals(vol.journal_dir, VOLUME)
    assert [(r.step, r.state) for r in journal.records] == [
        (s, st) for s in LOAD_STEPS for st in (INTENT, DONE)
    ]
    assert journal.kind == "load" and journal.old_key == vol.old_key


def test_an_interrupted_load_resumes_from_its_source(
    vol: Vol, mounted: Layout, tmp_path: Path
) -> None:
    source = _source(tmp_path / "src", {"a.csv": b"1\n"})
    journal = Journal.create(vol.journal_dir, VOLUME, "load", vol.old_key, "plan")
    digest = hashlib.sha256((source / "SHA256SUMS").read_bytes()).hexdigest()
    note = json.dumps({"source": str(source), "manifest_sha256": digest})
    journal.record("plan", DONE, note=note)
    journal.record("send", INTENT)  # the crash: sending had begun
    with pytest.raises(VolumeError, match="unfinished"):
        load_volume(vol.store, VOLUME, LocalShell(), vol.journal_dir, source, layout=mounted)
    result = resume_one(vol.store, journal, LocalShell(), layout=mounted)
    assert result.outcome == "loaded"
    assert Journal.read(journal.path).finished(FINAL_STEPS)
    assert (Path(mounted.mount_point("ds1")) / "a.csv").read_bytes() == b"1\n"


def test_a_load_whose_source_changed_is_not_resumed(
    vol: Vol, mounted: Layout, tmp_path: Path
) -> None:
    source = _source(tmp_path / "src", {"a.csv": b"1\n"})
    journal = Journal.create(vol.journal_dir, VOLUME, "load", vol.old_key, "plan")
    journal.record("plan", DONE, note=f'{{"source": "{source}", "manifest_sha256": "{"0" * 64}"}}')
    with pytest.raises(VolumeError, match="its manifest changed"):
        resume_one(vol.store, journal, LocalShell(), layout=mounted)
    assert not Journal.read(journal.path).finished(FINAL_STEPS)
    assert not (Path(mounted.mount_point("ds1")) / "a.csv").exists()


def test_a_create_is_carried_on_by_the_next_create(vol: Vol) -> None:
    journal = begin_create(vol.journal_dir, VOLUME, vol.old_key, "{}")
    again = begin_create(vol.journal_dir, VOLUME, vol.old_key, "{}")
    assert again.path == journal.path  # the same operation, not a second one
    # resume cannot run the role: it closes the create only once the PC shows the volume.
    with pytest.raises(VolumeError, match="run 'campus-provision volumes create' again"):
        resume_one(vol.store, again, LocalShell(), layout=Layout(by_partlabel="/nonexistent"))
    end_create(again, True)
    assert Journal.read(journal.path).finished(FINAL_STEPS)


def test_a_create_refuses_while_another_operation_is_unfinished(vol: Vol) -> None:
    Journal.create(vol.journal_dir, VOLUME, "retire", vol.old_key, "plan")
    with pytest.raises(VolumeError, match=r"retire .* is unfinished"):
        begin_create(vol.journal_dir, VOLUME, vol.old_key, "{}")


@pytest.mark.parametrize("version", ["", "v 2", "v2/../x", "a" * 50])
def test_a_swap_version_must_fit_a_luks_label(version: str) -> None:
    with pytest.raises(VolumeError):
        check_version("card-spending-2025", version)
    assert check_version("card-spending-2025", "2026.1+r2") == "2026.1+r2"


def test_a_swap_plan_survives_the_journal(tmp_path: Path) -> None:
    plan = SwapPlan(
        dataset="ds1", version="v2", old_label="ds1@v1", old_node="/dev/vdb1", old_uuid="u",
        old_partno=1, disk="/dev/vdb", sectors=2048, temp="cpswap-0123abcd", source="/x",
        manifest_sha256="0" * 64, old_header_bytes=16 << 20, pbkdf={"pbkdf": "argon2id"},
    )  # fmt: skip
    assert SwapPlan.from_note(plan.note(), tmp_path) == plan
    assert plan.label == "ds1@v2" and len(plan.temp) <= 36
    with pytest.raises(VolumeError, match="damaged"):
        SwapPlan.from_note('{"dataset": "ds1"}', tmp_path)
