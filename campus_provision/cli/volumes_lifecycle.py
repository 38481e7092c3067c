"""``campus-provision volumes create | load | swap | retire``: the data side of the dataset volumes.

Thin: the inventory gives the PCs and datasets (:mod:`campus_provision.volumes.fleet`), the
PC-side work is journaled in :mod:`campus_provision.volumes.lifecycle` (over one SSH
command per step, :mod:`~campus_provision.volumes.remote`), ``create`` runs the
campus_data_volume role (``playbooks/volumes.yml``), and each command ends with a table
per host and a signed record (:mod:`~campus_provision.volumes.records`). The option
handling and the summary are the ones ``rotate-key`` uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from campus_provision.cli.common import (
    AdminOpt,
    SpecArg,
    admin_account,
    console,
    load,
    user_errors,
)
from campus_provision.cli.keys import (
    KeysDirOpt,
    PassphraseFileOpt,
    print_resealed,
    read_passphrase,
)
from campus_provision.cli.provision import RunDirOpt, print_summary, write_summary
from campus_provision.cli.volumes_common import (
    DatasetArg,
    LabOpt,
    LimitOpt,
    OptionalDatasetArg,
    OutOpt,
    PrefixOpt,
    VolumesRun,
    prepare,
    print_records,
    write_record,
)
from campus_provision.errors import CampusProvisionError
from campus_provision.keys.passphrase import KeystoreAccess
from campus_provision.keys.signing import (
    default_keys_dir,
    fingerprint,
    keys_dir_public_key,
    load_signing_key,
)
from campus_provision.lab.state import DEFAULT_PREFIX
from campus_provision.paths import playbooks_dir
from campus_provision.provision.bootstrap import choose_users, overlay_inventory
from campus_provision.provision.runner import RunResult, run_playbook
from campus_provision.verify.evidence import utc_stamp
from campus_provision.volumes import VolumeError
from campus_provision.volumes.fleet import Dataset, Target, inventory_path
from campus_provision.volumes.journal import journals
from campus_provision.volumes.lifecycle import (
    KIND_CREATE,
    KIND_LOAD,
    KIND_RETIRE,
    KINDS,
    Layout,
    begin_create,
    end_create,
    load_volume,
    plan_retire,
    resume_one,
    retire,
    unfinished,
)
from campus_provision.volumes.load import check_source, remote_hashes
from campus_provision.volumes.mirror import (
    DATASETS_DIR,
    MirrorSource,
    mirror_source,
    sign_manifest,
)
from campus_provision.volumes.records import OperationRecord, Result, make_record, now_iso
from campus_provision.volumes.remote import Shell, SshShell
from campus_provision.volumes.swap import KIND_SWAP, check_version, plan_swap, swap

FromOpt = Annotated[
    Path,
    typer.Option(
        "--from",
        help="A directory on this machine holding the dataset's files and SHA256SUMS "
        "(sha256sum's format); every file must match it.",
        show_default=False,
    ),
]
OptionalFromOpt = Annotated[
    Path | None,
    typer.Option(
        "--from",
        help="A directory on this machine holding the dataset's files and SHA256SUMS "
        "(sha256sum's format); every file must match it.",
        show_default=False,
    ),
]
FromMirrorOpt = Annotated[
    bool,
    typer.Option(
        "--from-mirror",
        help="Each PC fetches the files from its campus mirror (datasets/ID/VERSION/, the "
        "version the inventory gives); the manifest there must be signed by the campus key "
        "for this dataset and version ('volumes sign-manifest').",
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")
]
YesOpt = Annotated[
    bool,
    typer.Option("--yes", help="Really destroy the volumes (crypto-erase); required, but not "
                 "with --dry-run."),
]  # fmt: skip


def shell_for(run: VolumesRun, host: str) -> Shell:
    """The root shell of one PC (tests swap this for a local one)."""
    target = next(t for t in run.targets if t.host == host)
    return SshShell(target.connection)


def layout_for(run: VolumesRun, host: str) -> Layout:
    """Where the PC keeps its volumes' pieces (the role's defaults; tests point elsewhere)."""
    del run, host
    return Layout()


def _command(name: str, spec: Path, *words: str | None, limit: str | None) -> str:
    parts = [f"volumes {name}", str(spec), *(w for w in words if w)]
    return " ".join(parts + ([f"--limit {limit}"] if limit else []))


def _exit_if_failed(records: list[OperationRecord]) -> None:
    if any(r.result in ("failed", "stopped") for r in records):
        raise typer.Exit(1)


def _finish(
    run: VolumesRun, title: str, command: str, started: str, records: list[OperationRecord],
    out: Path | None,
) -> None:  # fmt: skip
    written = write_record(run, command, started, records, out, run.signing_key())
    print_records(title, records)
    print_resealed(run.store.resealed)
    console.print(f"signed record: {escape(str(written))} (check it with 'report verify')")
    if any(r.result not in ("ok", "nothing-to-do") for r in records):
        raise typer.Exit(1)


# -- create ----------------------------------------------------------------------------------


def _playbook(
    run: VolumesRun, hosts: list[str], admin: str | None, run_dir: Path,
    passphrase_file: Path | None, lab: bool, prefix: str,
) -> RunResult:  # fmt: skip
    inventory = inventory_path(run.spec, lab=lab, prefix=prefix)
    who = admin_account(admin, run.campus)
    limit = ",".join(hosts)
    with console.status(f"finding how to log in: {who}, else root (first run)"):
        users = choose_users(inventory, limit, who)
    login = overlay_inventory(inventory, run_dir / "inventory", users)
    # The role's key lookup opens this keystore; the passphrase reaches it as a file's path.
    access = KeystoreAccess(run.keys_dir, passphrase_file, run.passphrase)
    with console.status("running playbooks/volumes.yml"):
        result = run_playbook(
            playbooks_dir() / "volumes.yml", login, run_dir, limit=limit, keystore=access
        )
    write_summary(result)
    print_summary(result)
    return result


def _create(
    spec: SpecArg,
    dataset: OptionalDatasetArg = None,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Make the dataset volumes of the selected PCs: keys first, then the role.

    A keystore key for every host × dataset that has none, then playbooks/volumes.yml on
    those PCs (campus_data_volume: GPT partition, LUKS2, key file, ext4, mount, ACL,
    crypttab and fstab). A volume that exists is left as it is. Each volume's create is
    journaled; running create again carries an interrupted one on. Exit 0 when every PC
    succeeded; 1 otherwise.

    Example: campus-provision volumes create inventories/seoul/campus.yml --limit sgm-a01
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        selected = list(run.volumes())
        blocked = {
            vid: j
            for _, _, vid in selected
            for j in unfinished(run.journal_dir, vid)
            if j.kind != KIND_CREATE
        }
        if blocked:
            vid, j = next(iter(blocked.items()))
            raise VolumeError(f"{vid}: {j.kind} {j.op} is unfinished: 'volumes resume' first")
        if dry_run:
            for target, ds, vid in selected:
                has = run.store.current(vid)
                what = f"has key {has.key_id}" if has else "would get a new key"
                console.print(f"{escape(vid)}: {what}; the role would make or check its volume")
                records.append(make_record(target.host, ds.id, KIND_CREATE, "dry-run",
                                           new_key=has.key_id if has else None))  # fmt: skip
            print_records("create --dry-run (nothing changed)", records)
            _exit_if_failed(records)
            return
        run.signing_key()  # unlocks: a wrong passphrase stops before any change
        made: dict[str, str] = {}
        journal_of = {}
        for _, _, vid in selected:
            current = run.store.current(vid)
            if current is None:
                current = run.store.create(vid)
                made[vid] = current.key_id
                console.print(f"{escape(vid)}: new key {current.key_id}")
            journal_of[vid] = begin_create(
                run.journal_dir, vid, current.key_id, json.dumps({"new_key": vid in made})
            )
        hosts = sorted({t.host for t, _, _ in selected})
        directory = (run_dir or Path("runs") / f"{utc_stamp()}-volumes-create").absolute()
        start = time.monotonic()
        result = _playbook(run, hosts, admin, directory, passphrase_file, lab, prefix)
        outcome = {h.host: h for h in result.hosts}
        for target, ds, vid in selected:
            summary = outcome.get(target.host)
            ok = (
                result.rc in (0, 2, 4)
                and summary is not None
                and not (summary.failed or summary.unreachable)
            )
            journal = journal_of[vid]
            end_create(journal, ok, note=f"run {directory.name}")
            reason = "" if ok else (summary.reason if summary else "not in the run") or "failed"
            records.append(make_record(
                target.host, ds.id, KIND_CREATE, "ok" if ok else "failed",
                new_key=journal.old_key, journal_op=journal.op, seconds=time.monotonic() - start,
                detail=("new key; " if vid in made else "key there; ")
                + (reason or "volume made or in place"),
            ))  # fmt: skip
        _finish(run, "create", _command("create", spec, dataset, limit=limit), started,
                records, out)  # fmt: skip


# -- load ------------------------------------------------------------------------------------


def _load(
    spec: SpecArg,
    dataset: DatasetArg,
    source: OptionalFromOpt = None,
    from_mirror: FromMirrorOpt = False,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
) -> None:
    """Put DATASET's files onto its mounted volume on each selected PC, checked by SHA-256.

    With --from, every file there is hashed here first and must match SHA256SUMS exactly
    (a changed, missing or unlisted file, or a name leaving the volume, refuses the load:
    nothing is sent anywhere); files stream over SSH into a temp name, hashed on the PC.
    With --from-mirror, the PC fetches the signed manifest (dataset-manifest.json, its .sig)
    and SHA256SUMS from its campus mirror; before any file moves, the signature must verify
    with the campus signing key, the manifest must name this dataset and version, and
    SHA256SUMS must list the same files; then the PC fetches each file into a temp name
    and hashes it. Either way files are renamed into place, root-owned and readable
    through the volume's ACL, then hashed again on the PC; files there already are skipped.
    Exit 0 when every PC holds the dataset; 1 otherwise.

    Example: campus-provision volumes load SPEC card-spending-2025 --from /srv/staging/card

    Example: campus-provision volumes load SPEC card-spending-2025 --from-mirror
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        if (source is None) == (not from_mirror):
            raise VolumeError("give --from DIRECTORY or --from-mirror (one of the two)")
        if source is not None:
            files = check_source(source)  # before the passphrase, before any PC
            total = sum(f.size or 0 for f in files)
            console.print(
                f"{escape(str(source))}: {len(files)} files, {total} bytes, match SHA256SUMS"
            )
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        if not dry_run:
            run.signing_key()
        for target, ds, vid in run.volumes():
            start = time.monotonic()
            current = run.store.current(vid)
            key = current.key_id if current else None
            shell = shell_for(run, target.host)
            try:
                origin = source if source is not None else _mirror(shell, target, ds, run.keys_dir)
                if dry_run:
                    listed = check_source(origin) if isinstance(origin, Path) else origin.files
                    mount = layout_for(run, target.host).mount_point(ds.id)
                    there = remote_hashes(shell, mount, [f.name for f in listed])
                    todo = [f for f in listed if there.get(f.name) != f.sha256]
                    console.print(
                        f"{escape(vid)}: would {'send' if source else 'fetch'} {len(todo)} of "
                        f"{len(listed)} files"
                    )
                    records.append(make_record(target.host, ds.id, KIND_LOAD, "dry-run",
                                               old_key=key, new_key=key))  # fmt: skip
                    continue
                result = load_volume(run.store, vid, shell, run.journal_dir, origin,
                                     layout=layout_for(run, target.host),
                                     progress=lambda line: console.print(escape(line)))  # fmt: skip
            except CampusProvisionError as exc:
                console.print(f"{escape(vid)}: [red]FAILED[/red]: {escape(str(exc))}")
                records.append(make_record(target.host, ds.id, KIND_LOAD, "failed", old_key=key,
                                           new_key=key, detail=str(exc),
                                           seconds=time.monotonic() - start))  # fmt: skip
                continue
            d = result.detail
            how = "sent" if source is not None else "fetched from the mirror"
            records.append(make_record(
                target.host, ds.id, KIND_LOAD, "ok", old_key=key, new_key=key,
                journal_op=result.op, seconds=time.monotonic() - start,
                detail=f"{d['files']} files verified: {d['sent']} {how}, {d['skipped']} there",
            ))  # fmt: skip
        if dry_run:
            print_records("load --dry-run (nothing changed)", records)
            _exit_if_failed(records)
            return
        origin_words = f"--from {source}" if source is not None else "--from-mirror"
        _finish(run, "load", _command("load", spec, dataset, origin_words, limit=limit),
                started, records, out)  # fmt: skip


