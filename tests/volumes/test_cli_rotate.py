"""``volumes status | rotate-key | resume`` through Typer's CliRunner, on LUKS2 files here.

The inventory is the example campus's rendered one (real ansible-inventory); each volume
of sgm-a01 is a real LUKS2 file here with a key file beside it, reached through a
``LocalFileBackend`` standing in for the PC (the lab test runs the SSH backend on a VM).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campus_provision.cli import app, volumes_common, volumes_rotate
from campus_provision.keys.signing import init_signing_key, load_public_key
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore, volume_id
from campus_provision.spec import load_spec
from campus_provision.verify.evidence import verify_evidence
from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import LocalFileBackend, Pbkdf, Result
from campus_provision.volumes.fleet import Dataset, Target
from campus_provision.volumes.journal import default_journal_dir, journals
from campus_provision.volumes.ssh import luks_label
from tests.conftest import EXAMPLE
from tests.volumes.conftest import CHEAP, PASSPHRASE, cryptsetup, sparse_copy

HOST = "sgm-a01"
DATASETS = {"card-spending-2025": "2025.09", "transit-smartcard-trips": "2025.08",
            "seoul-living-population": "2025.10"}  # fmt: skip
CARD = "card-spending-2025"


class FileVolume(LocalFileBackend):
    """A LUKS2 file with the extra probes ``volumes status`` uses."""

    def label_and_slots(self) -> tuple[str | None, list[int]] | None:
        result = self.run(["luksDump", self.device], b"")
        if result.returncode != 0:
            return None
        return luks_label(result.stdout), self.active_slots()

    def keyfile_present(self) -> bool:
        return self.keyfile.exists()

    def is_mounted(self) -> bool:
        return True


class UnreachableVolume(FileVolume):
    """A PC that ssh cannot reach: every command fails as SshBackend's would."""

    def run(self, args: list[str], stdin: bytes) -> Result:
        raise VolumeError(f"{self.where}: unreachable over SSH (test)")

    def keyfile_holds(self, key: bytes) -> bool:
        raise VolumeError(f"{self.where}: unreachable over SSH (test)")


@dataclass
class Fleet:
    root: Path
    keys_dir: Path
    store: VolumeKeystore
    passphrase_file: Path
    unreachable: set[str]
    pbkdfs: list[Pbkdf]

    def header(self, ds: str) -> Path:
        return self.root / f"{ds}.luks"

    def keyfile(self, ds: str) -> Path:
        return self.root / f"{ds}.key"

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--limit", HOST, "--keys-dir", str(self.keys_dir),
                "--passphrase-file", str(self.passphrase_file)]  # fmt: skip

    def current(self, ds: str) -> tuple[str, bytes]:
        key = self.store.current(volume_id(HOST, ds))
        assert key is not None
        return key.key_id, self.store.secret(key.volume_id, key.key_id)


