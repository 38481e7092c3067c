"""volumes load: the manifest decides what may go, and the PC holds exactly that after.

The "PC" is a directory here (LocalShell): the same shell commands, no SSH.
"""

from __future__ import annotations

import hashlib
import stat
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from campus_provision.volumes import VolumeError
from campus_provision.volumes.backend import Result
from campus_provision.volumes.load import (
    MANIFEST,
    check_name,
    check_source,
    load_files,
    read_manifest,
)
from campus_provision.volumes.remote import DEFAULT_TIMEOUT, LocalShell

FILES = {"trips.csv": b"a,b\n1,2\n", "2025/q1 rows.csv": b"x" * 70000, "README": b"read me\n"}


def _dataset(directory: Path, files: dict[str, bytes] = FILES) -> Path:
    lines = []
    for name, data in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    (directory / MANIFEST).write_text("".join(lines), encoding="utf-8")
    return directory


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "src")


def test_a_matching_directory_is_every_file_with_its_hash(source: Path) -> None:
    files = check_source(source)
    assert [f.name for f in files] == sorted(FILES)
    assert all(f.sha256 == hashlib.sha256(FILES[f.name]).hexdigest() for f in files)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: (s / "trips.csv").write_bytes(b"a,b\n1,3\n"), "trips.csv: sha256 .* is not"),
        (lambda s: (s / "README").unlink(), "README: listed in SHA256SUMS but missing"),
        (lambda s: (s / "extra.bin").write_bytes(b"x"), r"extra.bin: not in SHA256SUMS \(unlisted"),
        (lambda s: (s / "link").symlink_to(s / "README"), "link: not a regular file"),
        (lambda s: (s / MANIFEST).unlink(), "no manifest"),
    ],
    ids=["tampered", "missing", "unlisted", "symlink", "no-manifest"],
)
def test_a_directory_that_does_not_match_is_refused(
    source: Path, change: object, message: str
) -> None:
    assert callable(change)
    change(source)
    with pytest.raises(VolumeError, match=message):
        check_source(source)


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "/etc/passwd", "a/../../b", "./", "a//b", "a\\b", "a\nb", "x/.", MANIFEST,
     "dir/.load.abc123", ""],
)  # fmt: skip
def test_names_that_could_leave_the_volume_are_refused(name: str) -> None:
    with pytest.raises(VolumeError, match="not a file name"):
        check_name(name)


def test_a_manifest_naming_a_path_outside_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(f"{'0' * 64}  ok.csv\n{'1' * 64}  ../../etc/shadow\n")
    with pytest.raises(VolumeError, match=r"SHA256SUMS:2: '../../etc/shadow': not a file name"):
        read_manifest(tmp_path / MANIFEST)
    (tmp_path / MANIFEST).write_text(f"{'0' * 64}  a\n{'0' * 64} *a\n")
    with pytest.raises(VolumeError, match="SHA256SUMS:2: a is listed twice"):
        read_manifest(tmp_path / MANIFEST)
    (tmp_path / MANIFEST).write_text("not a line\n")
    with pytest.raises(VolumeError, match="SHA256SUMS:1: not a sha256sum line"):
        read_manifest(tmp_path / MANIFEST)


def test_load_puts_every_file_in_place_readable_as_the_volume_root(
    source: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir(mode=0o750)
    mount.chmod(0o750)
    (mount / "trips.csv").write_bytes(b"old\n")  # a wrong copy is replaced
    lines: list[str] = []
    result = load_files(LocalShell(), str(mount), check_source(source), progress=lines.append)
    assert (result.sent, result.skipped) == (3, 0)
    for name, data in FILES.items():
        path = mount / name
        assert path.read_bytes() == data
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o640)
    assert [p.name for p in mount.rglob(".load.*")] == []
    assert lines[-1].endswith("3 files verified on the PC (3 sent, 0 already there)")
    again = load_files(LocalShell(), str(mount), check_source(source))
    assert (again.sent, again.skipped) == (0, 3)


def test_a_refused_source_changes_nothing_on_the_pc(source: Path, tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    (source / "trips.csv").write_bytes(b"tampered")
    with pytest.raises(VolumeError):
        load_files(LocalShell(), str(mount), check_source(source))
    assert list(mount.iterdir()) == []


def test_a_file_changed_after_the_check_is_not_sent(source: Path, tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    files = check_source(source)
    (source / "README").write_bytes(b"swapped after the check\n")
    with pytest.raises(VolumeError, match="changed since it was checked"):
        load_files(LocalShell(), str(mount), files)
    assert not (mount / "README").exists()


def test_a_mount_that_is_not_the_volume_is_refused(source: Path, tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    with pytest.raises(VolumeError, match="is not mounted: create the volume first"):
        load_files(LocalShell(), str(mount), check_source(source), mapper="/dev/mapper/ds1")


def test_a_large_file_streams_through_the_controller(tmp_path: Path) -> None:
    size = 64 << 20
    source = tmp_path / "src"
    source.mkdir()
    digest = hashlib.sha256()
    with (source / "big.bin").open("wb") as fh:
        for n in range(size >> 20):
            block = bytes([n]) * (1 << 20)
            digest.update(block)
            fh.write(block)
    (source / MANIFEST).write_text(f"{digest.hexdigest()}  big.bin\n", encoding="utf-8")
    mount = tmp_path / "mnt"
    mount.mkdir()
    files = check_source(source)
    # tracemalloc sees every Python object this process makes while it loads: a file read
    # whole would be one 64 MiB bytes object. (The RSS high-water mark, tried first, read
    # anything from 25 to 64 MiB for the same whole-file load: too noisy to assert on.)
    tracemalloc.start()
    try:
        load_files(LocalShell(), str(mount), files)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (4 << 20), f"{peak} bytes held at the peak sending a 64 MiB file"
    assert (mount / "big.bin").stat().st_size == size


class _Timed(LocalShell):
    """This machine's shell, remembering the timeout each command was given."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def run(
        self, script: str, stdin: bytes | BinaryIO = b"", timeout: float = DEFAULT_TIMEOUT
    ) -> Result:
        self.timeouts.append(timeout)
        return super().run(script, stdin, timeout)


def test_a_large_file_has_time_to_arrive(source: Path, tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    # The sizes as a 20 GiB dataset would have them: the command that sends one may run
    # for as long as 1 MiB/s needs, not the 600 s any other command gets.
    files = [replace(f, size=20 << 30) for f in check_source(source)]
    shell = _Timed()
    load_files(shell, str(mount), files)
    assert sorted(shell.timeouts)[-len(files) :] == [DEFAULT_TIMEOUT + 20 * 1024] * len(files)
    assert min(shell.timeouts) == DEFAULT_TIMEOUT
