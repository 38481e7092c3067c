"""``campus-provision provision``: run the playbooks on the PCs, then a summary per host."""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from campus_provision.cli import verify as verify_cli
from campus_provision.cli.common import AdminOpt, SpecArg, admin_account, console, load, user_errors
from campus_provision.cli.keys import read_passphrase
from campus_provision.errors import ProvisionError
from campus_provision.hostkeys import hint
from campus_provision.keys.atomic import write_atomic
from campus_provision.keys.passphrase import KeystoreAccess
from campus_provision.keys.signing import PUB_FILE, default_keys_dir, load_signing_key
from campus_provision.lab.control import lab_for_spec
from campus_provision.lab.state import DEFAULT_PREFIX, LabPaths, read_record, state_dir_from_env
from campus_provision.paths import playbooks_dir
from campus_provision.provision.bootstrap import choose_users, overlay_inventory
from campus_provision.provision.events import RESULT_KINDS, Event
from campus_provision.provision.lock import inventory_lock
from campus_provision.provision.progress import (
    ProgressLines,
    duration,
    empty_plays_line,
    failure_line,
    resume_line,
)
from campus_provision.provision.runner import RunResult, last_error, run_playbook
from campus_provision.render import diff_tree, render_files, write_tree
from campus_provision.verify.evidence import utc_stamp

SUMMARY_FILE = "summary.json"
LimitOpt = Annotated[str | None, typer.Option("--limit", help="Hosts or groups, comma-separated.")]
TagsOpt = Annotated[
    str | None, typer.Option("--tags", help="Only tasks with these tags, comma-separated.")
]
SkipTagsOpt = Annotated[
    str | None, typer.Option("--skip-tags", help="Leave out tasks with these tags.")
]
CheckOpt = Annotated[
    bool, typer.Option("--check", help="Report what would change; change nothing.")
]
DiffOpt = Annotated[
    bool, typer.Option("--diff", help="Write the changes made to files into the run's ansible.log.")
]
LabOpt = Annotated[
    bool, typer.Option("--lab", help="Provision the running lab's hosts (its inventory).")
]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="The lab's prefix, with --lab.")]
RunDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        help="Where the run's ansible.cfg, log, events and timings go \\[default: "
        "runs/<UTC timestamp>; with --lab, in the lab's directory].",
        show_default=False,
    ),
]
PlaybookOpt = Annotated[
    Path | None,
    typer.Option(
        "--playbook",
        help="The playbook to run \\[default: playbooks/site.yml].",
        show_default=False,
    ),
]
BundleOpt = Annotated[
    Path | None,
    typer.Option(
        "--bundle",
        help="The offline bundle (bundle build) the mirrors publish and whose archive key the "
        "PCs trust [default with --lab: the lab's].",
        show_default=False,
    ),
]
PubkeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--pubkey",
        help="The campus signing public key the bundle must verify with "
        "\\[default: the keys directory's signing.pub].",
        show_default=False,
    ),
]
LoginOpt = Annotated[
    str,
    typer.Option(
        "--login",
        help="How to reach each host: 'auto' tries the admin account (then sudo) and, on a "
        "fresh PC, root; 'inventory' uses what the inventory says.",
    ),
]
VerifyOpt = Annotated[
    bool,
    typer.Option("--verify", help="Then run 'verify' on the same hosts (signed evidence)."),
]


class _Follow:
    """Feeds the live display from the run's events; prints failures as they happen.

    For a terminal; output that is not one gets plain lines (``_Lines``).
    """

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.row = bar.add_task("starting ansible-playbook", total=None)
        self.in_play: int | None = None
        self.out: set[str] = set()  # hosts that failed or were unreachable this play
        self.out_before = 0  # how many of them had dropped out when the current task began
        self.done: set[str] = set()  # hosts that reported on the current task

    def __call__(self, event: Event) -> None:
        if event.kind == "play":
            self.in_play, self.out, self.out_before, self.done = event.hosts, set(), 0, set()
            self.bar.update(self.row, description=escape(f"play {event.play or ''}"))
        elif event.kind == "task":
            self.done, self.out_before = set(), len(self.out)
            self.bar.update(self.row, description=escape(event.task or ""), completed=0)
        elif event.kind in RESULT_KINDS and event.host is not None:
            self.done.add(event.host)
            if event.kind in ("failed", "unreachable"):
                self.out.add(event.host)
                label, rest = failure_line(event).split(" ", 1)
                console.print(f"[red]{label}[/red] {escape(rest)}")
        elif event.kind == "resume":
            console.print(escape(resume_line(event)))
        if self.in_play is not None:
            # The current task runs on the play's hosts that had not dropped out before it.
            remaining = max(self.in_play - self.out_before, len(self.done))
            self.bar.update(self.row, completed=len(self.done), total=remaining)


class _Lines:
    """Prints the run's progress as plain lines, for output that is not a terminal."""

    def __init__(self) -> None:
        self.lines = ProgressLines()

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            # One event, one line: a log is read line by line, so no wrapping.
            console.print(escape(line), soft_wrap=True, highlight=False)

    def __call__(self, event: Event) -> None:
        self._print(self.lines.feed(event))

    def close(self) -> None:
        self._print(self.lines.close())


