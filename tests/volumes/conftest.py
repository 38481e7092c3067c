"""Volume fixtures: a real LUKS2 file (the real cryptsetup) keyed by a real keystore key.

Made once per session at a low KDF cost and copied, sparse, for each test: luksFormat and
sealing a key cost tenths of a second each, and the rotation tests need dozens of volumes.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campus_provision.cli import volumes_common
from campus_provision.keys.volumes import KEYFILE_BYTES, VolumeKeystore
from campus_provision.volumes import load
from campus_provision.volumes.backend import LocalFileBackend, Pbkdf
from campus_provision.volumes.journal import default_journal_dir
from campus_provision.volumes.lifecycle import Layout

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test fixture
OTHER_PASSPHRASE = "tr0ub4dor&3 is not better"  # noqa: S105 - a test fixture
VOLUME = "pc-01/ds1"
HEADER_MIB = 16
# Cheap keyslots: the tests make and test dozens; the role's default costs ~1 GiB and 2 s.
CHEAP = Pbkdf(pbkdf="argon2id", memory_kib=32768, force_iterations=4)
CHUNK = 1 << 16


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the machine's own keys directory or passphrase."""
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE", raising=False)
    monkeypatch.delenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(tmp_path / "default-keys"))


@pytest.fixture(autouse=True)
def _no_login_probe(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], str]]:
    """No unit test may probe SSH logins: the example campus's addresses are not the lab's.

    The probe answers "nobody": each target keeps the inventory's user. The calls are kept.
    """
    calls: list[tuple[list[str], str]] = []

    def probe(inventory: Path, hosts: list[str], admin: str) -> dict[str, str]:
        calls.append((hosts, admin))
        return {}

    monkeypatch.setattr(volumes_common, "login_users", probe)
    return calls


def cryptsetup() -> str:
    found = shutil.which("cryptsetup", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        pytest.fail(
            "cryptsetup is not installed: the volume tests run the real cryptsetup on LUKS2 "
            "files; install it with 'apt-get install cryptsetup-bin'",
            pytrace=False,
        )
    return found


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` leaving its all-zero 64 KiB blocks as holes (the header is mostly zeros)."""
    zero = bytes(CHUNK)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while block := fin.read(CHUNK):
            if block == zero[: len(block)]:
                fout.seek(len(block), 1)
            else:
                fout.write(block)
        fout.truncate(src.stat().st_size)


@dataclass(frozen=True)
class Template:
    keys_dir: Path
    header: Path
    keyfile: Path


@dataclass(frozen=True)
class Vol:
    """One test's volume: the keystore, the LUKS2 file and the 'PC's' key file beside it."""

    keys_dir: Path
    header: Path
    keyfile: Path
    journal_dir: Path
    store: VolumeKeystore
    backend: LocalFileBackend
    old_key: str
    old_secret: bytes

    def snapshot(self) -> dict[str, bytes]:
        """Every byte rotation could change: keystore and journals, header, key file."""
        files = {
            str(p.relative_to(self.keys_dir)): p.read_bytes()
            for p in sorted(self.keys_dir.rglob("*"))
            if p.is_file()
        }
        files["<header>"] = self.header.read_bytes()
        files["<keyfile>"] = self.keyfile.read_bytes()
        return files


@pytest.fixture(scope="session")
def luks_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    binary = cryptsetup()
    root = tmp_path_factory.mktemp("luks")
    store = VolumeKeystore(root / "keys", PASSPHRASE)
    key = store.create(VOLUME)
    secret = store.secret(VOLUME, key.key_id)
    header = root / "ds1.luks"
    with header.open("wb") as fh:
        fh.truncate(HEADER_MIB << 20)
    done = subprocess.run(
        [binary, "luksFormat", "--batch-mode", "--type", "luks2",
         "--cipher", "aes-xts-plain64", "--key-size", "512", *CHEAP.args(),
         "--label", "ds1@1", "--key-file=-", f"--keyfile-size={KEYFILE_BYTES}", str(header)],
        input=secret, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    keyfile = root / "ds1.key"
    keyfile.write_bytes(secret)
    keyfile.chmod(0o600)
    return Template(root / "keys", header, keyfile)


@pytest.fixture
def vol(luks_template: Template, tmp_path: Path) -> Vol:
    keys_dir = tmp_path / "keys"
    shutil.copytree(luks_template.keys_dir, keys_dir)
    header, keyfile = tmp_path / "ds1.luks", tmp_path / "ds1.key"
    sparse_copy(luks_template.header, header)
    shutil.copy2(luks_template.keyfile, keyfile)
    store = VolumeKeystore(keys_dir, PASSPHRASE)
    current = store.current(VOLUME)
    assert current is not None
    return Vol(
        keys_dir, header, keyfile, default_journal_dir(keys_dir), store,
        LocalFileBackend(header, keyfile, pbkdf=CHEAP), current.key_id,
        store.secret(VOLUME, current.key_id),
    )  # fmt: skip


@pytest.fixture
def mounted(vol: Vol, monkeypatch: pytest.MonkeyPatch) -> Layout:
    """ds1's 'mount point' is a plain directory; the mount check is the lab's business."""
    root = vol.header.parent / "srv"
    (root / "ds1").mkdir(parents=True)
    monkeypatch.setattr(load, "require_mounted", lambda shell, mount, mapper: None)
    return Layout(mount_root=str(root), reload_systemd=False)


@dataclass
class Mirror:
    """A campus mirror stand-in on loopback: a real HTTP server over ``root``; ``requests``
    holds the paths asked for, in order."""

    root: Path
    url: str
    requests: list[str]


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror-root"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield Mirror(root, f"http://127.0.0.1:{server.server_address[1]}/", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