@pytest.fixture(scope="session")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keystore, signing key, and sgm-a01's three volumes, made once (scrypt and argon2 cost)."""
    binary = cryptsetup()
    root = tmp_path_factory.mktemp("fleet")
    store = VolumeKeystore(root / "keys", PASSPHRASE)
    init_signing_key(root / "keys", PASSPHRASE)
    for ds, version in DATASETS.items():
        key = store.create(volume_id(HOST, ds))
        secret = store.secret(key.volume_id, key.key_id)
        with (root / f"{ds}.luks").open("wb") as fh:
            fh.truncate(16 << 20)
        done = subprocess.run(
            [binary, "luksFormat", "--batch-mode", "--type", "luks2", *CHEAP.args(),
             "--label", f"{ds}@{version}", "--key-file=-", f"--keyfile-size={KEYFILE_BYTES}",
             str(root / f"{ds}.luks")],
            input=secret, capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (root / f"{ds}.key").write_bytes(secret)
    return root


@pytest.fixture
def fleet(fleet_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    keys_dir = tmp_path / "keys"
    shutil.copytree(fleet_template / "keys", keys_dir)
    for ds in DATASETS:
        sparse_copy(fleet_template / f"{ds}.luks", tmp_path / f"{ds}.luks")
        shutil.copy2(fleet_template / f"{ds}.key", tmp_path / f"{ds}.key")
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
    passphrase_file.chmod(0o600)
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    fl = Fleet(tmp_path, keys_dir, store, passphrase_file, set(), [])

    def factory(target: Target, dataset: Dataset, pbkdf: Pbkdf) -> FileVolume:
        fl.pbkdfs.append(pbkdf)
        kind = UnreachableVolume if target.host in fl.unreachable else FileVolume
        return kind(fl.header(dataset.id), fl.keyfile(dataset.id), pbkdf=CHEAP)

    monkeypatch.setattr(volumes_rotate, "backend_factory", factory)
    monkeypatch.chdir(tmp_path)
    yield fl


runner = CliRunner()


def invoke(*args: str, group: str = "volumes") -> tuple[int, str]:
    result = runner.invoke(app, [group, *args])
    return result.exit_code, result.output


def test_status_shows_each_volume_and_the_key_that_opens_it(fleet: Fleet) -> None:
    code, out = invoke("status", *fleet.args(str(EXAMPLE)))
    assert code == 0, out
    for ds, version in DATASETS.items():
        (line,) = [ln for ln in out.splitlines() if f" {ds} " in ln]
        key_id, _ = fleet.current(ds)
        assert f"{ds}@{version}" in line and key_id in line and " ok " in line, line
        assert "inventory:" not in line and " 1 " in line, line  # the label matches; 1 slot


def test_status_says_when_no_keystore_key_opens_it(fleet: Fleet) -> None:
    fleet.store.remove(volume_id(HOST, CARD), fleet.current(CARD)[0])
    fleet.store.create(volume_id(HOST, CARD))  # a key the volume does not know
    code, out = invoke("status", *fleet.args(str(EXAMPLE), CARD))
    assert code == 1
    assert "none of the keystore's keys" in out and "need attention" in out


def test_rotate_key_rotates_writes_a_signed_record_and_no_key(fleet: Fleet) -> None:
    old_id, old = fleet.current(CARD)
    out_dir = fleet.root / "records"
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--out", str(out_dir)))
    assert code == 0, out
    new_id, new = fleet.current(CARD)
    assert new_id != old_id and "rotated" in out and new_id in out
    assert fleet.keyfile(CARD).read_bytes() == new
    backend = FileVolume(fleet.header(CARD), fleet.keyfile(CARD), pbkdf=CHEAP)
    assert backend.key_opens(new) and not backend.key_opens(old)
    assert verify_evidence(out_dir, load_public_key(fleet.keys_dir / "signing.pub")) == []
    records = json.loads((out_dir / "records.json").read_text(encoding="utf-8"))
    (record,) = records["records"]
    assert record["host"] == HOST and record["dataset"] == CARD
    assert (record["old_key"], record["new_key"], record["result"]) == (old_id, new_id, "ok")
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert all(t in html for t in (HOST, CARD, old_id, new_id))
    for blob in (out, *(p.read_text() for p in out_dir.iterdir())):
        assert old.decode() not in blob and new.decode() not in blob
    # report verify accepts the directory and says what it holds.
    code, said = invoke("verify", str(out_dir), "--keys-dir", str(fleet.keys_dir), group="report")
    assert code == 0, said
    assert "OK" in said and "volume operation records" in said
    # Only the named dataset moved.
    other = fleet.store.keys(volume_id(HOST, "transit-smartcard-trips"))
    assert len(other) == 1


def test_report_verify_names_a_tampered_record(fleet: Fleet) -> None:
    out_dir = fleet.root / "records"
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--out", str(out_dir)))
    assert code == 0, out
    path = out_dir / "records.json"
    path.write_text(path.read_text().replace('"ok"', '"failed"'), encoding="utf-8")
    code, said = invoke("verify", str(out_dir), "--keys-dir", str(fleet.keys_dir), group="report")
    assert code == 1 and "records.json: altered" in said


def test_rotate_key_takes_the_pbkdf_options(fleet: Fleet) -> None:
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--pbkdf-memory", "32768",
                                                  "--pbkdf-force-iterations", "4"))  # fmt: skip
    assert code == 0, out
    assert fleet.pbkdfs == [Pbkdf("argon2id", 32768, 2000, 4)]


def test_dry_run_changes_nothing(fleet: Fleet) -> None:
    before = fleet.current(CARD)
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--dry-run"))
    assert code == 0, out
    assert "would rotate" in out
    assert fleet.current(CARD) == before
    assert journals(default_journal_dir(fleet.keys_dir)) == []
    assert not (fleet.root / "evidence").exists()