def _run_live(
    playbook: Path,
    inventory: Path,
    run_dir: Path,
    *,
    limit: str | None,
    tags: str | None,
    skip_tags: str | None,
    check: bool,
    diff: bool,
    extra_vars: dict[str, str],
    keystore: KeystoreAccess | None = None,
) -> RunResult:
    run = functools.partial(
        run_playbook,
        playbook,
        inventory,
        run_dir,
        limit=limit,
        tags=tags,
        skip_tags=skip_tags,
        check=check,
        diff=diff,
        extra_vars=extra_vars,
        keystore=keystore,
    )
    if not console.is_terminal:  # a pipe, tee, CI: lines a log can keep
        lines = _Lines()
        try:
            return run(on_event=lines)
        finally:
            lines.close()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("hosts done"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        return run(on_event=_Follow(bar))


def write_summary(result: RunResult, *, check: bool = False) -> Path:
    """The per-host table as ``summary.json`` in the run dir, for scripts and audits."""
    data = {
        "ok": result.ok(),
        "rc": result.rc,
        "check": check,
        "seconds": round(result.seconds, 1),
        "changed": result.total_changed(),
        "plays_without_hosts": list(result.empty_plays),
        "hosts": [asdict(h) for h in result.hosts],
    }
    path = result.run_dir / SUMMARY_FILE
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode(), 0o644)
    return path


def print_summary(
    result: RunResult,
    *,
    check: bool = False,
    limit: str | None = None,
    inventory: Path | None = None,
) -> None:
    """Plays that had no host (once), the per-host table, then one line for the run.

    The line for the run says why it failed, if so. ``limit`` is the run's --limit. With
    ``inventory`` (the rendered hosts.yml), a host ssh refused over its host key gets a
    line saying what to do.
    """
    if result.empty_plays:
        console.print(escape(empty_plays_line(result.empty_plays, limit)), soft_wrap=True)
    table = Table(title="provision" + (" (check mode)" if check else ""), title_justify="left")
    for col in ("host", "ok", "changed", "failed", "unreachable", "time", "reason"):
        table.add_column(col, justify="left" if col in ("host", "reason") else "right")
    for h in result.hosts:
        reason = f"{h.failed_task}: {h.reason}" if h.failed_task else (h.reason or "")
        table.add_row(
            escape(h.host),
            str(h.ok),
            str(h.changed),
            f"[red]{h.failed}[/red]" if h.failed else "0",
            f"[red]{h.unreachable}[/red]" if h.unreachable else "0",
            duration(h.seconds),
            escape(reason),
        )
    if result.hosts:
        console.print(table)
    failed = sum(1 for h in result.hosts if h.failed)
    unreachable = sum(1 for h in result.hosts if h.unreachable)
    not_run = sum(1 for h in result.hosts if h.not_run and not (h.failed or h.unreachable))
    verdict = "[green]OK[/green]" if result.ok() else "[red]FAILED[/red]"
    console.print(
        f"{verdict}: {len(result.hosts)} hosts, changed {result.total_changed()}, "
        f"failed {failed}, unreachable {unreachable}"
        + (f", not run {not_run}" if not_run else "")
        + f" in {duration(result.seconds)}; run dir {escape(str(result.run_dir))}"
    )
    for h in result.hosts:
        said = hint(h.reason or "", inventory) if inventory is not None else None
        if h.unreachable and said:
            console.print(f"[red]{escape(h.host)}[/red]: {escape(said)}")
    if result.rc != 0 and not (failed or unreachable):
        error = last_error(result.log)
        detail = f": {escape(error.rstrip('.'))}" if error else ""
        console.print(
            f"[red]ansible-playbook exited {result.rc}[/red]{detail}; see {escape(str(result.log))}"
        )


def _login_inventory(inventory: Path, run_dir: Path, limit: str | None, admin: str) -> Path:
    """Probe each host (admin first, then root) and return the inventory that says which."""
    with console.status(f"finding how to log in: {admin}, else root (first run)"):
        users = choose_users(inventory, limit or "all", admin)
    as_admin = sum(1 for u in users.values() if u != "root")
    as_root = len(users) - as_admin
    console.print(
        f"login: {as_admin} hosts as {escape(admin)} (with sudo), {as_root} as root (not "
        "provisioned yet); a host that takes neither is reported unreachable"
    )
    return overlay_inventory(inventory, run_dir / "inventory", users)


def _inventory_of(spec: Path, lab: bool, prefix: str) -> Path:
    """The inventory a run on ``spec`` uses (the lab's, with --lab)."""
    if lab:
        return LabPaths(state_dir_from_env(), prefix).inventory / "hosts.yml"
    return spec.parent / "hosts.yml"


