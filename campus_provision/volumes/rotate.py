"""``rotate-key``: give a dataset volume a new key, so that no crash can lock it out.

The steps, each journaled (intent, then done) before and after it acts:

1. ``new-key``: a new key in the keystore (which makes it the volume's current key).
2. ``add-slot``: ``luksAddKey`` the new key into a free slot, authorised by the old key.
3. ``verify-new``: the new key opens the volume, in a slot of its own.
4. ``install-keyfile``: the key file the PC unlocks with at boot holds the new key.
5. ``kill-old``: ``luksKillSlot`` the old key's slot, authorised by the new key.
6. ``retire-old-key``: the old key leaves the keystore.
7. ``done``: the end state, checked.

At every instant the volume opens with a key the keystore holds, and the key file opens
the volume: a key leaves the keystore only once no slot takes it, a slot is killed only
once the key file holds a key of another slot. Keys are addressed by id, never as "the
current key", since step 1 changes which key that is.

:func:`resume` finishes an interrupted rotation from its journal. Until the volume may
hold the new key (the last record is ``new-key``, or ``add-slot``'s intent) it rolls back:
the new key's slot, if any, is killed (by the old key) and only then the new key leaves
the keystore. From ``add-slot`` done on, it completes. Either way each step looks at the
volume, the key file and the keystore first (does the new key open? is the old slot
gone? does the key file hold the new key?) and does only what is still to do, so resuming
twice, or resuming a rotation that crashed inside a step, is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from campus_provision.errors import CampusProvisionError
from campus_provision.keys.volumes import VolumeKeystore, split_volume_id
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import LUKS2_SLOTS, VolumeBackend
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals, volume_lock

KIND = "rotate-key"
STEPS = (
    "new-key", "add-slot", "verify-new", "install-keyfile", "kill-old", "retire-old-key", "done",
)  # fmt: skip
ROLLBACK_STEPS = ("rollback-keyfile", "rollback-slot", "rollback-key", "rolled-back")
FINAL_STEPS = ("done", "rolled-back")
# Where resume rolls back: the volume may have a slot for the new key, but nobody has
# seen it open, so undoing leaves exactly the state the operator started from.
_BACK_FROM = {("new-key", INTENT), ("new-key", DONE), ("add-slot", INTENT)}
NEW_KEY_DID_NOT_OPEN = "the new key did not open the volume after luksAddKey"


@dataclass(frozen=True)
class RotationResult:
    """How one rotation (or its resumption) ended: ids only, never a key."""

    op: str
    volume: str
    old_key: str
    new_key: str | None
    outcome: str  # "rotated", "stopped after <step>", or "rolled back[: why]"
    journal: Path


class _NewKeyDoesNotOpenError(Exception):
    """The new key's slot is not there after add-slot: roll back."""


