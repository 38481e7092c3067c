"""A fake ansible-playbook for tests: it dumps what it was given and exits.

Found on PATH as the runner finds it on a controller without one beside Python. The dump
(JSON) holds its argv, its environment and, when ``$CAMPUS_KEYSTORE_PASSPHRASE_FILE`` is
set, that file's mode, its directory's mode and the SHA-256 of its content.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE = """\
#!{python}
import hashlib, json, os, stat, sys, time
from pathlib import Path
out = {{"argv": sys.argv, "environ": dict(os.environ)}}
given = os.environ.get("CAMPUS_KEYSTORE_PASSPHRASE_FILE")
if given:
    path = Path(given)
    out["file"] = given
    out["file_mode"] = stat.S_IMODE(path.stat().st_mode)
    out["dir_mode"] = stat.S_IMODE(path.parent.stat().st_mode)
    out["file_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
Path(os.environ["FAKE_PLAYBOOK_DUMP"]).write_text(json.dumps(out))
time.sleep(float(os.environ.get("FAKE_PLAYBOOK_SLEEP", "0")))
sys.exit(int(os.environ.get("FAKE_PLAYBOOK_RC", "0")))
"""


def install_fake_ansible_playbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str = sys.executable
) -> Path:
    """A fake ansible-playbook first on PATH (and none beside Python); its dump file."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "ansible-playbook"
    fake.write_text(FAKE.format(python=python), encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(python).parent}:/usr/bin:/bin")
    # The runner prefers the ansible-playbook beside this Python: point it at a directory
    # that has none, so PATH decides, as on a controller with a system-wide Ansible.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here" / "python"))
    dump = tmp_path / "playbook-dump.json"
    monkeypatch.setenv("FAKE_PLAYBOOK_DUMP", str(dump))
    return dump


def assert_passphrase_only_as_a_file(dump: dict[str, Any], secret: str) -> Path:
    """The child's argv and environment hold no trace of ``secret``; the file it got."""
    assert "CAMPUS_KEYSTORE_PASSPHRASE" not in dump["environ"]
    for value in [*dump["argv"], *dump["environ"].values()]:
        assert secret not in value
    assert dump["file_mode"] == 0o600
    assert dump["file_sha256"] == hashlib.sha256(f"{secret}\n".encode()).hexdigest()
    return Path(dump["file"])