def _mirror(shell: Shell, target: Target, ds: Dataset, keys_dir: Path) -> MirrorSource:
    """DATASET's version on the PC's campus mirror, its manifest's signature checked."""
    if target.mirror_url is None:
        raise VolumeError(
            f"{target.host}: no campus_mirror_url in the inventory (the spec names no mirror "
            "for its site): load --from a directory instead"
        )
    pub = keys_dir_public_key(keys_dir)
    source = mirror_source(shell, target.mirror_url, ds.id, ds.version, pub)
    console.print(
        f"{escape(target.host)}: {escape(source.base_url)}: {len(source.files)} files, "
        f"signed by the campus key for {escape(ds.id)} version {escape(ds.version)}"
    )
    return source


SignVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="The version DIRECTORY holds \\[default: DATASET's version in SPEC]; another one "
        "(the next, published before the spec names it) is signed as given.",
        show_default=False,
    ),
]


def _sign_manifest(
    spec: SpecArg,
    dataset: DatasetArg,
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIRECTORY",
            help="The dataset version to publish: its files and SHA256SUMS.",
            show_default=False,
        ),
    ],
    version: SignVersionOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Sign DIRECTORY as DATASET at its version, with the campus key, for the mirror.

    DATASET must be in SPEC's catalogue; the version is the catalogue's unless --version
    names another. Every file is checked against SHA256SUMS first (nothing is signed
    otherwise). Then dataset-manifest.json (the dataset, the version, each file's name,
    SHA-256 and size) and dataset-manifest.json.sig (its signature) are written beside
    SHA256SUMS. Copy the directory to the mirror as datasets/DATASET/VERSION/ under its root
    (campus_mirror serves it); 'volumes load --from-mirror' refuses it anywhere else, and
    refuses it if the signature, the dataset, the version or SHA256SUMS do not agree.

    Example: campus-provision volumes sign-manifest SPEC card-spending-2025 /srv/staging/card
    """
    with user_errors():
        catalogue = load(spec).dataset_by_id
        if dataset not in catalogue:
            raise VolumeError(
                f"{dataset}: not in {spec}'s datasets (it has: {', '.join(sorted(catalogue))})"
            )
        listed = catalogue[dataset].version
        version = check_version(dataset, version or listed)
        files = check_source(directory)
        folder = keys_dir or default_keys_dir()
        key = load_signing_key(folder, read_passphrase(passphrase_file, confirm=False))
        written = sign_manifest(directory, key, dataset=dataset, version=version)
    console.print(
        f"{escape(str(written))}: {escape(dataset)} version {escape(version)}, {len(files)} "
        f"files, signed by {fingerprint(key.public_key())}"
    )
    console.print(
        f"publish the directory on the mirror as {DATASETS_DIR}/{escape(dataset)}/"
        f"{escape(version)}/"
    )
    if version != listed:
        console.print(
            f"the spec names version {escape(listed)}: 'volumes load --from-mirror' fetches "
            f"{escape(listed)} until the spec says {escape(version)}"
        )


# -- retire ----------------------------------------------------------------------------------


def _retire(
    spec: SpecArg,
    dataset: DatasetArg,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
) -> None:
    """Destroy DATASET's volume on each selected PC for good (crypto-erase), then forget it.

    Per volume, each step journaled first: crypttab and fstab lines removed, unmount,
    close, 'cryptsetup erase' (every keyslot destroyed), the LUKS2 header area zeroed and
    wipefs, proof that it is no LUKS volume and the key opens nothing, the key file and the
    partition removed, and only then the keystore's keys. 'volumes resume' finishes an
    interrupted retire. Needs --yes (the data cannot be recovered); --dry-run shows the
    plan. Remove the dataset from those PCs' group in the spec afterwards, or the next
    provision makes a new, empty volume. Exit 0 when every volume was retired; 1 otherwise.

    Example: campus-provision volumes retire SPEC card-spending-2025 --limit sgm-a01 --yes
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        if not yes and not dry_run:
            raise VolumeError(
                f"retire destroys {dataset}'s data on every selected PC and cannot be undone: "
                "give --yes (or --dry-run to see the plan)"
            )
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        if not dry_run:
            run.signing_key()
        for target, ds, vid in run.volumes():
            start = time.monotonic()
            current = run.store.current(vid)
            key = current.key_id if current else None
            shell = shell_for(run, target.host)
            before = {j.op for j in journals(run.journal_dir, vid)}
            try:
                if dry_run:
                    plan = plan_retire(run.store, vid, shell, layout_for(run, target.host))
                    console.print(
                        f"{escape(vid)}: would erase {plan.node} ({plan.label}, LUKS UUID "
                        f"{plan.uuid}), zero its first {plan.header_bytes} bytes, remove its "
                        f"boot entries, key file{' and partition' if plan.partno else ''}, "
                        f"then keys {', '.join(plan.key_ids)} from the keystore"
                    )
                    records.append(make_record(target.host, ds.id, KIND_RETIRE, "dry-run",
                                               old_key=key))  # fmt: skip
                    continue
                console.print(f"{escape(vid)}: retiring …")
                result = retire(run.store, vid, shell, run.journal_dir,
                                layout=layout_for(run, target.host),
                                progress=lambda line: console.print(escape(line)))  # fmt: skip
            except CampusProvisionError as exc:
                made = [j.op for j in journals(run.journal_dir, vid) if j.op not in before]
                outcome: Result = "stopped" if made else "failed"
                console.print(f"{escape(vid)}: [red]{outcome.upper()}[/red]: {escape(str(exc))}")
                records.append(make_record(target.host, ds.id, KIND_RETIRE, outcome, old_key=key,
                                           detail=str(exc), journal_op=made[-1] if made else None,
                                           seconds=time.monotonic() - start))  # fmt: skip
                continue
            console.print(f"{escape(vid)}: [green]retired[/green] ({result.detail['label']})")
            records.append(make_record(
                target.host, ds.id, KIND_RETIRE, "ok", old_key=result.old_key,
                journal_op=result.op, seconds=time.monotonic() - start,
                detail=f"{result.detail['label']} on {result.detail['device']} crypto-erased; "
                f"keys {', '.join(result.detail['keys_removed'])} removed",
            ))  # fmt: skip
        if dry_run:
            print_records("retire --dry-run (nothing changed)", records)
            _exit_if_failed(records)
            return
        _finish(run, "retire", _command("retire", spec, dataset, "--yes", limit=limit), started,
                records, out)  # fmt: skip