def _bundle_vars(
    bundle: Path | None, pubkey: Path | None, keys_dir: Path | None, playbook: Path | None
) -> dict[str, str]:
    """The variables that name the bundle for the mirror and apt client roles."""
    if bundle is None:
        if playbook is None:
            raise ProvisionError(
                "provision needs --bundle DIR: the offline bundle ('campus-provision bundle "
                "build') that the mirrors publish and whose archive key the PCs trust"
            )
        return {}
    if not (bundle / "bundle.json").is_file():
        raise ProvisionError(f"{bundle}: not a bundle (no bundle.json); see 'bundle build'")
    key = pubkey or (keys_dir or default_keys_dir()) / PUB_FILE
    if not key.is_file():
        raise ProvisionError(f"{key}: no campus signing public key; give --pubkey")
    return {"campus_bundle_dir": str(bundle.resolve()), "campus_signing_pubkey": str(key.resolve())}


def _unlock(keys_dir: Path | None, passphrase_file: Path | None) -> Ed25519PrivateKey:
    return load_signing_key(
        keys_dir or default_keys_dir(), read_passphrase(passphrase_file, confirm=False)
    )


def provision(
    spec: SpecArg,
    limit: LimitOpt = None,
    tags: TagsOpt = None,
    skip_tags: SkipTagsOpt = None,
    check: CheckOpt = False,
    diff: DiffOpt = False,
    lab: LabOpt = False,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    run_dir: RunDirOpt = None,
    playbook: PlaybookOpt = None,
    bundle: BundleOpt = None,
    pubkey: PubkeyOpt = None,
    login: LoginOpt = "auto",
    admin: AdminOpt = None,
    verify: VerifyOpt = False,
    keys_dir: verify_cli.KeysOpt = None,
    passphrase_file: verify_cli.PassFileOpt = None,
) -> None:
    """Lock the PCs down: run the playbooks on them, then a summary per host.

    Renders the inventory first if it is out of date with the spec, runs
    ansible-playbook with a generated ansible.cfg (pipelining, persistent SSH
    connections, forks sized to the host count), shows progress and each failure as it
    happens (on a terminal live; piped or in CI as plain lines: each play, each failure,
    each host's counts per play), and keeps ansible.cfg, ansible.log, events.jsonl and
    timings.json in the run directory. A host that fails does not stop the others, even
    when a whole play fails: the plays Ansible then never started run on their hosts
    after it. Exit 0 when every host succeeded; 1 when any failed, was unreachable or
    was not run.

    Example: campus-provision provision inventories/seoul/campus.yml --limit wsg_sgm_secure --check
    """
    stamp = utc_stamp()
    with user_errors(), contextlib.ExitStack() as held:
        campus = load(spec)
        if lab:  # the lab must be up (its inventory directory there) before it is locked
            lab_for_spec(LabPaths(state_dir_from_env(), prefix), spec)
        # One run per inventory: a second one is refused before it renders or probes.
        held.enter_context(inventory_lock(_inventory_of(spec, lab, prefix)))
        if lab:
            paths = LabPaths(state_dir_from_env(), prefix)
            inventory = paths.inventory / "hosts.yml"
            runs = paths.root / "runs"
            record = read_record(paths) or {}
            if bundle is None and record.get("bundle"):
                bundle = Path(record["bundle"])
                pubkey = pubkey or Path(record["pubkey"])
        else:
            files = render_files(campus, spec.name)
            rendered, _ = diff_tree(spec.parent, files)
            if rendered.differs:
                write_tree(spec.parent, files)
                console.print(f"rendered the inventory in {escape(str(spec.parent))}")
            inventory = spec.parent / "hosts.yml"
            runs = Path.cwd() / "runs"
        # Unlock the signing key now: a wrong passphrase should not wait for a long run.
        signing_key = _unlock(keys_dir, passphrase_file) if verify else None
        extra_vars = _bundle_vars(bundle, pubkey, keys_dir, playbook)
        if login not in ("auto", "inventory"):
            raise typer.BadParameter("auto or inventory", param_hint="--login")
        if playbook is not None and not playbook.is_file():
            raise ProvisionError(f"{playbook}: no such playbook")
        directory = run_dir or runs / stamp
        rendered_hosts = inventory  # whose known_hosts every connection is checked against
        if login == "auto":
            who = admin_account(admin, campus)
            inventory = _login_inventory(inventory, directory, limit, who)
        result = _run_live(
            playbook or playbooks_dir() / "site.yml",
            inventory,
            directory,
            limit=limit,
            tags=tags,
            skip_tags=skip_tags,
            check=check,
            diff=diff,
            extra_vars=extra_vars,
            # campus_data_volume's key lookup: this keys dir and passphrase file, if given.
            keystore=KeystoreAccess(keys_dir, passphrase_file),
        )
    write_summary(result, check=check)
    print_summary(result, check=check, limit=limit, inventory=rendered_hosts)
    code = 0 if result.ok() else 1
    if verify:
        try:
            verify_cli._run(
                spec,
                lab=lab,
                prefix=prefix,
                limit=limit or "workstations",
                controls=None,
                out=None,
                probe=None,
                workers=4,
                keys_dir=keys_dir,
                passphrase_file=passphrase_file,
                audit=False,
                signing_key=signing_key,
                admin=admin,
            )
        except typer.Exit as exc:
            code = max(code, exc.exit_code)
    if code:
        raise typer.Exit(code)
