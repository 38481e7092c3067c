"""``volumes load --from-mirror``: a signed manifest on the mirror decides what a PC fetches.

The mirror is a real HTTP server on loopback serving a directory; the "PC" is this machine
(LocalShell, the same shell and python3 fetch the PC runs) and its volume a directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campus_provision.volumes import VolumeError, load
from campus_provision.volumes.journal import DONE, INTENT, Journal, journals
from campus_provision.volumes.lifecycle import FINAL_STEPS, Layout, load_volume, resume_one
from campus_provision.volumes.load import MANIFEST, MANIFEST_SIGNATURE, check_source, load_files
from campus_provision.volumes.mirror import (
    SCHEMA,
    SIGNATURE,
    STATEMENT,
    check_signature,
    dataset_url,
    mirror_source,
    parse_statement,
    refetch,
    sign_manifest,
)
from campus_provision.volumes.remote import LocalShell
from tests.volumes.conftest import VOLUME, Mirror, Vol

DATASET, VERSION = "card-spending-2025", "2025.09"
FILES = {"README.txt": b"read me\n", "2025/q1 rows.csv": b"d,a\n" + b"mapo,1\n" * 9000}
KEY = Ed25519PrivateKey.generate()


def _publish(mirror: Mirror, files: dict[str, bytes] = FILES, *, key: Ed25519PrivateKey = KEY,
             dataset: str = DATASET, version: str = VERSION) -> Path:  # fmt: skip
    """The dataset version under the mirror's datasets/, signed as an operator would."""
    directory = mirror.root / "datasets" / dataset / version
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    (directory / MANIFEST).write_text(
        "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))
    )
    sign_manifest(directory, key, dataset=dataset, version=version)
    return directory


def _held(mount: Path) -> dict[str, bytes]:
    return {
        p.relative_to(mount).as_posix(): p.read_bytes() for p in mount.rglob("*") if p.is_file()
    }


def _sums(files: dict[str, bytes]) -> str:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))


def test_the_signed_statement_names_the_dataset_its_version_and_each_file(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ds"
    directory.mkdir()
    (directory / "a.csv").write_bytes(b"1\n")
    (directory / MANIFEST).write_text(_sums({"a.csv": b"1\n"}))
    (directory / MANIFEST_SIGNATURE).write_text("an old signature of SHA256SUMS alone\n")
    written = sign_manifest(directory, KEY, dataset="ds", version="v1")
    assert written == directory / SIGNATURE and written.stat().st_mode & 0o777 == 0o644
    data = (directory / STATEMENT).read_bytes()
    assert json.loads(data) == {
        "schema": SCHEMA, "dataset": "ds", "version": "v1",
        "files": [{"name": "a.csv", "sha256": hashlib.sha256(b"1\n").hexdigest(), "size": 2}],
    }  # fmt: skip
    assert data.count(b"\n") == 1 and b" " not in data
    assert not (directory / MANIFEST_SIGNATURE).exists()
    signature = written.read_bytes()
    check_signature(data, signature, KEY.public_key(), "here: ")
    for bad_data, bad_signature, pub in [
        (data.replace(b'"v1"', b'"v2"'), signature, KEY.public_key()),
        (data, signature, Ed25519PrivateKey.generate().public_key()),
        (data, b"not base64 !!", KEY.public_key()),
        (data, b"", KEY.public_key()),
    ]:
        with pytest.raises(VolumeError, match=f"{STATEMENT} is not signed by the campus key"):
            check_signature(bad_data, bad_signature, pub, "here: ")
    # What sign-manifest writes beside the files is not one of them.
    assert [f.name for f in check_source(directory)] == ["a.csv"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not a signed dataset manifest: .*Invalid JSON"),
        (b'{"schema":"other/1","dataset":"d","version":"1","files":[]}\n', "schema: Input"),
        (b'{"dataset":"d","files":[],"schema":"%s","version":"1","x":1}\n', "x: Extra inputs"),
        (
            b'{"dataset":"d","files":[{"name":"../x","sha256":"%s","size":1}],'
            b'"schema":"%s","version":"1"}\n',
            "'../x': not a file name",
        ),
        (b'{"dataset":"d","files":[],"schema":"%s","version":"1"}\n', "not in canonical form"),
        (
            b'{"dataset": "d", "files": [{"name": "a", "sha256": "%s", "size": 1}], '
            b'"schema": "%s", "version": "1"}\n',
            "not in canonical form",
        ),
        (
            b'{"dataset":"d","files":[{"name":"b","sha256":"%s","size":1},'
            b'{"name":"a","sha256":"%s","size":1}],"schema":"%s","version":"1"}\n',
            "not in canonical form",
        ),
    ],
    ids=["not-json", "schema", "extra-key", "bad-name", "no-files", "spaces", "unsorted"],
)
def test_a_statement_that_is_not_exactly_one_is_refused(data: bytes, message: str) -> None:
    args = tuple(
        SCHEMA.encode() if i == data.count(b"%s") - 1 else b"0" * 64
        for i in range(data.count(b"%s"))
    )
    with pytest.raises(VolumeError, match=message):
        parse_statement(data % args if args else data, "here")


