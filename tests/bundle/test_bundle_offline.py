"""Manifest, verify and diff on a tiny bundle built here (real apt-ftparchive and gpg)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.bundle import BundleSpecError
from campus_provision.bundle.archivekey import ARCHIVE_KEY_FILE, ARCHIVE_PURPOSE, unlocked
from campus_provision.bundle.build import select_profiles
from campus_provision.bundle.closure import Request, _spec_problems, requests_for
from campus_provision.bundle.diff import diff_manifests
from campus_provision.bundle.verify import verify_bundle
from campus_provision.keys import KeyStoreError
from campus_provision.keys.signing import PUB_FILE, load_public_key
from campus_provision.spec import load_spec
from tests.bundle.conftest import PASSPHRASE, BuildFake
from tests.conftest import EXAMPLE

TINY = [("hello", "2.10-3"), ("libhello1", "1:1.0-1")]


def test_bundle_holds_a_signed_apt_repository(build_fake: BuildFake, keys_dir: Path) -> None:
    root, manifest = build_fake("b", TINY)
    assert {(p.name, p.version) for p in manifest.packages} == set(TINY)
    hello = next(p for p in manifest.packages if p.name == "hello")
    assert hello.filename == "pool/main/h/hello/hello_2.10-3_amd64.deb"
    lib = next(p for p in manifest.packages if p.name == "libhello1")
    assert lib.filename == "pool/main/libh/libhello1/libhello1_1.0-1_amd64.deb"
    for rel in ("InRelease", "Release.gpg", "Release", "main/binary-amd64/Packages.gz"):
        assert (root / "dists" / "bookworm" / rel).is_file()
    assert (root / "campus-archive.gpg").read_bytes()[:1] != b"-"  # binary, for signed-by=
    doc = json.loads((root / "bundle.json").read_text())
    assert doc["profiles"] == ["tiny"]
    assert doc["archive_key"] == manifest.archive_key
    assert {"name", "version", "arch", "filename", "sha256", "size"} <= set(doc["packages"][0])
    _, problems = verify_bundle(root, load_public_key(keys_dir / PUB_FILE))
    assert problems == []


def test_archive_key_is_sealed_and_reused(build_fake: BuildFake, keys_dir: Path) -> None:
    _, first = build_fake("one", TINY)
    sealed = json.loads((keys_dir / ARCHIVE_KEY_FILE).read_text())
    assert sealed["purpose"] == ARCHIVE_PURPOSE
    assert sealed["meta"]["fingerprint"] == first.archive_key
    assert b"PRIVATE KEY" not in (keys_dir / ARCHIVE_KEY_FILE).read_bytes()
    assert (keys_dir / ARCHIVE_KEY_FILE).stat().st_mode & 0o077 == 0
    _, second = build_fake("two", TINY)
    assert second.archive_key == first.archive_key
    with unlocked(keys_dir, PASSPHRASE, "Test campus") as signer:
        home = signer.home
        assert signer.fingerprint == first.archive_key
    assert not home.exists()  # the unsealed key lived only in a GNUPGHOME now removed


def test_wrong_passphrase_cannot_unlock_archive_key(
    build_fake: BuildFake, keys_dir: Path, tmp_path: Path
) -> None:
    build_fake("one", TINY)
    with (
        pytest.raises(KeyStoreError, match="wrong passphrase"),
        unlocked(keys_dir, PASSPHRASE + "x", "Test campus"),
    ):
        pass


def _verify(run_cli: Callable[..., Result], root: Path, keys_dir: Path) -> Result:
    return run_cli("bundle", "verify", root, "--pubkey", keys_dir / PUB_FILE)


def test_verify_cli_ok(
    build_fake: BuildFake, keys_dir: Path, run_cli: Callable[..., Result]
) -> None:
    root, _ = build_fake("b", TINY)
    result = _verify(run_cli, root, keys_dir)
    assert result.exit_code == 0, result.output
    assert "OK: 2 packages" in result.output


def test_verify_names_a_tampered_deb(
    build_fake: BuildFake, keys_dir: Path, run_cli: Callable[..., Result]
) -> None:
    root, _ = build_fake("b", TINY)
    deb = root / "pool/main/h/hello/hello_2.10-3_amd64.deb"
    data = bytearray(deb.read_bytes())
    data[100] ^= 0x01
    deb.write_bytes(bytes(data))
    result = _verify(run_cli, root, keys_dir)
    assert result.exit_code == 1
    problems = [ln for ln in result.output.splitlines() if "NOT OK" not in ln]
    assert len(problems) == 1
    assert "altered: pool/main/h/hello/hello_2.10-3_amd64.deb" in problems[0]


def test_verify_fails_without_release_signatures(
    build_fake: BuildFake, keys_dir: Path, run_cli: Callable[..., Result]
) -> None:
    root, _ = build_fake("b", TINY)
    (root / "dists/bookworm/InRelease").unlink()
    (root / "dists/bookworm/Release.gpg").unlink()
    result = _verify(run_cli, root, keys_dir)
    assert result.exit_code == 1
    assert "missing: dists/bookworm/InRelease" in result.output
    assert "missing: dists/bookworm/Release.gpg" in result.output
    assert "neither InRelease nor Release.gpg" in result.output


def test_verify_names_extra_files_and_a_bad_manifest_signature(
    build_fake: BuildFake, keys_dir: Path
) -> None:
    root, _ = build_fake("b", TINY)
    (root / "pool/main/h/hello/evil_1.0_amd64.deb").write_bytes(b"x")
    manifest = root / "bundle.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"tiny"', b'"tinx"'))
    _, problems = verify_bundle(root, load_public_key(keys_dir / PUB_FILE))
    assert "extra: pool/main/h/hello/evil_1.0_amd64.deb" in problems
    assert any("bundle.json: the signature does not verify" in p for p in problems)


def test_verify_rejects_release_resigned_with_another_key(
    build_fake: BuildFake, keys_dir: Path, tmp_path: Path
) -> None:
    root, _ = build_fake("b", TINY)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home)]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", "Mallory", "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    dist = root / "dists/bookworm"
    for name in ("InRelease", "Release.gpg"):
        (dist / name).unlink()
    subprocess.run(
        [*gpg, "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release")], check=True
    )
    subprocess.run(
        [*gpg, "-a", "--detach-sign", "-o", str(dist / "Release.gpg"), str(dist / "Release")],
        check=True,
    )
    subprocess.run([*gpg, "--kill", "all"], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
    _, problems = verify_bundle(root, load_public_key(keys_dir / PUB_FILE))
    assert "dists/bookworm/InRelease: signature does not verify with the archive key" in problems
    assert "dists/bookworm/Release.gpg: signature does not verify with the archive key" in problems


def test_diff_reports_added_removed_changed(
    build_fake: BuildFake, run_cli: Callable[..., Result]
) -> None:
    old_root, old = build_fake("old", [("hello", "2.10-3"), ("libhello1", "1.0-1"), ("gone", "1")])
    new_root, new = build_fake("new", [("hello", "2.10-4"), ("libhello1", "1.0-1"), ("fresh", "2")])
    kinds = {(c.name, c.kind, c.old, c.new) for c in diff_manifests(old, new)}
    assert kinds == {
        ("hello", "changed", "2.10-3", "2.10-4"),
        ("gone", "removed", "1", ""),
        ("fresh", "added", "", "2"),
    }
    result = run_cli("bundle", "diff", old_root, new_root)
    assert result.exit_code == 0, result.output
    assert "1 added, 1 removed, 1 changed" in result.output


APT_OUTPUT = """\
Reading package lists...
Building dependency tree...
E: Version '0.0-0' for 'python3-pandas' was not found
E: Unable to locate package nosuchpkg
"""

UNMET_OUTPUT = """\
Some packages could not be installed.
The following packages have unmet dependencies:
 python3-pandas : Depends: python3-numpy (>= 9) but 1:1.24.2-1 is to be installed
