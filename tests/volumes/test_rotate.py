"""rotate-key on a real LUKS2 file: the end state, the journal, and a SIGKILL at every step.

The invariant, checked at every journal record of a rotation and around every crash: the
volume opens with a key the keystore holds, and the key file on the "PC" opens it.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from campus_provision.keys import KeyStoreError
from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import VolumeBackend
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals
from campus_provision.volumes.rotate import (
    FINAL_STEPS,
    ROLLBACK_STEPS,
    STEPS,
    resume,
    rotate_key,
)
from tests.volumes.conftest import OTHER_PASSPHRASE, VOLUME, Vol

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60

# The rotation in a process of its own, paused for the kill right after the named step's
# intent is on disk ("intent"), or right after the step acted, before its done ("action").
CHILD = r"""
import sys, time
from pathlib import Path
from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.volumes import journal as J
from campus_provision.volumes.backend import LocalFileBackend
from campus_provision.volumes.rotate import rotate_key
from tests.volumes.conftest import CHEAP, PASSPHRASE, VOLUME

step, phase, keys_dir, header, keyfile, journal_dir = sys.argv[1:7]

def pause():
    print("paused", flush=True)
    time.sleep(120)
    sys.exit("not killed")

create, record = J.Journal.create.__func__, J.Journal.record

def create_hook(cls, *args, **kwargs):
    journal = create(cls, *args, **kwargs)
    if (step, phase) == ("new-key", "intent"):
        pause()
    return journal

def record_hook(self, name, state, **kwargs):
    if (name, state, phase) == (step, "done", "action"):
        pause()
    result = record(self, name, state, **kwargs)
    if (name, state, phase) == (step, "intent", "intent"):
        pause()
    return result