class _Rotation:
    """One rotation's steps, each idempotent: it checks the actual state before acting."""

    def __init__(
        self,
        store: VolumeKeystore,
        backend: VolumeBackend,
        journal: Journal,
        *,
        fresh: bool = False,
        known: dict[str, bytes] | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.journal = journal
        self.volume = journal.volume
        self._secrets = dict(known or {})
        self._note: str | None = None
        # True in rotate_key: no step has begun before, so none needs to look for its own
        # half-done work (every key test costs seconds of argon2 on a PC).
        self.fresh = fresh

    # -- helpers ---------------------------------------------------------------------------

    def held(self, key_id: str) -> bool:
        return any(k.key_id == key_id for k in self.store.keys(self.volume))

    def secret(self, key_id: str) -> bytes:
        if key_id not in self._secrets:
            self._secrets[key_id] = self.store.secret(self.volume, key_id)
        return self._secrets[key_id]

    @property
    def old(self) -> bytes:
        return self.secret(self.journal.old_key)

    @property
    def new(self) -> bytes:
        if self.journal.new_key is None:
            raise VolumeError(f"{self.journal.path}: no new key recorded past step new-key")
        return self.secret(self.journal.new_key)

    def step(self, name: str, action: Callable[[], int | None]) -> None:
        """Journal the intent, act, journal the outcome (with the slot acted on, if any)."""
        note, self._note = self._note, None
        self.journal.record(name, INTENT, note=note)
        slot = action()
        self.journal.record(name, DONE, slot=slot)

    def fail(self, what: str) -> VolumeError:
        return VolumeError(f"{self.volume}: {what} (journal {self.journal.path})")

    # -- forward ---------------------------------------------------------------------------

    def forward(self, start: str, stop_after: str | None, note: str | None = None) -> str:
        """Run the steps from ``start``; 'rotated', 'stopped after …' or 'rolled back'."""
        self._note = note
        actions: dict[str, Callable[[], int | None]] = {
            "add-slot": self.add_slot, "verify-new": self.verify_new,
            "install-keyfile": self.install_keyfile, "kill-old": self.kill_old,
            "retire-old-key": self.retire_old_key, "done": self.check_done,
        }  # fmt: skip
        for name in STEPS[STEPS.index(start) :]:
            try:
                self.step(name, actions[name])
            except _NewKeyDoesNotOpenError:
                self.backward(NEW_KEY_DID_NOT_OPEN)
                return f"rolled back: {NEW_KEY_DID_NOT_OPEN}"
            if name == stop_after and name != "done":
                return f"stopped after {name}"
        return "rotated"

    def add_slot(self) -> int:
        slot = None if self.fresh else self.backend.slot_of(self.new)
        return slot if slot is not None else self.backend.add_key(self.old, self.new)

    def verify_new(self) -> int:
        slot = self.backend.slot_of(self.new)
        if slot is None:
            raise _NewKeyDoesNotOpenError
        return slot

    def install_keyfile(self) -> None:
        if not self.backend.keyfile_holds(self.new):
            self.backend.install_keyfile(self.new)
        if not self.backend.keyfile_holds(self.new):
            raise self.fail(f"the key file of {self.backend.where} does not hold the new key")

    def kill_old(self) -> int | None:
        if not self.held(self.journal.old_key):
            raise self.fail(
                f"the old key {self.journal.old_key} left the keystore before its slot was "
                "killed: check the volume's slots by hand"
            )
        if not self.backend.keyfile_holds(self.new):
            raise self.fail("the key file does not hold the new key: not killing the old slot")
        return self._kill_all(self.old, authorised_by=self.new)

    def _kill_all(self, key: bytes, *, authorised_by: bytes) -> int | None:
        """Kill every slot ``key`` opens (the last one killed); the backend refuses to kill
        the volume's last slot, and cryptsetup a slot that ``authorised_by`` alone opens."""
        killed = None
        for _ in range(LUKS2_SLOTS):  # the key might be in several slots
            slot = self.backend.slot_of(key)
            if slot is None:
                return killed
            self.backend.kill_slot(slot, authorised_by)
            killed = slot
        raise self.fail(f"a key still opens after killing {LUKS2_SLOTS} slots")

    def retire_old_key(self) -> None:
        if self.held(self.journal.old_key):
            self.secret(self.journal.old_key)  # kept, so that step done can check it is dead
            self.store.remove(self.volume, self.journal.old_key)

    def check_done(self) -> int:
        slot = self.backend.slot_of(self.new)
        if slot is None or not self.held(str(self.journal.new_key)):
            raise self.fail("the new key is not in both the keystore and the volume")
        if not self.backend.keyfile_holds(self.new):
            raise self.fail("the key file does not hold the new key")
        if self.held(self.journal.old_key):
            raise self.fail("the old key is still in the keystore")
        return slot  # that the old key opens no slot, kill-old proved before it was done

    # -- backward --------------------------------------------------------------------------

    def find_new_key(self) -> str | None:
        """The new key's id: journaled, or made by step 1 just before a crash (or none)."""
        if self.journal.new_key is not None:
            return self.journal.new_key
        first = self.journal.records[0]
        if first.step != "new-key" or first.keys_before is None:
            raise self.fail("the journal does not say which keys were there before")
        made = [
            k.key_id
            for k in self.store.keys(self.volume)
            if k.key_id not in first.keys_before and k.created >= first.time
        ]
        if len(made) > 1:
            raise self.fail(f"several keys appeared during step new-key: {', '.join(made)}")
        if made:
            self.journal.new_key = made[0]
        return self.journal.new_key

    def backward(self, reason: str) -> None:
        """Undo: the key file back to the old key, the new slot killed, the new key dropped."""
        new_id = self.find_new_key()
        if not self.held(self.journal.old_key) or not self.backend.key_opens(self.old):
            raise self.fail(
                "cannot roll back: the old key is not in the keystore or does not open the "
                "volume; check the volume's slots and the keystore by hand"
            )
        self._note = f"rolling back: {reason}"

        def keyfile() -> None:
            if not self.backend.keyfile_holds(self.old):
                self.backend.install_keyfile(self.old)

        def slot() -> int | None:
            if new_id is None or not self.held(new_id):
                return None  # its slot goes before the key does: no key, no slot
            return self._kill_all(self.new, authorised_by=self.old)

        def key() -> None:
            if new_id is not None and self.held(new_id):
                self.store.remove(self.volume, new_id)

        def check() -> None:
            if not self.backend.keyfile_holds(self.old) or not self.backend.key_opens(self.old):
                raise self.fail("after rolling back, the old key does not open the volume")

        actions: tuple[Callable[[], int | None], ...] = (keyfile, slot, key, check)
        for name, action in zip(ROLLBACK_STEPS, actions, strict=True):
            self.step(name, action)


def _stopped(rotation: _Rotation, exc: CampusProvisionError) -> VolumeError:
    last = rotation.journal.last
    where = f"{last.step} ({last.state})" if last else "the start"
    return VolumeError(
        f"{rotation.volume}: rotation {rotation.journal.op} stopped at {where}: {exc}; "
        f"nothing is lost: resume completes or rolls it back (journal {rotation.journal.path})"
    )


def _refuse_unfinished(journal_dir: Path, volume_id: str) -> None:
    unfinished = [j for j in journals(journal_dir, volume_id) if not j.finished(FINAL_STEPS)]
    if unfinished:
        raise VolumeError(
            f"{volume_id}: rotation {unfinished[0].op} is unfinished ({unfinished[0].path}): "
            "resume it first"
        )


def rotate_key(
    store: VolumeKeystore,
    volume_id: str,
    backend: VolumeBackend,
    journal_dir: Path,
    *,
    stop_after: str | None = None,
) -> RotationResult:
    """Rotate ``volume_id``'s key from the keystore's current key to a new one.

    Refuses, changing nothing, when the passphrase is wrong, the volume does not open with
    the current key, its key file does not hold it, or a rotation of it is unfinished.
    ``stop_after`` (a step name) leaves the rotation there, for :func:`resume` to finish.
    """
    split_volume_id(volume_id)
    if stop_after is not None and stop_after not in STEPS:
        raise VolumeError(f"{stop_after!r}: not a step of {KIND} ({', '.join(STEPS)})")
    _refuse_unfinished(journal_dir, volume_id)
    old = store.current(volume_id)
    if old is None:
        raise VolumeError(
            f"{volume_id}: no key in the keystore; make one with "
            f"'campus-provision keys volume-create {volume_id}'"
        )
    old_secret = store.secret(volume_id, old.key_id)  # the passphrase is proven here
    if not backend.key_opens(old_secret):
        raise VolumeError(
            f"{volume_id}: {backend.where} does not open with the keystore's current key "
            f"{old.key_id}: not rotating (restore the key that opens it first)"
        )
    if not backend.keyfile_holds(old_secret):
        raise VolumeError(
            f"{volume_id}: the key file of {backend.where} does not hold the current key "
            f"{old.key_id}: not rotating (provision the PC again first)"
        )
    with volume_lock(journal_dir, volume_id):
        _refuse_unfinished(journal_dir, volume_id)
        current = store.current(volume_id)
        if current is None or current.key_id != old.key_id:
            raise VolumeError(f"{volume_id}: the keystore changed meanwhile: try again")
        keys_before = tuple(k.key_id for k in store.keys(volume_id))
        journal = Journal.create(
            journal_dir, volume_id, KIND, old.key_id, "new-key", keys_before=keys_before
        )
        rotation = _Rotation(store, backend, journal, fresh=True, known={old.key_id: old_secret})
        try:
            journal.new_key = store.create(volume_id).key_id
            journal.record("new-key", DONE)
            if stop_after == "new-key":
                outcome = "stopped after new-key"
            else:
                outcome = rotation.forward("add-slot", stop_after)
        except VolumeError as exc:
            if journal.finished(FINAL_STEPS):
                raise  # rolled back already: the message says so
            raise _stopped(rotation, exc) from exc
        except CampusProvisionError as exc:
            raise _stopped(rotation, exc) from exc
    if outcome.startswith("rolled back"):
        raise VolumeError(
            f"{volume_id}: {outcome.removeprefix('rolled back: ')}: rolled back (the volume, "
            f"its key file and the keystore are as before; journal {journal.path})"
        )
    return RotationResult(journal.op, volume_id, old.key_id, journal.new_key, outcome, journal.path)


def resume(
    store: VolumeKeystore,
    journal_dir: Path,
    backend_for: Callable[[str], VolumeBackend],
    *,
    volumes: Collection[str] | None = None,
) -> list[RotationResult]:
    """Complete or roll back every unfinished rotation under ``journal_dir``, oldest first.

    ``backend_for`` gives the backend of a volume id; ``volumes``, if given, limits the
    resumption to those volume ids. A finished journal is left as it is, so resuming when
    nothing is unfinished changes nothing.
    """
    results = []
    for found in journals(journal_dir):
        if found.kind != KIND or found.finished(FINAL_STEPS):
            continue
        if volumes is not None and found.volume not in volumes:
            continue
        store.verify_passphrase(found.volume)  # before the first write
        with volume_lock(journal_dir, found.volume):
            journal = Journal.read(found.path)  # as it is now that nobody else may write
            if journal.finished(FINAL_STEPS):
                continue
            rotation = _Rotation(store, backend_for(journal.volume), journal)
            try:
                outcome = _resume_one(rotation)
            except VolumeError as exc:
                if journal.finished(FINAL_STEPS):
                    raise
                raise _stopped(rotation, exc) from exc
            except CampusProvisionError as exc:
                raise _stopped(rotation, exc) from exc
            results.append(
                RotationResult(
                    journal.op,
                    journal.volume,
                    journal.old_key,
                    journal.new_key,
                    outcome,
                    journal.path,
                )
            )
    return results


def _resume_one(rotation: _Rotation) -> str:
    journal = rotation.journal
    last = journal.last
    if last is None:  # Journal.read refuses such a journal; for the type checker
        raise rotation.fail("an empty journal")
    stop = f"resumed after a stop at {last.step} ({last.state})"
    rolling_back = any(r.step in ROLLBACK_STEPS for r in journal.records)
    if rolling_back or (last.step, last.state) in _BACK_FROM:
        rotation.backward(stop)
        return "rolled back"
    if last.step not in STEPS:
        raise rotation.fail(f"a journal ending in an unknown step {last.step!r}")
    index = STEPS.index(last.step) + (1 if last.state == DONE else 0)
    return rotation.forward(STEPS[index], None, note=stop)
