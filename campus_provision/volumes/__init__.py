"""Dataset volumes after they exist: key rotation, crash-safe, with an on-disk journal.

- :mod:`~campus_provision.volumes.backend`: the few cryptsetup operations rotation needs on
  one volume, keys always on stdin (a local LUKS2 file now; a PC over SSH later).
- :mod:`~campus_provision.volumes.journal`: one JSON-lines file per operation, each step
  written and fsync'd before it is carried out and again after; key ids only, never keys.
- :mod:`~campus_provision.volumes.rotate`: ``rotate-key`` and ``resume``.
"""

from __future__ import annotations

from campus_provision.errors import CampusProvisionError


class VolumeError(CampusProvisionError):
    """Raised when a volume operation cannot start, cannot go on, or needs an operator.

    cryptsetup missing, failing or timing out; a volume that does not open with the
    keystore's current key, or a PC key file that does not hold it, before a rotation; an
    unfinished rotation of the same volume (resume it first), or one running now; a damaged
    journal; a rotation stopped by an error (the message says that ``resume`` completes or
    rolls it back); a state that no step may change safely, such as a slot that is the
    volume's last or that the authorising key itself opens.
    """


__all__ = ["VolumeError"]
