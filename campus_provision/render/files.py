"""Write rendered files so that readers see the old inventory or the new one, or compare them.

Render owns ``hosts.yml``, the ``group_vars/`` directory and the ``.rendered/`` directory of
its output folder and nothing else there (the spec, and provision's run lock, may sit in
the same folder). The files live in a generation directory, ``.rendered/g-<hash>/``, named
after their content; ``.rendered/current`` is a symlink to the generation in use, and
``hosts.yml`` and ``group_vars`` are fixed symlinks through it::

    hosts.yml  -> .rendered/current/hosts.yml
    group_vars -> .rendered/current/group_vars
    .rendered/current -> g-0123456789abcdef

A render writes a new generation beside the old one (every file and directory fsync'd),
then replaces ``current`` with one ``rename(2)``: hosts.yml and group_vars switch together,
and a failure at any step leaves the old pair whole. Only the generation in use is kept.

An output folder in the older layout (a real ``hosts.yml`` and ``group_vars/``) is taken
over without changing what it reads: its files are copied into a generation first, then
each is swapped for its link (``group_vars`` with ``renameat2(RENAME_EXCHANGE)``, so it is
never missing), and only then is the new generation switched in.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from campus_provision.errors import RenderError
from campus_provision.render.inventory import HEADER

HOSTS = "hosts.yml"
OWNED_DIR = "group_vars"
GENERATIONS = ".rendered"
CURRENT = "current"
_HEADER_PREFIX = HEADER.split("{", 1)[0]
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass
class RenderResult:
    """What a write (or a check) found: files added, changed, removed and unchanged.

    ``migrated`` is set when a write moved an older layout (real files) into generations.
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    migrated: bool = False

    @property
    def differs(self) -> bool:
        """True when the files on disk are not what render makes."""
        return bool(self.added or self.changed or self.removed)


def _on_disk(out: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    hosts = out / HOSTS
    if hosts.is_file():
        found[HOSTS] = hosts
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


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); OSError if not possible."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(b))
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(b))


def _link_target(name: str) -> str:
    return f"{GENERATIONS}/{CURRENT}/{name}"


def _is_ours(path: Path) -> bool:
    return path.is_symlink() and str(path.readlink()) == _link_target(path.name)


def _in_generations(out: Path) -> bool:
    """True when ``out`` already reads through ``.rendered/current``."""
    return (
        _is_ours(out / HOSTS)
        and _is_ours(out / OWNED_DIR)
        and (out / GENERATIONS / CURRENT).is_symlink()
    )


@contextlib.contextmanager
def _locked(gens: Path) -> Iterator[None]:
    """Hold an flock on ``.rendered`` itself: one render of a folder at a time."""
    try:
        fd = os.open(gens, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RenderError(
            f"{gens}: not a directory render made ({exc.strerror}); move it out of the way"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _generation_name(files: Mapping[str, str | bytes]) -> str:
    digest = hashlib.sha256()
    for rel, text in sorted(files.items()):
        data = text.encode("utf-8") if isinstance(text, str) else text
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return f"g-{digest.hexdigest()[:16]}"


def _current(gens: Path) -> str | None:
    link = gens / CURRENT
    return str(link.readlink()) if link.is_symlink() else None


def _stage(gens: Path, files: Mapping[str, str | bytes]) -> Path:
    """A complete generation of ``files`` in ``gens``, on disk, not yet in use."""
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=gens))
    try:
        for rel, text in sorted(files.items()):
            _write(staging / rel, text)
        (staging / OWNED_DIR).mkdir(exist_ok=True)
        # mkdtemp made it 0700; readers get what a plain mkdir gives (the umask's say).
        staging.chmod(stat.S_IMODE((staging / OWNED_DIR).stat().st_mode))
        dirs = {staging / rel for rel in files} | {staging / OWNED_DIR / "x"}
        for directory in sorted({p.parent for p in dirs}, key=lambda p: -len(p.parts)):
            _fsync_dir(directory)
        name = _generation_name(files)
        final, n = gens / name, 1
        # The content-named generation may be the one in use if its files were edited by hand.
        while final.name == _current(gens):
            n += 1
            final = gens / f"{name}-{n}"
        if final.exists():
            shutil.rmtree(final)  # left by a render that failed before its switch
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(gens)
    return final


