"""retire on a real LUKS2 file: the volume is crypto-erased, the "PC" forgets it, and only
then the keystore; a stop after any step resumes to the same end.

The "PC" is this machine with its boot files in a temp directory (no device-mapper here:
unmount and close find nothing to do, as on a PC where the volume was never opened).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from campus_provision.keys import KeyStoreError
from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.volumes import VolumeError
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals
from campus_provision.volumes.lifecycle import (
    FINAL_STEPS,
    RETIRE_STEPS,
    Layout,
    resume_one,
    retire,
)
from campus_provision.volumes.remote import LocalShell
from tests.volumes.conftest import OTHER_PASSPHRASE, VOLUME, Vol, cryptsetup

OTHER_LINE = "other UUID=1234 /etc/keys/other.key luks,nofail"


def _pc(vol: Vol) -> Layout:
    root = vol.header.parent / "pc"
    for d in ("etc/keys", "srv/ds1", "srv/other"):
        (root / d).mkdir(parents=True)
    (root / "etc/crypttab").write_text(
        f"# keep me\n{OTHER_LINE}\nds1 UUID=abcd {root}/etc/keys/ds1.key luks,nofail\n",
        encoding="utf-8",
    )
    (root / "etc/fstab").write_text(
        f"/dev/mapper/ds1 {root}/srv/ds1 ext4 nodev 0 2\n/dev/mapper/other {root}/srv/other ext4 "
        "nodev 0 2\n",
        encoding="utf-8",
    )
    (root / "etc/keys/ds1.key").write_bytes(vol.old_secret)
    return Layout(
        crypttab=str(root / "etc/crypttab"), fstab=str(root / "etc/fstab"),
        key_dir=str(root / "etc/keys"), mount_root=str(root / "srv"), reload_systemd=False,
    )  # fmt: skip


def _is_luks(path: Path) -> bool:
    return subprocess.run([cryptsetup(), "isLuks", str(path)], check=False).returncode == 0


def _assert_retired(vol: Vol, layout: Layout) -> None:
    assert not _is_luks(vol.header)
    data = vol.header.read_bytes()
    assert data == bytes(len(data))  # the file was all header: all zeros now
    assert vol.store.keys(VOLUME) == []
    crypttab = Path(layout.crypttab).read_text(encoding="utf-8")
    assert crypttab == f"# keep me\n{OTHER_LINE}\n"
    fstab = Path(layout.fstab).read_text(encoding="utf-8")
    assert "ds1" not in fstab and "/dev/mapper/other" in fstab
    assert not Path(layout.key_file("ds1")).exists()
    assert not Path(layout.mount_point("ds1")).exists()
    assert Path(layout.mount_point("other")).is_dir()


def test_retire_erases_the_volume_then_forgets_it(vol: Vol) -> None:
    layout = _pc(vol)
    seen: list[str] = []
    result = retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
                    device=str(vol.header), progress=seen.append)  # fmt: skip
    assert result.outcome == "retired"
    assert result.old_key == vol.old_key and result.new_key is None
    assert result.detail["keys_removed"] == [vol.old_key]
    assert seen == [f"{VOLUME}: {s}" for s in RETIRE_STEPS[1:]]
    _assert_retired(vol, layout)
    (journal,) = journals(vol.journal_dir, VOLUME)
    assert journal.kind == "retire" and journal.finished(FINAL_STEPS)
    steps = [(r.step, r.state) for r in journal.records]
    assert steps == [(s, st) for s in RETIRE_STEPS for st in (INTENT, DONE)]
    text = journal.path.read_bytes()
    assert vol.old_secret not in text
    # The erase was proven (verify-erased done) before any key left the keystore.
    assert steps.index(("verify-erased", DONE)) < steps.index(("retire-keys", INTENT))


def test_retire_refuses_what_is_not_the_datasets_volume(vol: Vol, tmp_path: Path) -> None:
    layout = _pc(vol)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    for device, message in ((blank, "holds no volume"), (tmp_path / "none", "no such device")):
        with pytest.raises(VolumeError, match=message):
            retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
                   device=str(device))  # fmt: skip
    subprocess.run([cryptsetup(), "config", "--label", "other@1", str(vol.header)], check=True)
    with pytest.raises(VolumeError, match="labelled other@1, not ds1's LUKS volume"):
        retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
               device=str(vol.header))  # fmt: skip
    assert _is_luks(vol.header) and [k.key_id for k in vol.store.keys(VOLUME)] == [vol.old_key]
    assert journals(vol.journal_dir, VOLUME) == []


def test_a_wrong_passphrase_changes_nothing(vol: Vol) -> None:
    layout = _pc(vol)
    before = vol.snapshot()
    with pytest.raises(KeyStoreError):
        retire(VolumeKeystore(vol.keys_dir, OTHER_PASSPHRASE), VOLUME, LocalShell(),
               vol.journal_dir, layout=layout, device=str(vol.header))  # fmt: skip
    after = vol.snapshot()
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == before


@pytest.mark.parametrize("stop", RETIRE_STEPS[:-1])
def test_a_retire_stopped_after_any_step_resumes_to_the_end(vol: Vol, stop: str) -> None:
    layout = _pc(vol)
    result = retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
                    device=str(vol.header), stop_after=stop)  # fmt: skip
    assert result.outcome == f"stopped after {stop}"
    # Until the erase is proven, the keystore holds the key, and it opens the volume.
    if RETIRE_STEPS.index(stop) < RETIRE_STEPS.index("erase"):
        assert vol.backend.key_opens(vol.old_secret)
    if RETIRE_STEPS.index(stop) < RETIRE_STEPS.index("retire-keys"):
        assert [k.key_id for k in vol.store.keys(VOLUME)] == [vol.old_key]
    with pytest.raises(VolumeError, match="unfinished"):
        retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
               device=str(vol.header))  # fmt: skip
    (journal,) = journals(vol.journal_dir, VOLUME)
    resumed = resume_one(vol.store, journal, LocalShell(), layout=layout)
    assert resumed.outcome == "retired"
    _assert_retired(vol, layout)
    again = resume_one(vol.store, Journal.read(journal.path), LocalShell(), layout=layout)
    assert again.outcome == "already done"


def test_a_crash_inside_a_step_is_redone(vol: Vol) -> None:
    """The intent of erase is on disk, its done is not: resume erases (again) and goes on."""
    layout = _pc(vol)
    retire(vol.store, VOLUME, LocalShell(), vol.journal_dir, layout=layout,
           device=str(vol.header), stop_after="close")  # fmt: skip
    (journal,) = journals(vol.journal_dir, VOLUME)
    journal.record("erase", INTENT)
    assert resume_one(vol.store, journal, LocalShell(), layout=layout).outcome == "retired"
    _assert_retired(vol, layout)


def test_a_journal_stopped_before_its_plan_is_closed_as_rolled_back(vol: Vol) -> None:
    journal = Journal.create(vol.journal_dir, VOLUME, "retire", vol.old_key, "plan")
    result = resume_one(vol.store, journal, LocalShell(), layout=_pc(vol))
    assert result.outcome.startswith("rolled back (stopped before its plan")
    assert _is_luks(vol.header) and vol.store.keys(VOLUME)
    assert Journal.read(journal.path).finished(FINAL_STEPS)
