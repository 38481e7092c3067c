"""Write rendered files atomically, or compare them with what is on disk.

Render owns ``hosts.yml`` and the ``group_vars/`` directory of its output folder and
nothing else there (the spec may sit in the same folder). New files are written to a
temporary directory beside the target and renamed into place, so a failure leaves the
old files as they were.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from campus_provision.errors import RenderError
from campus_provision.render.inventory import HEADER

OWNED_DIR = "group_vars"
_HEADER_PREFIX = HEADER.split("{", 1)[0]


@dataclass
class RenderResult:
    """What a write (or a check) found: files added, changed, removed and unchanged."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """True when the files on disk are not what render makes."""
        return bool(self.added or self.changed or self.removed)


def _on_disk(out: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    hosts = out / "hosts.yml"
    if hosts.is_file():
        found["hosts.yml"] = hosts
    owned = out / OWNED_DIR
    if owned.is_dir():
        for path in sorted(owned.rglob("*")):
            if path.is_file() or path.is_symlink():
                found[path.relative_to(out).as_posix()] = path
    return found


def _compare(out: Path, files: dict[str, str]) -> tuple[RenderResult, dict[str, str]]:
    result = RenderResult()
    old_texts: dict[str, str] = {}
    existing = _on_disk(out)
    for rel, text in files.items():
        path = existing.get(rel)
        if path is None:
            result.added.append(rel)
            continue
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = ""
        old_texts[rel] = old
        (result.unchanged if old == text else result.changed).append(rel)
    for rel, path in existing.items():
        if rel not in files:
            result.removed.append(rel)
            try:
                old_texts[rel] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                old_texts[rel] = ""
    return result, old_texts


def diff_tree(out: Path, files: dict[str, str]) -> tuple[RenderResult, str]:
    """Compare ``files`` with ``out``; return the result and a unified diff."""
    result, old_texts = _compare(out, files)
    chunks: list[str] = []
    for rel in sorted(result.added + result.changed + result.removed):
        old = old_texts.get(rel, "")
        new = files.get(rel, "")
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{rel}" if rel not in result.added else "/dev/null",
                tofile=f"b/{rel}" if rel not in result.removed else "/dev/null",
            )
        )
    return result, "".join(chunks)


def _refuse_foreign_files(out: Path) -> None:
    for rel, path in _on_disk(out).items():
        if not rel.startswith(OWNED_DIR + "/"):
            continue
        try:
            with path.open(encoding="utf-8") as fh:
                first = fh.readline()
        except (OSError, UnicodeDecodeError):
            first = ""
        if not first.startswith(_HEADER_PREFIX):
            raise RenderError(
                f"{path}: not written by campus-provision, and render replaces {out / OWNED_DIR} "
                "whole; move the file out of the way (variables belong in the spec)"
            )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_tree(out: Path, files: dict[str, str]) -> RenderResult:
    """Make ``out`` hold exactly ``files`` (for the paths render owns), atomically."""
    result, _ = _compare(out, files)
    if not result.differs:
        return result
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"{out}: cannot create the output directory: {exc.strerror}") from None
    _refuse_foreign_files(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    except OSError as exc:
        raise RenderError(f"{out}: cannot write here: {exc.strerror}") from None
    old_dir = out / f"{staging.name}-old"
    target_dir = out / OWNED_DIR
    moved_old = False
    try:
        for rel, text in files.items():
            _write(staging / rel, text)
        (staging / OWNED_DIR).mkdir(exist_ok=True)
        if target_dir.exists():
            target_dir.rename(old_dir)
            moved_old = True
        (staging / OWNED_DIR).rename(target_dir)
        (staging / "hosts.yml").replace(out / "hosts.yml")
    except OSError as exc:
        if moved_old and not target_dir.exists():
            old_dir.rename(target_dir)
            moved_old = False
        raise RenderError(f"{out}: writing the inventory failed, old files kept: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if moved_old:
            shutil.rmtree(old_dir, ignore_errors=True)
    return result
