"""Load a dataset's files onto its mounted volume on a PC, checked against a SHA-256 manifest.

The source is a directory on the controller holding the files and ``SHA256SUMS`` (what
``sha256sum`` writes: ``<64 hex>  <relative name>``, one a line). Before anything is sent,
every file is hashed here and the whole directory must match the manifest exactly: a file
whose hash differs (tampered), a listed file that is not there (missing), a file the
manifest does not list (unlisted), a name that could leave the volume (``..``, absolute,
control characters, a backslash) or a symlink refuses the load, and nothing changes on any
PC.

On the PC, each file not already there with the right hash streams over one SSH command
(never whole in the controller's memory) into a temp file beside its place
(``.load.XXXXXX``), hashed there against the manifest, root-owned, readable as the volume's root
directory is (the role's ACL: the reader groups, or everyone for open data), synced, then
renamed into place: a reader sees the old file or the new one, never a half. Then every
file is hashed again on the PC. Loading twice sends nothing the second time.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from campus_provision.shell import quote as q
from campus_provision.volumes import VolumeError
from campus_provision.volumes.remote import DEFAULT_TIMEOUT, SECONDS_PER_BYTE, Shell, check

MANIFEST = "SHA256SUMS"
# What 'volumes sign-manifest' writes beside it for the mirror: the signed statement of the
# dataset, its version and its files, and the signature (see volumes.mirror).
SIGNED_MANIFEST = "dataset-manifest.json"
SIGNED_MANIFEST_SIGNATURE = f"{SIGNED_MANIFEST}.sig"
# The signature of SHA256SUMS alone that sign-manifest wrote before; it binds nothing and
# nothing reads it, but a directory signed then still holds it: not a dataset file.
MANIFEST_SIGNATURE = f"{MANIFEST}.sig"
RESERVED_NAMES = frozenset(
    {MANIFEST, MANIFEST_SIGNATURE, SIGNED_MANIFEST, SIGNED_MANIFEST_SIGNATURE}
)
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_NAME_PART = re.compile(r"[\w.][\w .,+=@%~#()-]*")
_CHUNK = 1 << 20
MAX_PROBLEMS_SHOWN = 5
TEMP_PREFIX = ".load."


@dataclass(frozen=True)
class SourceFile:
    """One file of the dataset: its name on the volume, where it is here, its hash.

    ``path`` is None for a file the PC fetches itself from ``url`` (``--from-mirror``);
    its size is then the one the signed manifest states.
    """

    name: str
    path: Path | None
    sha256: str
    size: int | None
    url: str | None = None


def check_name(name: str) -> str:
    """``name`` if it is a plain relative path that stays inside the volume (else VolumeError).

    A manifest is data from outside (a directory handed over, a mirror), and its names go
    into commands on the PC. They are quoted there; still, a name is refused unless each of
    its ``/``-separated parts is letters (any script), digits, spaces and ``. , + = @ % ~ #
    ( ) _ -``, starting with a letter, digit, ``_`` or ``.`` (never ``-``): no quote, ``$``,
    backtick, backslash or control character, no ``..``, nothing absolute.
    """
    parts = name.split("/")
    if (
        not name
        or not all(_NAME_PART.fullmatch(p) for p in parts)
        or any(p in ("..", ".") for p in parts)
        or parts[-1].startswith(TEMP_PREFIX)
        or name in RESERVED_NAMES
    ):
        raise VolumeError(
            f"{name!r}: not a file name a dataset may have (relative, no '..'; letters, "
            "digits, spaces and . , + = @ % ~ # ( ) _ -, no part starting with '-')"
        )
    return name


def read_manifest(path: Path) -> dict[str, str]:
    """Name → sha256 from a ``sha256sum`` manifest (VolumeError naming the bad line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VolumeError(
            f"{path}: no manifest; make one with 'sha256sum FILES > {MANIFEST}' in the dataset "
            "directory"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VolumeError(f"{path}: cannot read the manifest: {exc}") from None
    return parse_manifest(text, str(path))


def parse_manifest(text: str, path: str) -> dict[str, str]:
    """Name → sha256 from a manifest's text; ``path`` names it in errors (with the line)."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise VolumeError(f"{path}:{number}: not a sha256sum line ('<64 hex>  <name>')")
        digest, name = match.group(1).lower(), match.group(2)
        try:
            check_name(name.removeprefix("./"))
        except VolumeError as exc:
            raise VolumeError(f"{path}:{number}: {exc}") from None
        name = name.removeprefix("./")
        if name in found:
            raise VolumeError(f"{path}:{number}: {name} is listed twice")
        found[name] = digest
    if not found:
        raise VolumeError(f"{path}: an empty manifest")
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _walk(source: Path, listed: dict[str, str], problems: list[str]) -> dict[str, Path]:
    """The listed regular files of ``source`` by name; what else is there goes to problems."""
    present: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        base = Path(dirpath)
        problems += [
            f"{(base / d).relative_to(source)}: a symlink (not loaded)"
            for d in dirnames
            if (base / d).is_symlink()
        ]
        for f in filenames:
            path = base / f
            name = path.relative_to(source).as_posix()
            if name in RESERVED_NAMES:
                continue
            if path.is_symlink() or not path.is_file():
                problems.append(f"{name}: not a regular file")
            elif name not in listed:
                problems.append(f"{name}: not in {MANIFEST} (unlisted)")
            else:
                present[name] = path
    return present


def check_source(source: Path) -> list[SourceFile]:
    """Every file of ``source``, hashed and matched against its manifest (VolumeError if any
    is tampered, missing, unlisted or not a plain file), in name order."""
    if not source.is_dir():
        raise VolumeError(f"{source}: not a directory")
    listed = read_manifest(source / MANIFEST)
    problems: list[str] = []
    present = _walk(source, listed, problems)
    files = []
    for name, digest in sorted(listed.items()):
        if name not in present:
            if not any(p.startswith(f"{name}:") for p in problems):
                problems.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        actual = sha256_file(present[name])
        if actual != digest:
            problems.append(f"{name}: sha256 {actual[:12]}… is not the manifest's {digest[:12]}…")
            continue
        files.append(SourceFile(name, present[name], digest, present[name].stat().st_size))
    if problems:
        shown = "; ".join(sorted(problems)[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        raise VolumeError(
            f"{source}: does not match its manifest, nothing loaded: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    return files


@dataclass(frozen=True)
class LoadResult:
    """What one load did on one volume."""

    sent: int
    skipped: int
    bytes_sent: int


def remote_hashes(shell: Shell, mount: str, names: list[str]) -> dict[str, str]:
    """Name → sha256 of those of ``names`` that are regular files under ``mount`` on the PC."""
    stdin = "".join(f"{n}\0" for n in names).encode("utf-8")
    out = check(
        shell,
        f"cd {q(mount)} && xargs -0 -r sh -c "
        '\'for f; do if [ -f "$f" ] && [ ! -L "$f" ]; then sha256sum -- "$f"; fi; done\' sh',
        f"hashing the files in {mount}",
        stdin,
    )
    found = {}
    for line in out.splitlines():
        match = _LINE.fullmatch(line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def require_mounted(shell: Shell, mount: str, mapper: str) -> None:
    out = shell.run(f"findmnt -rn -o SOURCE --mountpoint {q(mount)}").stdout.strip()
    if not out:
        raise VolumeError(
            f"{shell.where}: {mount} is not mounted: create the volume first "
            "('campus-provision volumes create')"
        )
    real = check(shell, f"readlink -f -- {q(out)} {q(mapper)}", "resolving the mount").split()
    if len(real) != 2 or real[0] != real[1]:
        raise VolumeError(f"{shell.where}: {mount} has {out} mounted on it, not {mapper}")


# Fetch one URL to stdout on the PC, with the PC's python3 (there for Ansible), no proxy:
# the mirror is on the campus LAN. Exit 4 with one line when the mirror does not serve it.
FETCH_PY = (
    "import shutil,sys,urllib.request as u\n"
    "o=u.build_opener(u.ProxyHandler({}))\n"
    "try:\n"
    " with o.open(sys.argv[1],timeout=60) as r: shutil.copyfileobj(r,sys.stdout.buffer)\n"
    "except Exception as e:\n"
    " c=getattr(e,'code',None); w=('HTTP %s '%c) if c else ''\n"
    " sys.stderr.write(sys.argv[1]+': '+w+str(getattr(e,'reason',e))+'\\n'); sys.exit(4)\n"
)


def fetch_command(url: str) -> str:
    """The shell words that write ``url`` to stdout on the PC."""
    return f"python3 -c {q(FETCH_PY)} {q(url)}"


def _place_script(mount: str, name: str, fill: str) -> str:
    """Shell: ``fill`` writes a temp file ``$tmp`` beside ``name``; then it is made
    root-owned, readable as the volume's root is, synced and renamed into place."""
    target = q(name)
    return (
        "set -eu\n"
        f"cd {q(mount)}\n"
        f"d=$(dirname -- {target})\n"
        'mkdir -p -- "$d"\n'
        f'tmp=$(mktemp "$d/{TEMP_PREFIX}XXXXXX")\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        f"{fill}\n"
        'chown 0:0 "$tmp"\n'
        # The directory's mode without execute and write bits for anyone but root: the
        # ACL's mask follows, so the reader groups read it and nobody else does.
        "mode=$(stat -c %a .)\n"
        'chmod "$(printf %o $((0$mode & 0644)))" "$tmp"\n'
        'sync -- "$tmp"\n'
        f'mv -f -- "$tmp" {target}\n'
        "trap - EXIT\n"
    )


def _transfer_timeout(size: int | None) -> float:
    """How long one file's command may run: longer for a larger file."""
    return DEFAULT_TIMEOUT + (size or 0) * SECONDS_PER_BYTE


def _hash_or_refuse(item: SourceFile, why: str) -> str:
    """Shell: exit 5 with ``why`` unless ``$tmp`` hashes as the manifest says ``item`` does."""
    return (
        f'[ "$(sha256sum < "$tmp" | cut -d" " -f1)" = {q(item.sha256)} ] || '
        f"{{ echo {q(item.name + ': ' + why)} >&2; exit 5; }}"
    )


def fetch_file(shell: Shell, mount: str, item: SourceFile) -> None:
    """One file fetched by the PC from the mirror into its place, refused (exit 5, nothing
    renamed) unless it hashes as the manifest says."""
    if item.url is None:
        raise VolumeError(f"{item.name}: no URL to fetch it from")
    fill = f'{fetch_command(item.url)} > "$tmp"\n' + _hash_or_refuse(
        item, f"the mirror copy does not match {MANIFEST}"
    )
    check(shell, _place_script(mount, item.name, fill), f"fetching {item.name} from the mirror",
          timeout=_transfer_timeout(item.size))  # fmt: skip


def send_file(shell: Shell, mount: str, item: SourceFile) -> None:
    """One file into its place under ``mount``: temp file, root-owned, synced, renamed.

    The file streams from here to the PC (the shell reads it as its stdin; this process
    never holds it), and the PC hashes what arrived before it renames it into place: a
    file changed here since :func:`check_source` hashed it is refused there (exit 5).
    """
    if item.path is None:
        fetch_file(shell, mount, item)
        return
    fill = 'cat > "$tmp"\n' + _hash_or_refuse(
        item, f"changed since it was checked ({MANIFEST} says otherwise): not put in place"
    )
    try:
        data = item.path.open("rb")
    except OSError as exc:
        raise VolumeError(f"{item.path}: cannot read: {exc.strerror}") from None
    with data:
        check(shell, _place_script(mount, item.name, fill), f"writing {item.name}", data,
              _transfer_timeout(item.size))  # fmt: skip


def load_files(
    shell: Shell,
    mount: str,
    files: list[SourceFile],
    *,
    mapper: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> LoadResult:
    """Put ``files`` (from :func:`check_source`) on the volume mounted at ``mount``.

    Refuses when nothing (or not ``mapper``) is mounted there. Files already there with
    the right hash are skipped; every file is hashed on the PC at the end (VolumeError
    naming the first that differs).
    """
    if mapper is not None:
        require_mounted(shell, mount, mapper)
    check(
        shell,
        f"find {q(mount)} -xdev -type f -name '{TEMP_PREFIX}*' -delete",
        "removing the temp files of an interrupted load",
    )
    names = [f.name for f in files]
    there = remote_hashes(shell, mount, names)
    todo = [f for f in files if there.get(f.name) != f.sha256]
    sent = 0
    for number, item in enumerate(todo, 1):
        send_file(shell, mount, item)
        if item.path is None or item.size is None:
            progress(f"{shell.where}: fetched {item.name} from the mirror [{number}/{len(todo)}]")
            continue
        sent += item.size
        progress(f"{shell.where}: sent {item.name} ({item.size} bytes) [{number}/{len(todo)}]")
    after = remote_hashes(shell, mount, names)
    bad = [f.name for f in files if after.get(f.name) != f.sha256]
    if bad:
        raise VolumeError(
            f"{shell.where}: {len(bad)} files do not hash as the manifest says after loading "
            f"({', '.join(bad[:MAX_PROBLEMS_SHOWN])}); load again"
        )
    progress(
        f"{shell.where}: {len(files)} files verified on the PC "
        f"({len(todo)} sent, {len(files) - len(todo)} already there)"
    )
    return LoadResult(len(todo), len(files) - len(todo), sent)