# -- swap ------------------------------------------------------------------------------------

VersionOpt = Annotated[
    str,
    typer.Option("--version", help="The dataset version the new volume holds (its LUKS label "
                 "becomes <id>@<version>).", show_default=False),
]  # fmt: skip


def _swap(
    spec: SpecArg,
    dataset: DatasetArg,
    version: VersionOpt,
    source: FromOpt,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    admin: AdminOpt = None,
    keys_dir: KeysDirOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    out: OutOpt = None,
) -> None:
    """Move DATASET on each selected PC to --version: a new volume, loaded, switched to.

    Per volume, each step journaled first: a new partition of the same size beside the
    old one, LUKS2 with the volume's current keystore key (labelled <id>@<version>), ext4
    with the old root's owner and ACL, the files of --from loaded and verified (as 'load'),
    then the mount, the mapper and crypttab switched to it, and the old volume crypto-erased
    (erase, header zeroed, partition deleted); the new partition takes the dataset's name.
    Change the dataset's version in the spec afterwards: the role then finds nothing to do.
    'volumes resume' finishes an interrupted swap. Exit 0 when every volume was swapped.

    Example: campus-provision volumes swap SPEC card-spending-2025 --version 2026.1 --from DIR
    """
    started = now_iso()
    records: list[OperationRecord] = []
    with user_errors():
        check_version(dataset, version)
        files = check_source(source)
        console.print(f"{escape(str(source))}: {len(files)} files match SHA256SUMS")
        run = prepare(spec, lab=lab, prefix=prefix, limit=limit, dataset=dataset, admin=admin,
                       keys_dir=keys_dir, passphrase_file=passphrase_file)  # fmt: skip
        if not dry_run:
            run.signing_key()
        for target, ds, vid in run.volumes():
            start = time.monotonic()
            current = run.store.current(vid)
            key = current.key_id if current else None
            shell = shell_for(run, target.host)
            before = {j.op for j in journals(run.journal_dir, vid)}
            try:
                if dry_run:
                    plan = plan_swap(run.store, vid, shell, version, source, target.pbkdf,
                                     layout_for(run, target.host))  # fmt: skip
                    console.print(
                        f"{escape(vid)}: would make {plan.label} on a new partition of "
                        f"{plan.disk} ({plan.sectors} sectors), load {len(files)} files, switch "
                        f"to it and crypto-erase {plan.old_label} ({plan.old_node})"
                    )
                    records.append(make_record(target.host, ds.id, KIND_SWAP, "dry-run",
                                               old_key=key, new_key=key))  # fmt: skip
                    continue
                result = swap(run.store, vid, shell, run.journal_dir, version, source,
                              pbkdf=target.pbkdf, layout=layout_for(run, target.host),
                              progress=lambda line: console.print(escape(line)))  # fmt: skip
            except CampusProvisionError as exc:
                made = [j.op for j in journals(run.journal_dir, vid) if j.op not in before]
                outcome: Result = "stopped" if made else "failed"
                console.print(f"{escape(vid)}: [red]{outcome.upper()}[/red]: {escape(str(exc))}")
                records.append(make_record(target.host, ds.id, KIND_SWAP, outcome, old_key=key,
                                           new_key=key, detail=str(exc),
                                           journal_op=made[-1] if made else None,
                                           seconds=time.monotonic() - start))  # fmt: skip
                continue
            d = result.detail
            console.print(f"{escape(vid)}: [green]swapped[/green] {d['old_label']} → {d['label']}")
            records.append(make_record(
                target.host, ds.id, KIND_SWAP, "ok", old_key=result.old_key,
                new_key=result.new_key, journal_op=result.op, seconds=time.monotonic() - start,
                detail=f"{d['old_label']} → {d['label']}; {d['old_device']} crypto-erased",
            ))  # fmt: skip
        if dry_run:
            print_records("swap --dry-run (nothing changed)", records)
            _exit_if_failed(records)
            return
        command = _command("swap", spec, dataset, f"--version {version}", f"--from {source}",
                           limit=limit)  # fmt: skip
        _finish(run, "swap", command, started, records, out)