def _switch(gens: Path, generation: Path) -> None:
    """Point ``current`` at ``generation``: the one step that changes what readers see."""
    link = gens / f".current-{secrets.token_hex(4)}"
    link.symlink_to(generation.name)
    try:
        link.replace(gens / CURRENT)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    _fsync_dir(gens)


def _install_link(out: Path, name: str) -> None:
    """Make ``out/name`` the fixed link through ``current``, replacing what is there in one step."""
    path = out / name
    gens = out / GENERATIONS
    link = gens / f".link-{secrets.token_hex(4)}"
    # Relative, so that it resolves from out/ once it is moved there.
    link.symlink_to(_link_target(name))
    try:
        if path.is_dir() and not path.is_symlink():
            try:
                _exchange(link, path)  # the old directory is now at `link`, pruned later
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                # No RENAME_EXCHANGE on this file system: two renames, put back on failure.
                # Only an older layout's first render takes this path.
                aside = gens / f".old-{secrets.token_hex(4)}"
                path.rename(aside)
                try:
                    link.rename(path)
                except BaseException:
                    aside.rename(path)
                    raise
        else:
            link.replace(path)
    except BaseException:
        if link.is_symlink():
            link.unlink()
        raise
    _fsync_dir(out)


def _adopt(out: Path, gens: Path) -> bool:
    """Move an older layout into a generation without changing what it reads; True if moved."""
    hosts, owned = out / HOSTS, out / OWNED_DIR
    if _in_generations(out) or not (os.path.lexists(hosts) or os.path.lexists(owned)):
        return False
    visible: dict[str, str | bytes] = {
        rel: path.read_bytes() for rel, path in _on_disk(out).items()
    }
    _switch(gens, _stage(gens, visible))
    if not _is_ours(owned):
        _install_link(out, OWNED_DIR)
    if os.path.lexists(hosts) and not _is_ours(hosts):
        _install_link(out, HOSTS)
    return True


def _prune(gens: Path) -> None:
    """Remove every generation but the one in use, and what failed renders left."""
    keep = {CURRENT, _current(gens)}
    for entry in gens.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def write_tree(out: Path, files: dict[str, str]) -> RenderResult:
    """Make ``out`` hold exactly ``files`` (for the paths render owns), switched in one step."""
    result, _ = _compare(out, files)
    if not result.differs and _in_generations(out):
        return result
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"{out}: cannot create the output directory: {exc.strerror}") from None
    _refuse_foreign_files(out)
    gens = out / GENERATIONS
    try:
        gens.mkdir(exist_ok=True)
    except OSError as exc:
        raise RenderError(f"{out}: cannot write here: {exc.strerror}") from None
    with _locked(gens):
        result, _ = _compare(out, files)  # again: another render may have finished meanwhile
        fresh = not (os.path.lexists(out / HOSTS) or os.path.lexists(out / OWNED_DIR))
        try:
            result.migrated = _adopt(out, gens)
            if result.differs or _current(gens) is None:
                _switch(gens, _stage(gens, files))
            # A first render adds group_vars before hosts.yml: no hosts.yml without its vars.
            if not _is_ours(out / OWNED_DIR):
                _install_link(out, OWNED_DIR)
            if not _is_ours(out / HOSTS):
                _install_link(out, HOSTS)
        except OSError as exc:
            if fresh and not os.path.lexists(out / HOSTS) and _is_ours(out / OWNED_DIR):
                (out / OWNED_DIR).unlink()
            if _compare(out, files)[0].differs:
                raise RenderError(
                    f"{out}: writing the inventory failed, old files kept: {exc}"
                ) from None
            raise RenderError(
                f"{out}: the new inventory is in place, but a step after the switch failed "
                f"(it may not be on disk yet): {exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                _prune(gens)
    return result