J.Journal.create = classmethod(create_hook)
J.Journal.record = record_hook
store = VolumeKeystore(Path(keys_dir), PASSPHRASE)
backend = LocalFileBackend(Path(header), Path(keyfile), pbkdf=CHEAP)
rotate_key(store, VOLUME, backend, Path(journal_dir))
sys.exit("the rotation ended without pausing")
"""


class Secrets:
    """Keys by id, unsealed once each (scrypt costs ~0.1 s a time)."""

    def __init__(self, vol: Vol) -> None:
        self.store = vol.store
        self.known: dict[str, bytes] = {vol.old_key: vol.old_secret}

    def __call__(self, key_id: str) -> bytes:
        if key_id not in self.known:
            self.known[key_id] = self.store.secret(VOLUME, key_id)
        return self.known[key_id]


def assert_invariant(vol: Vol, secrets: Secrets, when: str) -> None:
    keyfile = vol.keyfile.read_bytes()
    # The key file's key first: when it is held and opens, one key test proves both halves.
    held = sorted((k.key_id for k in vol.store.keys(VOLUME)), key=lambda k: secrets(k) != keyfile)
    opener = next((secrets(k) for k in held if vol.backend.key_opens(secrets(k))), None)
    assert opener is not None, f"{when}: the volume opens with none of the keystore's keys {held}"
    assert keyfile == opener or vol.backend.key_opens(keyfile), (
        f"{when}: the key file does not open the volume"
    )


def assert_rotated(vol: Vol, new_key: str, new_secret: bytes) -> None:
    assert [k.key_id for k in vol.store.keys(VOLUME)] == [new_key]
    assert vol.backend.key_opens(new_secret)
    assert not vol.backend.key_opens(vol.old_secret)
    assert len(vol.backend.active_slots()) == 1
    assert vol.keyfile.read_bytes() == new_secret
    assert stat.S_IMODE(vol.keyfile.stat().st_mode) == 0o600


def assert_as_before(vol: Vol) -> None:
    assert [k.key_id for k in vol.store.keys(VOLUME)] == [vol.old_key]
    assert vol.backend.key_opens(vol.old_secret)
    assert len(vol.backend.active_slots()) == 1
    assert vol.keyfile.read_bytes() == vol.old_secret


def steps_of(journal: Journal) -> list[tuple[str, str]]:
    return [(r.step, r.state) for r in journal.records]


def key_forms(secret: bytes) -> list[bytes]:
    """The key as text, and every encoding of it or its raw bytes a leak might take."""
    raw = base64.b64decode(secret)
    forms = [secret, base64.b64encode(secret), base64.urlsafe_b64encode(raw)]
    forms += [x.hex().encode() for x in (secret, raw)]
    forms += [x.hex().upper().encode() for x in (secret, raw)]
    return forms


def no_backend(volume: str) -> VolumeBackend:
    raise AssertionError(f"resume asked for the backend of {volume}: nothing to resume")


def test_full_rotation(vol: Vol, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets(vol)
    checked: list[str] = []
    record = Journal.record

    # Nothing acts between a step's done and the next one's intent: checking at every
    # intent, before the first and after the last checks every state the volume passes.
    def checking(self: Journal, step: str, state: str, **kw: object) -> object:
        if state == INTENT:
            assert_invariant(vol, secrets, f"before {step}")
            checked.append(step)
        return record(self, step, state, **kw)  # type: ignore[arg-type]

    assert_invariant(vol, secrets, "before new-key")
    monkeypatch.setattr(Journal, "record", checking)
    result = rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    monkeypatch.undo()

    assert result.outcome == "rotated" and result.old_key == vol.old_key
    assert result.new_key is not None and result.new_key != vol.old_key
    new_secret = secrets(result.new_key)
    assert_rotated(vol, result.new_key, new_secret)
    assert_invariant(vol, secrets, "the end")
    assert checked == list(STEPS[1:])  # new-key's intent is written by Journal.create

    journal = Journal.read(result.journal)
    assert steps_of(journal) == [(s, st) for s in STEPS for st in (INTENT, DONE)]
    assert journal.finished(FINAL_STEPS)
    for r in journal.records:
        assert (r.op, r.kind, r.volume, r.old_key) == (result.op, "rotate-key", VOLUME, vol.old_key)
        assert r.who and r.time.endswith("Z")
        assert r.new_key == (None if r.step == "new-key" and r.state == INTENT else result.new_key)
    assert journal.records[0].keys_before == (vol.old_key,)
    assert result.journal.parent == vol.journal_dir / "pc-01" / "ds1"
    assert stat.S_IMODE(result.journal.stat().st_mode) == 0o600
    for d in (vol.journal_dir, vol.journal_dir / "pc-01", result.journal.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    text = result.journal.read_bytes()
    for line in text.splitlines():
        json.loads(line)
    for secret in (vol.old_secret, new_secret):
        for form in key_forms(secret):
            assert form not in text


def test_two_rotations_in_a_row_and_resume_then_does_nothing(vol: Vol) -> None:
    first = rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    assert first.new_key is not None
    first_secret = vol.store.secret(VOLUME, first.new_key)
    second = rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    assert second.old_key == first.new_key and second.new_key not in (vol.old_key, first.new_key)
    assert second.new_key is not None
    assert_rotated(vol, second.new_key, vol.store.secret(VOLUME, second.new_key))
    assert not vol.backend.key_opens(first_secret)
    assert [j.op for j in journals(vol.journal_dir, VOLUME)] == [first.op, second.op]

    before = vol.snapshot()
    assert resume(vol.store, vol.journal_dir, no_backend) == []
    assert vol.snapshot() == before


def test_a_wrong_passphrase_changes_nothing(vol: Vol) -> None:
    before = vol.snapshot()
    wrong = VolumeKeystore(vol.keys_dir, OTHER_PASSPHRASE)
    with pytest.raises(KeyStoreError):
        rotate_key(wrong, VOLUME, vol.backend, vol.journal_dir)
    assert vol.snapshot() == before

    # And resuming an unfinished rotation with it writes nothing either.
    rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir, stop_after="install-keyfile")
    before = vol.snapshot()
    with pytest.raises(KeyStoreError):
        resume(wrong, vol.journal_dir, lambda _: vol.backend)
    assert vol.snapshot() == before


def test_stop_after_leaves_it_unfinished_and_blocks_a_second_rotation(vol: Vol) -> None:
    stopped = rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir, stop_after="add-slot")
    assert stopped.outcome == "stopped after add-slot"
    with pytest.raises(VolumeError, match=r"is unfinished .*: resume it first"):
        rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    [done] = resume(vol.store, vol.journal_dir, lambda _: vol.backend)
    assert (done.op, done.outcome) == (stopped.op, "rotated")
    assert done.new_key is not None
    assert_rotated(vol, done.new_key, vol.store.secret(VOLUME, done.new_key))


def test_refuses_a_volume_the_current_key_does_not_open(vol: Vol) -> None:
    vol.store.create(VOLUME)  # current now, but in no slot
    before = vol.snapshot()
    with pytest.raises(VolumeError, match=r"does not open with the keystore's current key"):
        rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    assert vol.snapshot() == before


def test_refuses_a_key_file_without_the_current_key(vol: Vol) -> None:
    vol.keyfile.write_bytes(b"B" * 88)
    before = vol.snapshot()
    with pytest.raises(VolumeError, match=r"key file of .* does not hold the current key"):
        rotate_key(vol.store, VOLUME, vol.backend, vol.journal_dir)
    assert vol.snapshot() == before


class NoAddKey:
    """A backend whose luksAddKey claims success and does nothing."""

    def __init__(self, inner: VolumeBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Callable[..., object]:
        return getattr(self.inner, name)  # type: ignore[no-any-return]

    def add_key(self, existing_key: bytes, new_key: bytes) -> int:
        return 7


def test_a_new_key_that_does_not_open_is_rolled_back(vol: Vol) -> None:
    backend: VolumeBackend = NoAddKey(vol.backend)  # type: ignore[assignment]
    with pytest.raises(VolumeError, match=r"did not open the volume after luksAddKey: rolled back"):
        rotate_key(vol.store, VOLUME, backend, vol.journal_dir)
    assert_as_before(vol)
    [journal] = journals(vol.journal_dir, VOLUME)
    assert steps_of(journal)[-2 * len(ROLLBACK_STEPS) :] == [
        (s, st) for s in ROLLBACK_STEPS for st in (INTENT, DONE)
    ]
    assert journal.finished(FINAL_STEPS)


def test_kill_slot_never_kills_the_last_slot_or_with_its_own_key(vol: Vol) -> None:
    [slot] = vol.backend.active_slots()
    with pytest.raises(VolumeError, match="it is the last"):
        vol.backend.kill_slot(slot, vol.old_secret)
    assert vol.backend.key_opens(vol.old_secret)
    new_secret = b"C" * 88
    new_slot = vol.backend.add_key(vol.old_secret, new_secret)
    with pytest.raises(VolumeError, match="the authorising key opens no other slot"):
        vol.backend.kill_slot(new_slot, new_secret)
    vol.backend.kill_slot(new_slot, vol.old_secret)
    vol.backend.kill_slot(new_slot, vol.old_secret)  # gone already: nothing to do
    assert vol.backend.active_slots() == [slot]


def run_until_paused(vol: Vol, step: str, phase: str) -> None:
    """Run the rotation in a child, wait (bounded) for it to pause at ``step``, SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [step, phase, vol.keys_dir, vol.header, vol.keyfile, vol.journal_dir]
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, args)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(child.stdout, selectors.EVENT_READ)
                ready = sel.select(timeout=WAIT_SECONDS)
            line = child.stdout.readline() if ready else b""
            if line != b"paused\n":
                child.kill()
                err = child.communicate(timeout=WAIT_SECONDS)[1].decode()
                pytest.fail(f"the rotation did not pause at {step} ({phase}): {err[-2000:]}")
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=WAIT_SECONDS) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()