# -- resume (called by 'volumes resume' in volumes_rotate) ------------------------------------


def resume_data_ops(run: VolumesRun, host: str, dataset: str, vid: str) -> list[OperationRecord]:
    """Finish the unfinished create, load, swap and retire journals of ``vid``, oldest first.

    For 'volumes resume': one record per journal, ``ok`` when it ended (completed, or
    closed as rolled back when it had not got past its plan), ``stopped`` when it could
    not go on (the message says why; nothing is lost, resume again).
    """
    records: list[OperationRecord] = []
    for journal in unfinished(run.journal_dir, vid):
        if journal.kind not in KINDS:
            continue
        start = time.monotonic()
        console.print(f"{escape(vid)}: resuming {journal.kind} {journal.op} …")
        try:
            result = resume_one(run.store, journal, shell_for(run, host),
                                layout=layout_for(run, host),
                                progress=lambda line: console.print(escape(line)))  # fmt: skip
        except CampusProvisionError as exc:
            console.print(f"{escape(vid)}: [red]STOPPED[/red]: {escape(str(exc))}")
            records.append(make_record(host, dataset, journal.kind, "stopped",
                                       old_key=journal.old_key, new_key=journal.new_key,
                                       detail=str(exc), journal_op=journal.op,
                                       seconds=time.monotonic() - start))  # fmt: skip
            continue
        outcome: Result = "rolled-back" if result.outcome.startswith("rolled back") else "ok"
        console.print(f"{escape(vid)}: {journal.kind} {journal.op}: {escape(result.outcome)}")
        records.append(make_record(host, dataset, journal.kind, outcome, old_key=result.old_key,
                                   new_key=result.new_key, detail=result.outcome,
                                   journal_op=result.op,
                                   seconds=time.monotonic() - start))  # fmt: skip
    return records


def register(app: typer.Typer) -> None:
    """Add this module's commands (create, load, swap, retire) to the ``volumes`` group."""
    app.command("create")(_create)
    app.command("load")(_load)
    app.command("sign-manifest")(_sign_manifest)
    app.command("swap")(_swap)
    app.command("retire")(_retire)
