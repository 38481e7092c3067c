"""What a manifest, an inventory or a journal holds reaches the PC's shell as inert words.

Commands run for real through LocalShell (``sh -c`` here, as sshd hands them to the PC's
shell) or the real ``ssh`` client; every hostile value tries to touch a marker file.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Pbkdf, Result
from campus_provision.volumes.fleet import Connection
from campus_provision.volumes.lifecycle import Layout, RetirePlan
from campus_provision.volumes.load import (
    MANIFEST,
    SourceFile,
    check_name,
    parse_manifest,
    remote_hashes,
    send_file,
)
from campus_provision.volumes.mirror import dataset_url
from campus_provision.volumes.remote import LocalShell, SshShell
from campus_provision.volumes.ssh import ssh_argv
from campus_provision.volumes.swap import SwapPlan, _Swap
from tests.volumes.conftest import VOLUME


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / f"PWNED-{secrets.token_hex(4)}"


def forms(marker: Path) -> list[str]:
    return [
        f"x'$(touch {marker})'.csv",
        f'x"$(touch {marker})".csv',
        f"`touch {marker}`.csv",
        f"a;touch {marker}",
        "-rf",
        "dir/-rf",
        "a\nb",
        "../x",
        "/etc/passwd",
        "a\\b",
        "it's.csv",
        "price$5.csv",
    ]


def test_manifest_names_a_shell_would_read_are_refused(marker: Path) -> None:
    for name in forms(marker):
        with pytest.raises(VolumeError, match="not a file name"):
            check_name(name)
        text = f"{'0' * 64}  ok.csv\n{'1' * 64}  {name}\n"
        with pytest.raises(VolumeError, match=r"SHA256SUMS:2: .*not a file name|not a sha256sum"):
            parse_manifest(text, MANIFEST)


@pytest.mark.parametrize(
    "name",
    ["trips.csv", "2025/q1 rows.csv", "서울/카드 2025 (final).csv", "v1.2+b_3,a=b@c%d~e#f.txt",
     ".zenodo.json", "_meta/x"],
)  # fmt: skip
def test_ordinary_names_still_load(name: str) -> None:
    assert check_name(name) == name


def test_send_and_hash_keep_a_hostile_name_inert(marker: Path, tmp_path: Path) -> None:
    # check_name refuses these names; the commands stay safe even if one got past it.
    mount = tmp_path / "mnt"
    mount.mkdir()
    data = b"rows\n"
    digest = hashlib.sha256(data).hexdigest()
    source = tmp_path / "src"
    source.write_bytes(data)
    names = [n for n in forms(marker)[:5] if "\n" not in n]
    for name in names:
        send_file(LocalShell(), str(mount), SourceFile(name, source, digest, len(data)))
    assert remote_hashes(LocalShell(), str(mount), names) == dict.fromkeys(names, digest)
    placed = {p.relative_to(mount).as_posix() for p in mount.rglob("*") if p.is_file()}
    assert placed == set(names)
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_an_inventory_address_is_never_an_ssh_option(marker: Path) -> None:
    evil = Connection("pc-01", f"-oProxyCommand=touch {marker}", "root", None, None,
                      ("-F", "/dev/null"))  # fmt: skip
    # ssh -G prints the configuration the command line makes, connecting nowhere.
    argv = ssh_argv(evil, "true")
    shown = subprocess.run([argv[0], "-G", *argv[1:]], capture_output=True, text=True,
                           timeout=30, check=False)  # fmt: skip
    assert "proxycommand" not in shown.stdout.lower()
    with pytest.raises(VolumeError, match="unreachable over SSH"):
        SshShell(evil).run("true", timeout=30)
    assert not marker.exists()


@pytest.mark.parametrize(("dataset", "version"), [("d", ".."), ("..", "v1"), ("d", "a/b"),
                                                  ("d", "$(id)"), ("d", "")])  # fmt: skip
def test_a_dataset_url_is_one_segment_each(dataset: str, version: str) -> None:
    with pytest.raises(VolumeError, match="not a dataset"):
        dataset_url("http://10.254.1.2/", dataset, version)


SWAP = SwapPlan(
    dataset="ds1", version="v2", old_label="ds1@v1", old_node="/dev/vdb1", old_uuid="u",
    old_partno=1, disk="/dev/vdb", sectors=2048, temp="cpswap-0123abcd", source="/x",
    manifest_sha256="0" * 64, old_header_bytes=16 << 20, pbkdf={"pbkdf": "argon2id"},
)  # fmt: skip
RETIRE = RetirePlan(
    dataset="ds1", device="/dev/disk/by-partlabel/ds1", node="/dev/vdb1", label="ds1@v1",
    uuid="u", disk="/dev/vdb", partno=1, partition_name="ds1", header_bytes=16 << 20,
)  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [{"old_partno": "1; id"}, {"sectors": "2048`id`"}, {"old_header_bytes": True},
     {"temp": "cpswap-x\"; id"}, {"pbkdf": {"bogus": 1}}],
)  # fmt: skip
def test_a_swap_plan_with_other_than_its_numbers_and_name_is_damaged(
    change: dict[str, object], tmp_path: Path
) -> None:
    note = SwapPlan(**{**asdict(SWAP), **change}).note()  # type: ignore[arg-type]
    with pytest.raises(VolumeError, match="damaged"):
        SwapPlan.from_note(note, tmp_path)


@pytest.mark.parametrize("change", [{"partno": "1 || id"}, {"header_bytes": "4096; id"}])
def test_a_retire_plan_with_other_than_numbers_is_damaged(
    change: dict[str, object], tmp_path: Path
) -> None:
    assert RetirePlan.from_note(RETIRE.note(), tmp_path) == RETIRE
    assert RetirePlan.from_note(RetirePlan(**{**asdict(RETIRE), "partno": None}).note(), tmp_path)
    note = RetirePlan(**{**asdict(RETIRE), **change}).note()  # type: ignore[arg-type]
    with pytest.raises(VolumeError, match="damaged"):
        RetirePlan.from_note(note, tmp_path)


class Recorder:
    """A PC's shell that only records: every command answers 0 with no output."""

    where = "pc-01"

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str, stdin: bytes = b"", timeout: float = 600) -> Result:
        self.scripts.append(script)
        return Result(0, "", "")


def test_an_inventory_pbkdf_reaches_luksformat_as_one_word(
    marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = f"argon2id; touch {marker}"
    plan = SwapPlan(**{**asdict(SWAP), "pbkdf": asdict(Pbkdf(pbkdf=hostile))})
    shell = Recorder()
    journal = SimpleNamespace(volume=VOLUME)
    engine = _Swap(None, shell, Layout(), journal, plan, lambda _: None)  # type: ignore[arg-type]
    monkeypatch.setattr(_Swap, "key", lambda self: b"k" * 88)
    engine.format()
    words = shlex.split(shell.scripts[-1])
    assert words[0] == "cryptsetup" and words[1] == "luksFormat"
    assert words[words.index("--pbkdf") + 1] == hostile
    assert not marker.exists()
