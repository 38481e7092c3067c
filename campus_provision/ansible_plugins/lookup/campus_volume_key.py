"""campus_volume_key: a data volume's LUKS keyfile text, from the campus volume keystore.

Ansible loads this file from the ``lookup_plugins`` directory that the generated
ansible.cfg names, and runs it on the controller. Unlike the callback, it does import the
package: the keystore code is the one place that knows how a key is sealed. It finds the
keystore and its passphrase as ``campus_provision.keys.volumes.open_volume_keystore`` does,
from the environment ansible-playbook inherits (``CAMPUS_KEYS_DIR``,
``CAMPUS_KEYSTORE_PASSPHRASE_FILE`` or ``CAMPUS_KEYSTORE_PASSPHRASE``). campus-provision
itself hands it only the file (0600), never the passphrase; a passphrase file others may
open is refused. Every error is one line naming the volume, the key file or the passphrase
file, never the key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.lookup import LookupBase  # type: ignore[import-untyped]

try:
    from campus_provision.keys import KeyStoreError
    from campus_provision.keys.volumes import open_volume_keystore
except ImportError:  # run by an ansible-playbook that has the checkout but not the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from campus_provision.keys import KeyStoreError
    from campus_provision.keys.volumes import open_volume_keystore

DOCUMENTATION = """
name: campus_volume_key
short_description: the keyfile text of a data volume's key from the campus volume keystore
description:
  - Returns, for each volume id C(<hostname>/<dataset-id>), the keyfile cryptsetup reads
    for it - the base64 of the volume's 64-byte key, 88 ASCII characters, no newline.
  - The volume's current (newest) key, or the key O(key_id) names.
  - The keystore is C($CAMPUS_KEYS_DIR) (else the operator's default keys directory); its
    passphrase comes from the file C($CAMPUS_KEYSTORE_PASSPHRASE_FILE) names (refused when
    group or others may open it), else C($CAMPUS_KEYSTORE_PASSPHRASE).
  - Use the value only in no_log tasks, and write it only to 0600 files or stdin.
options:
  _terms:
    description: Volume ids, C(<hostname>/<dataset-id>).
    required: true
  key_id:
    description: A specific key (as C(campus-provision keys volumes) lists them) instead
      of the volume's current one.
    type: str
"""

EXAMPLES = """
- name: Install the data volume's keyfile
  ansible.builtin.copy:
    content: "{{ lookup('campus_volume_key', inventory_hostname ~ '/card-spending-2025') }}"
    dest: /etc/cryptsetup-keys.d/card-spending-2025.key
    mode: "0600"
  no_log: true
"""

RETURN = """
_raw:
  description: One keyfile text (88 ASCII characters) per volume id.
  type: list
  elements: str
"""


class LookupModule(LookupBase):  # type: ignore[misc]  # LookupBase is untyped
    """The keyfile text of each volume id given."""

    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        key_id = self.get_option("key_id")
        try:
            store = open_volume_keystore()
            texts = []
            for term in terms:
                volume = str(term)
                chosen = key_id
                if not chosen:
                    current = store.current(volume)
                    if current is None:
                        raise KeyStoreError(
                            f"no key for volume {volume} in {store.keys_dir}; make one with "
                            f"'campus-provision keys volume-create {volume}'"
                        )
                    chosen = current.key_id
                texts.append(store.secret(volume, str(chosen)).decode("ascii"))
        except KeyStoreError as exc:
            # "from None": the chained KeyStoreError would only say the same again.
            raise AnsibleError(f"campus_volume_key: {exc}") from None
        return texts
