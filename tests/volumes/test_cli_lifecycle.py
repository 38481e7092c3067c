"""``volumes create | load | swap | retire`` through Typer's CliRunner: errors, dry runs, and a
whole retire on a LUKS2 file here.

The inventory is the example campus's rendered one (real ansible-inventory); sgm-a01's
card-spending-2025 volume is a LUKS2 file reached through ``/dev/disk/by-partlabel`` of a
temp directory and this machine's shell (the lab test runs the same over SSH on a VM).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from campus_provision.cli import app, volumes_lifecycle
from campus_provision.keys.signing import init_signing_key, load_public_key
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore, volume_id
from campus_provision.verify.evidence import verify_evidence
from campus_provision.volumes.journal import default_journal_dir, journals
from campus_provision.volumes.lifecycle import Layout, retire
from campus_provision.volumes.remote import LocalShell
from tests.conftest import EXAMPLE
from tests.fake_playbook import assert_passphrase_only_as_a_file, install_fake_ansible_playbook
from tests.volumes.conftest import CHEAP, PASSPHRASE, Mirror, cryptsetup, sparse_copy

HOST = "sgm-a01"
CARD = "card-spending-2025"
VOLUME = f"{HOST}/{CARD}"
runner = CliRunner()


@dataclass
class Pc:
    root: Path
    keys_dir: Path
    store: VolumeKeystore
    passphrase_file: Path
    layout: Layout

    @property
    def volume(self) -> Path:
        return self.root / "card.luks"

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--limit", HOST, "--keys-dir", str(self.keys_dir),
                "--passphrase-file", str(self.passphrase_file)]  # fmt: skip


@pytest.fixture(scope="session")
def pc_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pc")
    store = VolumeKeystore(root / "keys", PASSPHRASE)
    init_signing_key(root / "keys", PASSPHRASE)
    key = store.create(VOLUME)
    with (root / "card.luks").open("wb") as fh:
        fh.truncate(16 << 20)
    done = subprocess.run(
        [cryptsetup(), "luksFormat", "--batch-mode", "--type", "luks2", *CHEAP.args(),
         "--label", f"{CARD}@2025.09", "--key-file=-", f"--keyfile-size={KEYFILE_BYTES}",
         str(root / "card.luks")],
        input=store.secret(VOLUME, key.key_id), capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def pc(pc_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pc]:
    keys_dir = tmp_path / "keys"
    shutil.copytree(pc_template / "keys", keys_dir)
    sparse_copy(pc_template / "card.luks", tmp_path / "card.luks")
    for d in ("etc/keys", f"srv/{CARD}", "by-partlabel"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "by-partlabel" / CARD).symlink_to(tmp_path / "card.luks")
    (tmp_path / "etc/crypttab").write_text(f"{CARD} UUID=x {tmp_path}/etc/keys/{CARD}.key luks\n")
    (tmp_path / "etc/fstab").write_text(
        f"/dev/mapper/{CARD} {tmp_path}/srv/{CARD} ext4 nodev 0 2\n"
    )
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
    passphrase_file.chmod(0o600)
    layout = Layout(
        crypttab=str(tmp_path / "etc/crypttab"), fstab=str(tmp_path / "etc/fstab"),
        key_dir=str(tmp_path / "etc/keys"), mount_root=str(tmp_path / "srv"),
        by_partlabel=str(tmp_path / "by-partlabel"), reload_systemd=False,
    )  # fmt: skip
    monkeypatch.setattr(volumes_lifecycle, "shell_for", lambda run, host: LocalShell())
    monkeypatch.setattr(volumes_lifecycle, "layout_for", lambda run, host: layout)
    monkeypatch.chdir(tmp_path)
    yield Pc(tmp_path, keys_dir, VolumeKeystore(keys_dir, PASSPHRASE), passphrase_file, layout)


def invoke(*args: str, group: str = "volumes") -> tuple[int, str]:
    result = runner.invoke(app, [group, *args])
    return result.exit_code, result.output


def _is_luks(path: Path) -> bool:
    return subprocess.run([cryptsetup(), "isLuks", str(path)], check=False).returncode == 0


def test_retire_without_yes_refuses_and_changes_nothing(pc: Pc) -> None:
    before = pc.volume.read_bytes()
    code, out = invoke("retire", *pc.args(str(EXAMPLE), CARD))
    assert code == 1
    assert out.strip().splitlines() == [
        f"retire destroys {CARD}'s data on every selected PC and cannot be undone: give --yes "
        "(or --dry-run to see the plan)"
    ]
    assert pc.volume.read_bytes() == before and pc.store.keys(VOLUME)


def test_retire_dry_run_shows_the_plan_and_changes_nothing(pc: Pc) -> None:
    before = pc.volume.read_bytes()
    code, out = invoke("retire", *pc.args(str(EXAMPLE), CARD, "--dry-run"))
    assert code == 0, out
    assert f"would erase {pc.volume}" in out and f"{CARD}@2025.09" in out
    assert pc.volume.read_bytes() == before and pc.store.keys(VOLUME)
    assert journals(default_journal_dir(pc.keys_dir), VOLUME) == []


def test_retire_erases_forgets_and_signs_a_record(pc: Pc) -> None:
    (key,) = pc.store.keys(VOLUME)
    secret = pc.store.secret(VOLUME, key.key_id)
    out_dir = pc.root / "records"
    code, out = invoke("retire", *pc.args(str(EXAMPLE), CARD, "--yes", "--out", str(out_dir)))
    assert code == 0, out
    assert not _is_luks(pc.volume) and pc.store.keys(VOLUME) == []
    assert Path(pc.layout.crypttab).read_text() == "" and Path(pc.layout.fstab).read_text() == ""
    assert verify_evidence(out_dir, load_public_key(pc.keys_dir / "signing.pub")) == []
    (record,) = json.loads((out_dir / "records.json").read_text())["records"]
    assert (record["host"], record["dataset"], record["op"], record["result"]) == (
        HOST, CARD, "retire", "ok",
    )  # fmt: skip
    assert (record["old_key"], record["new_key"]) == (key.key_id, None)
    for blob in (out, *(p.read_text() for p in out_dir.iterdir())):
        assert secret.decode() not in blob
    # Nothing left to retire: a second run fails (a failed record), exit 1.
    again = pc.root / "again"
    code, out = invoke("retire", *pc.args(str(EXAMPLE), CARD, "--yes", "--out", str(again)))
    assert code == 1 and "no key in the keystore" in out, out


def test_a_wrong_passphrase_stops_retire_before_any_pc(pc: Pc) -> None:
    pc.passphrase_file.write_text("not the passphrase at all\n")
    before = pc.volume.read_bytes()
    code, out = invoke("retire", *pc.args(str(EXAMPLE), CARD, "--yes"))
    assert code != 0 and len(out.strip().splitlines()) == 1, out
    assert pc.volume.read_bytes() == before


def test_load_refuses_a_tampered_source_before_anything_else(pc: Pc, tmp_path: Path) -> None:
    source = tmp_path / "ds"
    source.mkdir()
    (source / "a.csv").write_bytes(b"changed")
    (source / "SHA256SUMS").write_text(f"{hashlib.sha256(b'orig').hexdigest()}  a.csv\n")
    pc.passphrase_file.unlink()  # not even asked for
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from", str(source)))
    assert code == 1
    (line,) = out.strip().splitlines()
    assert "does not match its manifest, nothing loaded: a.csv: sha256" in line


def test_load_to_a_volume_that_is_not_mounted_fails_that_pc(pc: Pc, tmp_path: Path) -> None:
    source = tmp_path / "ds"
    source.mkdir()
    (source / "a.csv").write_bytes(b"rows")
    (source / "SHA256SUMS").write_text(f"{hashlib.sha256(b'rows').hexdigest()}  a.csv\n")
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from", str(source),
                                        "--out", str(pc.root / "rec")))  # fmt: skip
    assert code == 1, out
    assert "is not mounted: create the volume first" in out
    (record,) = json.loads((pc.root / "rec" / "records.json").read_text())["records"]
    assert record["result"] == "failed"


def test_swap_refuses_a_bad_version_and_a_file_volume(pc: Pc, tmp_path: Path) -> None:
    source = tmp_path / "ds"
    source.mkdir()
    (source / "a.csv").write_bytes(b"rows")
    (source / "SHA256SUMS").write_text(f"{hashlib.sha256(b'rows').hexdigest()}  a.csv\n")
    code, out = invoke("swap", *pc.args(str(EXAMPLE), CARD, "--version", "v 2", "--from",
                                        str(source), "--dry-run"))  # fmt: skip
    assert code == 1 and out.strip() == (
        "'v 2': not a dataset version (letters, digits, . _ + -)"
    ), out
    code, out = invoke("swap", *pc.args(str(EXAMPLE), CARD, "--version", "2026.1", "--from",
                                        str(source), "--dry-run"))  # fmt: skip
    assert code == 1 and "is not a partition of a disk" in out, out
    assert _is_luks(pc.volume)


def test_create_dry_run_names_the_keys_it_would_make(pc: Pc) -> None:
    code, out = invoke("create", *pc.args(str(EXAMPLE), "--dry-run"))
    assert code == 0, out
    key = pc.store.current(VOLUME)
    assert key is not None and f"{VOLUME}: has key {key.key_id}" in out
    other = volume_id(HOST, "transit-smartcard-trips")
    assert f"{other}: would get a new key" in out and pc.store.keys(other) == []


@pytest.mark.parametrize("how", ["typed", "environment", "file"])
def test_create_gives_the_playbook_the_passphrase_only_as_a_0600_file(
    pc: Pc, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump_file = install_fake_ansible_playbook(tmp_path, monkeypatch)
    monkeypatch.setattr(volumes_lifecycle, "choose_users", lambda *a, **k: {HOST: "root"})
    args = pc.args(str(EXAMPLE), CARD)
    stdin = None
    if how != "file":  # no --passphrase-file
        args = args[: args.index("--passphrase-file")]
    if how == "environment":
        monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE", PASSPHRASE)
    elif how == "typed":
        stdin = PASSPHRASE + "\n"
    result = runner.invoke(app, ["volumes", "create", *args], input=stdin)
    assert dump_file.exists(), result.output
    dump = json.loads(dump_file.read_text())
    given = assert_passphrase_only_as_a_file(dump, PASSPHRASE)
    assert dump["environ"]["CAMPUS_KEYS_DIR"] == str(pc.keys_dir.absolute())
    if how == "file":
        assert given == pc.passphrase_file.absolute()
    else:
        assert dump["dir_mode"] == 0o700 and not given.parent.exists()


def test_an_unknown_dataset_is_one_line(pc: Pc) -> None:
    code, out = invoke("retire", *pc.args(str(EXAMPLE), "no-such-dataset", "--yes"))
    assert code == 1 and len(out.strip().splitlines()) == 1 and "no-such-dataset" in out, out


def test_volumes_resume_finishes_a_retire_that_stopped_half_way(pc: Pc) -> None:
    """'volumes resume' carries a crashed retire (stopped after erase) to its end."""
    (key,) = pc.store.keys(VOLUME)
    journal_dir = default_journal_dir(pc.keys_dir)
    stopped = retire(pc.store, VOLUME, LocalShell(), journal_dir, layout=pc.layout,
                     stop_after="erase")  # fmt: skip
    assert stopped.outcome == "stopped after erase"
    assert pc.store.keys(VOLUME) != []  # the keys stay until the erase is proven
    out_dir = pc.root / "resumed"
    code, out = invoke("resume", *pc.args(str(EXAMPLE), CARD, "--out", str(out_dir)))
    assert code == 0, out
    assert not _is_luks(pc.volume) and pc.store.keys(VOLUME) == []
    (journal,) = journals(journal_dir, VOLUME)
    assert journal.last is not None and journal.last.step == "done"
    (record,) = json.loads((out_dir / "records.json").read_text())["records"]
    assert (record["op"], record["result"], record["old_key"]) == ("retire", "ok", key.key_id)
    code, out = invoke("resume", *pc.args(str(EXAMPLE), CARD))
    assert code == 0 and "nothing to resume" in out, out


def test_load_takes_one_source_exactly(pc: Pc, tmp_path: Path) -> None:
    for extra in ([], ["--from", str(tmp_path), "--from-mirror"]):
        code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, *extra))
        assert code == 1 and out.strip() == (
            "give --from DIRECTORY or --from-mirror (one of the two)"
        ), out


@pytest.fixture
def on_mirror(pc: Pc, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CARD at the inventory's version on a loopback mirror, signed with the pc's campus key;
    the PC's campus_mirror_url points there (the example's address is not this machine's)."""
    version = "2025.09"
    directory = mirror.root / "datasets" / CARD / version
    directory.mkdir(parents=True)
    data = b"rows\n"
    (directory / "a.csv").write_bytes(data)
    (directory / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  a.csv\n")
    prepare = volumes_lifecycle.prepare

    def here(*args: Any, **kwargs: Any) -> Any:
        run = prepare(*args, **kwargs)
        run.targets = [replace(t, mirror_url=mirror.url) for t in run.targets]
        return run

    monkeypatch.setattr(volumes_lifecycle, "prepare", here)
    return directory


def test_sign_manifest_then_a_dry_run_from_the_mirror_checks_the_signature(
    pc: Pc, on_mirror: Path, mirror: Mirror
) -> None:
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from-mirror", "--dry-run"))
    assert code == 1 and "dataset-manifest.json: HTTP 404 File not found" in out, out
    keys = ["--keys-dir", str(pc.keys_dir), "--passphrase-file", str(pc.passphrase_file)]
    code, out = invoke("sign-manifest", str(EXAMPLE), CARD, str(on_mirror), *keys)
    assert code == 0, out
    assert f"{CARD} version 2025.09, 1 files, signed by" in out, out
    assert f"publish the directory on the mirror as datasets/{CARD}/2025.09/" in out
    assert json.loads((on_mirror / "dataset-manifest.json").read_text())["version"] == "2025.09"
    assert (on_mirror / "dataset-manifest.json.sig").is_file()
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from-mirror", "--dry-run"))
    assert code == 0, out
    assert f"signed by the campus key for {CARD} version 2025.09" in out
    assert "would fetch 1 of 1 files" in out
    assert not (pc.root / "srv" / CARD / "a.csv").exists()
    (on_mirror / "SHA256SUMS").write_text(f"{'0' * 64}  a.csv\n")  # changed after signing
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from-mirror", "--dry-run"))
    assert code == 1 and "SHA256SUMS disagrees with the signed dataset-manifest.json" in out, out
    statement = on_mirror / "dataset-manifest.json"
    statement.write_bytes(statement.read_bytes().replace(b"2025.09", b"2025.08"))
    code, out = invoke("load", *pc.args(str(EXAMPLE), CARD, "--from-mirror", "--dry-run"))
    assert code == 1 and "dataset-manifest.json is not signed by the campus key" in out, out


def test_sign_manifest_takes_a_dataset_of_the_catalogue_at_a_version(
    pc: Pc, tmp_path: Path
) -> None:
    staged = tmp_path / "staging" / "next"
    staged.mkdir(parents=True)
    (staged / "a.csv").write_bytes(b"rows\n")
    (staged / "SHA256SUMS").write_text(
        f"{hashlib.sha256(b'rows' + bytes([10])).hexdigest()}  a.csv\n"
    )
    keys = ["--keys-dir", str(pc.keys_dir), "--passphrase-file", str(pc.passphrase_file)]
    code, out = invoke("sign-manifest", str(EXAMPLE), "no-such-data", str(staged), *keys)
    assert code == 1 and "no-such-data: not in" in out and CARD in out, out
    assert not (staged / "dataset-manifest.json").exists()
    code, out = invoke("sign-manifest", str(EXAMPLE), CARD, str(staged), "--version", "2026.1",
                       *keys)  # fmt: skip
    assert code == 0, out
    assert f"datasets/{CARD}/2026.1/" in out
    assert "the spec names version 2025.09: 'volumes load --from-mirror' fetches" in out
    assert json.loads((staged / "dataset-manifest.json").read_text())["version"] == "2026.1"
