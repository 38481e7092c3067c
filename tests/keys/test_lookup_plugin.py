"""The campus_volume_key lookup, run by a real ``ansible`` on localhost and called directly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.loader import lookup_loader  # type: ignore[import-untyped]

from campus_provision.keys.volumes import VolumeKeystore
from campus_provision.provision.ansiblecfg import LOOKUP_PLUGIN_DIR
from tests.keys.conftest import OTHER_PASSPHRASE, PASSPHRASE, Sealed

ANSIBLE = Path(sys.executable).parent / "ansible"


def _ansible(
    msg: str, tmp_path: Path, sealed: Sealed, passphrase: str
) -> subprocess.CompletedProcess[str]:
    secret = tmp_path / "keystore-pass"
    secret.write_text(passphrase + "\n")
    secret.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CAMPUS_"))}
    env.update(
        ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),  # not the checkout's ansible.cfg
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOOKUP_PLUGINS=str(LOOKUP_PLUGIN_DIR),
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_NOCOLOR="1",
        CAMPUS_KEYS_DIR=str(sealed.keys_dir),
        CAMPUS_KEYSTORE_PASSPHRASE_FILE=str(secret),
    )
    return subprocess.run(
        [str(ANSIBLE), "localhost", "-c", "local", "-i", "localhost,",
         "-m", "ansible.builtin.debug", "-a", json.dumps({"msg": msg})],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_ansible_gets_the_current_key_and_a_chosen_one(sealed: Sealed, tmp_path: Path) -> None:
    store = VolumeKeystore(sealed.keys_dir, PASSPHRASE)
    new, old = (store.secret("h1/ds1", k.key_id) for k in (sealed.new, sealed.old))
    msg = (
        "{{ lookup('campus_volume_key', 'h1/ds1') | length }} "
        "{{ lookup('campus_volume_key', 'h1/ds1') | hash('sha256') }} "
        f"{{{{ lookup('campus_volume_key', 'h1/ds1', key_id='{sealed.old.key_id}') "
        "| hash('sha256') }}"
    )
    run = _ansible(msg, tmp_path, sealed, PASSPHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    expected = f"88 {hashlib.sha256(new).hexdigest()} {hashlib.sha256(old).hexdigest()}"
    assert f'"msg": "{expected}"' in run.stdout
    assert new.decode() not in run.stdout + run.stderr


def test_ansible_with_a_wrong_passphrase_fails_cleanly(sealed: Sealed, tmp_path: Path) -> None:
    run = _ansible("{{ lookup('campus_volume_key', 'h1/ds1') }}", tmp_path, sealed,
                   OTHER_PASSPHRASE)  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"campus_volume_key: wrong passphrase for {sealed.new.path}" in output
    secret = VolumeKeystore(sealed.keys_dir, PASSPHRASE).secret("h1/ds1", sealed.new.key_id)
    assert secret.decode() not in output
    assert OTHER_PASSPHRASE not in output
    assert "Traceback" not in output


def test_a_volume_without_keys_or_a_passphrase_is_a_clear_error(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loaded as Ansible loads it (the loader gives the plugin its documented options).
    lookup_loader.add_directory(str(LOOKUP_PLUGIN_DIR))
    lookup = lookup_loader.get("campus_volume_key")
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(sealed.keys_dir))
    with pytest.raises(AnsibleError, match=r"no keystore passphrase: .*CAMPUS_KEYSTORE_PASSPHRASE"):
        lookup.run(["h1/ds1"])
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE", PASSPHRASE)
    with pytest.raises(AnsibleError, match=r"no key for volume h9/ds9 in .*keys volume-create"):
        lookup.run(["h9/ds9"])
    with pytest.raises(AnsibleError, match="not a volume id"):
        lookup.run(["h1"])


def test_a_passphrase_file_others_can_read_is_refused(
    sealed: Sealed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup_loader.add_directory(str(LOOKUP_PLUGIN_DIR))
    lookup = lookup_loader.get("campus_volume_key")
    secret = tmp_path / "keystore-pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o644)
    monkeypatch.setenv("CAMPUS_KEYS_DIR", str(sealed.keys_dir))
    monkeypatch.setenv("CAMPUS_KEYSTORE_PASSPHRASE_FILE", str(secret))
    with pytest.raises(AnsibleError) as caught:
        lookup.run(["h1/ds1"])
    assert str(caught.value) == (
        f"campus_volume_key: {secret}: the passphrase file is open to other users "
        f"(mode 0644); run 'chmod 600 {secret}'"
    )
    secret.chmod(0o600)
    assert len(lookup.run(["h1/ds1"])[0]) == 88