def test_nothing_is_signed_when_the_directory_does_not_match(tmp_path: Path) -> None:
    directory = tmp_path / "ds"
    directory.mkdir()
    (directory / "a.csv").write_bytes(b"changed")
    (directory / MANIFEST).write_text(f"{hashlib.sha256(b'orig').hexdigest()}  a.csv\n")
    with pytest.raises(VolumeError, match="does not match its manifest"):
        sign_manifest(directory, KEY, dataset="ds", version="v1")
    assert not (directory / SIGNATURE).exists() and not (directory / STATEMENT).exists()


def test_a_directory_already_on_the_mirror_is_signed_only_as_its_place(tmp_path: Path) -> None:
    directory = tmp_path / "datasets" / "ds" / "v1"
    directory.mkdir(parents=True)
    (directory / "a.csv").write_bytes(b"1\n")
    (directory / MANIFEST).write_text(_sums({"a.csv": b"1\n"}))
    for dataset, version in (("other", "v1"), ("ds", "v2")):
        with pytest.raises(VolumeError, match="published as datasets/ds/v1/, not datasets/"):
            sign_manifest(directory, KEY, dataset=dataset, version=version)
    assert not (directory / SIGNATURE).exists()


def test_the_dataset_url_is_under_the_mirror_and_only_http() -> None:
    assert dataset_url("http://10.254.1.2/", DATASET, "2025.09") == (
        f"http://10.254.1.2/datasets/{DATASET}/2025.09/"
    )
    assert (
        dataset_url("http://mirror.sgm:8080", "d", "v1+b")
        == "http://mirror.sgm:8080/datasets/d/v1%2Bb/"
    )
    for bad in ("file:///etc/", "ftp://m/", "http://m/ x", "http://m/?q=1"):
        with pytest.raises(VolumeError, match="not an http"):
            dataset_url(bad, DATASET, VERSION)


def test_the_pc_fetches_exactly_the_signed_files_and_a_second_load_fetches_nothing(
    mirror: Mirror, tmp_path: Path
) -> None:
    _publish(mirror)
    source = mirror_source(LocalShell(), mirror.url, DATASET, VERSION, KEY.public_key())
    assert [(f.name, f.size) for f in source.files] == sorted((n, len(d)) for n, d in FILES.items())
    assert all(f.path is None and f.url and f.url.startswith(source.base_url) for f in source.files)
    mount = tmp_path / "srv"
    mount.mkdir()
    first = load_files(LocalShell(), str(mount), list(source.files))
    assert (first.sent, first.skipped) == (2, 0)
    assert _held(mount) == FILES
    assert all(p.stat().st_uid == 0 for p in mount.rglob("*.csv"))
    asked = len(mirror.requests)
    again = load_files(LocalShell(), str(mount), list(source.files))
    assert (again.sent, again.skipped) == (0, 2) and len(mirror.requests) == asked


def test_an_unsigned_or_foreign_manifest_is_refused_before_any_file_is_fetched(
    mirror: Mirror,
) -> None:
    directory = _publish(mirror, key=Ed25519PrivateKey.generate())
    with pytest.raises(VolumeError, match="is not signed by the campus key"):
        mirror_source(LocalShell(), mirror.url, DATASET, VERSION, KEY.public_key())
    (directory / SIGNATURE).unlink()
    with pytest.raises(VolumeError, match=f"{SIGNATURE}: HTTP 404 File not found"):
        mirror_source(LocalShell(), mirror.url, DATASET, VERSION, KEY.public_key())
    assert {r.rsplit("/", 1)[1] for r in mirror.requests} == {STATEMENT, SIGNATURE}


def _served_as(mirror: Mirror, published: Path, dataset: str, version: str) -> None:
    """``published`` (files, manifest, signed statement) copied where another belongs."""
    shutil.copytree(published, mirror.root / "datasets" / dataset / version)


@pytest.mark.parametrize(
    ("dataset", "version", "message"),
    [
        ("other-2025", VERSION, f"signed for {DATASET} version {VERSION}, not other-2025 "
         f"version {VERSION}: nothing loaded"),
        (DATASET, "2025.10", f"signed for {DATASET} version {VERSION}, not {DATASET} "
         "version 2025.10: nothing loaded"),
    ],
    ids=["another-dataset", "another-version"],
)  # fmt: skip
def test_a_manifest_signed_for_another_dataset_or_version_is_refused(
    mirror: Mirror, dataset: str, version: str, message: str
) -> None:
    _served_as(mirror, _publish(mirror), dataset, version)
    with pytest.raises(VolumeError, match=re.escape(message)):
        mirror_source(LocalShell(), mirror.url, dataset, version, KEY.public_key())
    assert {r.rsplit("/", 1)[1] for r in mirror.requests} == {STATEMENT, SIGNATURE}


