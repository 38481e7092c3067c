"""``bundle diff``: which packages a new bundle adds, removes or changes against an old one."""

from __future__ import annotations

from dataclasses import dataclass

from campus_provision.bundle.manifest import Manifest


@dataclass(frozen=True, order=True)
class Change:
    """One package's difference: ``kind`` is ``added``, ``removed`` or ``changed``."""

    name: str
    arch: str
    kind: str
    old: str  # versions, comma-separated; empty when added
    new: str  # empty when removed


def diff_manifests(old: Manifest, new: Manifest) -> list[Change]:
    """The changes from ``old`` to ``new``, sorted by package name."""

    def versions(m: Manifest) -> dict[tuple[str, str], str]:
        by: dict[tuple[str, str], list[str]] = {}
        for p in m.packages:
            by.setdefault((p.name, p.arch), []).append(p.version)
        return {k: ", ".join(sorted(v)) for k, v in by.items()}

    before, after = versions(old), versions(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        name, arch = key
        if key not in before:
            changes.append(Change(name, arch, "added", "", after[key]))
        elif key not in after:
            changes.append(Change(name, arch, "removed", before[key], ""))
        elif before[key] != after[key]:
            changes.append(Change(name, arch, "changed", before[key], after[key]))
    return changes
