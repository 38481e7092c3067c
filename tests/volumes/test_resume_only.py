"""resume(volumes=…): only the named volumes' rotations are resumed (the CLI's filters)."""

from __future__ import annotations

from campus_provision.volumes.journal import journals
from campus_provision.volumes.rotate import FINAL_STEPS, resume, rotate_key
from tests.volumes.conftest import VOLUME, Vol


def test_resume_leaves_other_volumes_alone(vol: Vol) -> None:
    rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir, stop_after="add-slot")
    assert resume(vol.store, vol.journal_dir, lambda _: vol.backend, volumes={"pc-02/ds1"}) == []
    (journal,) = journals(vol.journal_dir)
    assert not journal.finished(FINAL_STEPS)
    (done,) = resume(vol.store, vol.journal_dir, lambda _: vol.backend, volumes={VOLUME})
    assert done.outcome == "rotated"