def test_the_old_versions_signed_manifest_does_not_pass_for_the_new_one(mirror: Mirror) -> None:
    # Version 2 published and signed; its statement and signature then swapped for version
    # 1's (the older data a replay would slip in): refused, though the campus signed both.
    old = _publish(mirror, {"a.csv": b"old\n"}, version="1")
    new = _publish(mirror, {"a.csv": b"new\n"}, version="2")
    for name in (STATEMENT, SIGNATURE, MANIFEST):
        shutil.copy(old / name, new / name)
    with pytest.raises(VolumeError, match=f"signed for {DATASET} version 1, not {DATASET} vers"):
        mirror_source(LocalShell(), mirror.url, DATASET, "2", KEY.public_key())
    assert mirror_source(LocalShell(), mirror.url, DATASET, "1", KEY.public_key()).files


@pytest.mark.parametrize(
    "sums",
    [
        {"README.txt": b"other\n", "2025/q1 rows.csv": FILES["2025/q1 rows.csv"]},
        {"README.txt": FILES["README.txt"]},
        {**FILES, "extra.csv": b"x"},
    ],
    ids=["other-hash", "one-missing", "one-more"],
)
def test_a_sha256sums_that_disagrees_with_the_signed_statement_is_refused(
    mirror: Mirror, sums: dict[str, bytes]
) -> None:
    directory = _publish(mirror)
    (directory / MANIFEST).write_text(_sums(sums))
    with pytest.raises(
        VolumeError, match=f"{MANIFEST} disagrees with the signed {STATEMENT} on 1 files"
    ):
        mirror_source(LocalShell(), mirror.url, DATASET, VERSION, KEY.public_key())
    assert {r.rsplit("/", 1)[1] for r in mirror.requests} == {STATEMENT, SIGNATURE, MANIFEST}


def test_a_mirror_copy_that_does_not_match_is_never_put_in_place(
    mirror: Mirror, tmp_path: Path
) -> None:
    directory = _publish(mirror)
    source = mirror_source(LocalShell(), mirror.url, DATASET, VERSION, KEY.public_key())
    (directory / "README.txt").write_bytes(b"swapped on the mirror after signing\n")
    mount = tmp_path / "srv"
    mount.mkdir()
    with pytest.raises(
        VolumeError, match=r"README\.txt: the mirror copy does not match SHA256SUMS"
    ):
        load_files(LocalShell(), str(mount), list(source.files))
    assert not (mount / "README.txt").exists()
    assert not [p for p in mount.rglob("*") if p.name.startswith(load.TEMP_PREFIX)]


def test_a_mirror_that_does_not_answer_is_one_error_naming_the_url(tmp_path: Path) -> None:
    # A port nothing listens on, on loopback: connection refused, at once.
    with pytest.raises(
        VolumeError, match=r"http://127\.0\.0\.1:9/datasets/.*dataset-manifest\.json"
    ):
        mirror_source(LocalShell(), "http://127.0.0.1:9/", DATASET, VERSION, KEY.public_key())


def test_a_mirror_load_is_journaled_and_resumes_only_with_the_same_manifest(
    vol: Vol, mounted: Layout, mirror: Mirror
) -> None:
    directory = _publish(mirror, dataset="ds1")
    source = mirror_source(LocalShell(), mirror.url, "ds1", VERSION, KEY.public_key())
    result = load_volume(vol.store, VOLUME, LocalShell(), vol.journal_dir, source, layout=mounted)
    assert result.outcome == "loaded" and result.detail["sent"] == 2
    assert _held(Path(mounted.mount_point("ds1"))) == FILES
    (done,) = journals(vol.journal_dir, VOLUME)
    plan = json.loads(done.records[1].note or "")
    assert plan == {"mirror": source.base_url, "manifest_sha256": source.manifest_sha256}
    # A crash after sending began: resume fetches from the same signed manifest ...
    shutil.rmtree(mounted.mount_point("ds1"))
    Path(mounted.mount_point("ds1")).mkdir()
    journal = Journal.create(vol.journal_dir, VOLUME, "load", vol.old_key, "plan")
    journal.record("plan", DONE, note=json.dumps(plan))
    journal.record("send", INTENT)
    assert resume_one(vol.store, journal, LocalShell(), layout=mounted).outcome == "loaded"
    assert _held(Path(mounted.mount_point("ds1"))) == FILES
    assert Journal.read(journal.path).finished(FINAL_STEPS)
    # ... and not once the signed statement on the mirror is another.
    (directory / STATEMENT).write_bytes((directory / STATEMENT).read_bytes().replace(b"7", b"8"))
    with pytest.raises(VolumeError, match=f"{STATEMENT} changed since the load began"):
        refetch(LocalShell(), source.base_url, source.manifest_sha256)
