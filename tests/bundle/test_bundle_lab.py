"""Real bundles from the Debian mirror, checked by apt itself (root + network: ``lab``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campus_provision.keys.signing import PUB_FILE
from tests.bundle.conftest import PASSPHRASE
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _needs_root_and_tools() -> None:
    # Lab tests fail with the reason rather than skip (DESIGN §9).
    assert os.geteuid() == 0, "bundle lab tests need root"
    for tool in ("apt-get", "apt-ftparchive", "gpg", "gpgv"):
        assert shutil.which(tool), f"{tool} is missing (apt-get install apt-utils gpg gpgv)"


def _small_spec(tmp_path: Path, packages: list[str]) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("  kiosk:\n")
    end = text.index("\n# --- Datasets")
    lines = "".join(f"      - {p}\n" for p in packages)
    spec = tmp_path / "campus.yml"
    spec.write_text(
        text[:start]
        + f"  kiosk:\n    title: Small test profile\n    packages:\n{lines}"
        + text[end:]
    )
    return spec


def _build(
    run_cli: Callable[..., Result], tmp_path: Path, keys: Path, packages: list[str], out: Path
) -> Result:
    pp = tmp_path / "pp"
    pp.write_text(PASSPHRASE + "\n")
    pp.chmod(0o600)
    spec = _small_spec(tmp_path, packages)
    return run_cli(
        "bundle", "build", spec, "--out", out, "--profiles", "kiosk",
        "--keys-dir", keys, "--passphrase-file", pp,
    )  # fmt: skip


def _apt_update(bundle: Path, keyring: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    """``apt-get update`` against ``bundle`` by file: URI in a throw-away apt config."""
    for sub in ("lists/partial", "cache/archives/partial", "parts", "prefs", "sources.d"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    (scratch / "status").write_text("")
    (scratch / "sources.list").write_text(
        f"deb [signed-by={keyring}] file:{bundle} bookworm main\n"
    )
    conf = scratch / "apt.conf"
    conf.write_text(
        f'Dir::State::lists "{scratch}/lists"; Dir::State::status "{scratch}/status";\n'
        f'Dir::Cache "{scratch}/cache"; Dir::Etc::sourcelist "{scratch}/sources.list";\n'
        f'Dir::Etc::sourceparts "{scratch}/sources.d"; Dir::Etc::parts "{scratch}/parts";\n'
        f'Dir::Etc::preferencesparts "{scratch}/prefs"; Debug::NoLocking "true";\n'
        'APT::Architectures { "amd64"; }; APT::Sandbox::User "root";\n'
    )
    env = {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}
    return subprocess.run(
        ["apt-get", "update"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_small_bundle_builds_verifies_and_apt_trusts_it(
    run_cli: Callable[..., Result], tmp_path: Path, keys_dir: Path
) -> None:
    out = tmp_path / "bundle"
    result = _build(run_cli, tmp_path, keys_dir, ["jq", "python3-pandas=1.5.3+dfsg-2"], out)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.glob("pool/main/*/*/*.deb")}
    assert any(n.startswith("python3-pandas_1.5.3+dfsg-2_") for n in names)
    for needed in ("jq_", "nginx_", "python3-apt_", "auditd_", "libc6_"):
        assert any(n.startswith(needed) for n in names), needed
    verified = run_cli("bundle", "verify", out, "--pubkey", keys_dir / PUB_FILE)
    assert verified.exit_code == 0, verified.output

    ok = _apt_update(out, out / "campus-archive.gpg", tmp_path / "apt-ok")
    assert ok.returncode == 0 and "W:" not in ok.stdout + ok.stderr, ok.stdout + ok.stderr

    other = tmp_path / "other-gnupg"
    other.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(other)]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "Other", "ed25519", "sign"],
                   check=True, capture_output=True)  # fmt: skip
    keyring = tmp_path / "other.gpg"
    keyring.write_bytes(subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout)
    subprocess.run(["gpgconf", "--homedir", str(other), "--kill", "all"], check=False)
    bad = _apt_update(out, keyring, tmp_path / "apt-bad")
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0 or "NO_PUBKEY" in text or "not signed" in text, text
    assert "is not signed" in text or "NO_PUBKEY" in text, text


def test_unmeetable_pin_is_one_line_naming_profile_and_package(
    run_cli: Callable[..., Result], tmp_path: Path, keys_dir: Path
) -> None:
    out = tmp_path / "bundle"
    result = _build(run_cli, tmp_path, keys_dir, ["jq", "python3-pandas=0.0-0"], out)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "profile 'kiosk': package python3-pandas=0.0-0: version 0.0-0 is not in the suite"
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".bundle.*"))