def test_an_unreachable_host_fails_the_run_and_is_recorded(fleet: Fleet) -> None:
    fleet.unreachable.add(HOST)
    out_dir = fleet.root / "records"
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--out", str(out_dir)))
    assert code == 1
    assert "unreachable" in out
    (record,) = json.loads((out_dir / "records.json").read_text())["records"]
    assert record["result"] == "failed"


def test_a_stopped_rotation_is_resumed(fleet: Fleet) -> None:
    from campus_provision.volumes.rotate import rotate_key  # noqa: PLC0415

    old_id, _ = fleet.current(CARD)
    backend = FileVolume(fleet.header(CARD), fleet.keyfile(CARD), pbkdf=CHEAP)
    journal_dir = default_journal_dir(fleet.keys_dir)
    rotate_key(fleet.store, volume_id(HOST, CARD), backend, journal_dir, stop_after="kill-old")
    code, out = invoke("status", *fleet.args(str(EXAMPLE), CARD))
    assert code == 1 and "unfinished" in out
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD, "--out", "r1"))
    assert code == 1 and "resume it first" in out
    out_dir = fleet.root / "records-resume"
    code, out = invoke("resume", *fleet.args(str(EXAMPLE), CARD, "--out", str(out_dir)))
    assert code == 0, out
    assert "completed" in out
    new_id, new = fleet.current(CARD)
    assert new_id != old_id and fleet.keyfile(CARD).read_bytes() == new
    (record,) = json.loads((out_dir / "records.json").read_text())["records"]
    assert (record["op"], record["result"], record["old_key"]) == ("resume", "ok", old_id)
    code, out = invoke("resume", *fleet.args(str(EXAMPLE), CARD))
    assert code == 0 and "nothing to resume" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("rotate-key", "SPEC", "no-such-dataset"),
            "no PC with dataset no-such-dataset matching --limit sgm-a01",
        ),
        (("status", "SPEC", "--limit", "nosuch"), "no PC with datasets matching --limit nosuch"),
        (("status", "nosuch/campus.yml"), "nosuch/campus.yml"),
    ],
)
def test_bad_input_is_one_line_and_exit_nonzero(
    fleet: Fleet, args: tuple[str, ...], message: str
) -> None:
    argv = [str(EXAMPLE) if a == "SPEC" else a for a in args]
    result = runner.invoke(app, ["volumes", *argv, "--keys-dir", str(fleet.keys_dir),
                                 "--passphrase-file", str(fleet.passphrase_file),
                                 *(["--limit", HOST] if "--limit" not in argv else [])])  # fmt: skip
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_wrong_passphrase_stops_before_any_volume(fleet: Fleet) -> None:
    fleet.passphrase_file.write_text("a wrong passphrase, long enough\n", encoding="utf-8")
    code, out = invoke("rotate-key", *fleet.args(str(EXAMPLE), CARD))
    assert code != 0 and "passphrase" in out
    assert fleet.pbkdfs == []
    assert journals(default_journal_dir(fleet.keys_dir)) == []


def test_the_login_is_probed_admin_first_as_provision_does(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec's first admin (or --admin) where it logs in; then root; else the inventory's."""
    seen: list[tuple[list[str], str]] = []
    users: list[tuple[str, str, bool]] = []

    def probe(inventory: Path, hosts: list[str], admin: str) -> dict[str, str]:
        seen.append((hosts, admin))
        return dict.fromkeys(hosts, admin)

    def factory(target: Target, dataset: Dataset, pbkdf: Pbkdf) -> FileVolume:
        c = target.connection
        users.append((target.host, c.user, c.become))
        return FileVolume(fleet.header(dataset.id), fleet.keyfile(dataset.id), pbkdf=CHEAP)

    monkeypatch.setattr(volumes_common, "login_users", probe)
    monkeypatch.setattr(volumes_rotate, "backend_factory", factory)
    monkeypatch.delenv("CAMPUS_ADMIN", raising=False)
    code, out = invoke("status", *fleet.args(str(EXAMPLE), CARD))
    assert code == 0, out
    first_admin = load_spec(EXAMPLE).accounts.admins[0].username
    assert seen == [([HOST], first_admin)]
    assert users == [(HOST, first_admin, True)]
    code, out = invoke("status", *fleet.args(str(EXAMPLE), CARD, "--admin", "opsadmin"))
    assert code == 0, out
    assert seen[-1] == ([HOST], "opsadmin") and users[-1] == (HOST, "opsadmin", True)