# Killed after each step's intent (the step may or may not have begun), and after the
# action of each step that changes something (done, but not journaled as done): verify-new
# and done change nothing, so their "action" crash is their "intent" crash.
CRASHES = [(step, "intent") for step in STEPS] + [
    (step, "action")
    for step in ("new-key", "add-slot", "install-keyfile", "kill-old", "retire-old-key")
]


@pytest.mark.parametrize(("step", "phase"), CRASHES, ids=[f"{s}-{p}" for s, p in CRASHES])
def test_a_sigkill_at_any_step_then_resume(vol: Vol, step: str, phase: str) -> None:
    run_until_paused(vol, step, phase)
    secrets = Secrets(vol)
    assert_invariant(vol, secrets, f"killed at {step} ({phase})")
    for key in vol.store.keys(VOLUME):
        secrets(key.key_id)  # kept, to check the key after resume drops it
    [journal] = journals(vol.journal_dir, VOLUME)
    assert not journal.finished(FINAL_STEPS)
    assert journal.last is not None and (journal.last.step, journal.last.state) == (step, INTENT)

    [result] = resume(vol.store, vol.journal_dir, lambda _: vol.backend)

    assert_invariant(vol, secrets, "after resume")
    journal = Journal.read(journal.path)
    assert journal.finished(FINAL_STEPS)
    if step in ("new-key", "add-slot"):
        assert result.outcome == "rolled back"
        assert_as_before(vol)
        assert journal.last is not None and journal.last.step == "rolled-back"
        if result.new_key is not None:  # abandoned: its slot went before the key did
            assert not vol.backend.key_opens(secrets(result.new_key))
    else:
        assert result.outcome == "rotated"
        assert result.new_key is not None
        assert_rotated(vol, result.new_key, secrets(result.new_key))
    if phase == "action" and step == "new-key":
        assert result.new_key is not None  # found by keys_before, though never journaled
    text = journal.path.read_bytes()
    for secret in secrets.known.values():
        for form in key_forms(secret):
            assert form not in text