E: Unable to correct problems, you have held broken packages.
"""


def test_apt_errors_become_one_line_per_package() -> None:
    request = Request(
        "profile 'analyst'",
        ("python3-pandas=0.0-0", "nosuchpkg"),
        (("nosuchpkg", "--extra"),),
    )
    assert _spec_problems(request, APT_OUTPUT) == [
        "profile 'analyst': package python3-pandas=0.0-0: version 0.0-0 is not in the suite",
        "--extra: package nosuchpkg: no such package in the suite",
    ]
    unmet = _spec_problems(Request("profile 'kiosk'", ("python3-pandas=1.5",)), UNMET_OUTPUT)
    assert len(unmet) == 1
    assert unmet[0].startswith("profile 'kiosk': package python3-pandas=1.5: dependencies")


def test_requests_one_per_profile_without_duplicating_pins() -> None:
    requests = requests_for({"a": ["nginx=1.22", "jq"], "b": ["jq"]}, ["nginx", "chrony"], ["htop"])
    assert [r.packages for r in requests] == [
        ("nginx=1.22", "jq", "chrony", "htop"),
        ("jq", "nginx", "chrony", "htop"),
    ]


def test_unknown_profile_is_a_spec_error() -> None:
    with pytest.raises(BundleSpecError) as info:
        select_profiles(load_spec(EXAMPLE), ["analyst", "nope"])
    assert info.value.exit_code == 2
    assert info.value.lines() == [
        "--profiles: no software profile 'nope' in the spec (it has: analyst, kiosk)"
    ]
