"""Run ansible-playbook for a provisioning run and turn its event stream into a summary.

ansible-playbook runs in a process (and session) of its own, configured by the
ansible.cfg written into the run directory. Its own output goes to ``ansible.log``
there, never to the terminal; what the user sees comes from the campus_events callback,
which appends JSON lines to ``events.jsonl``. This module reads that file as it grows,
hands each event to the caller, enforces the timeout, and at the end builds one
``HostSummary`` per host from the events and Ansible's recap.

Ansible ends a whole playbook when one play fails on every host: with every log host
down, the PCs' play would never start. The plays of site.yml target different hosts, so
one kind of host failing is no reason to leave the others alone: when the callback
reports plays that never started, the runner starts ansible-playbook again, limited to
the hosts those plays target (``--limit @file``). The earlier plays then match none of
them (or re-run, idempotent, on a host that is in both), the failed play matches none,
and the rest runs as it would have. The events, log and timings of every round go to
the same run directory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campus_provision.errors import ProvisionError
from campus_provision.keys.passphrase import KeystoreAccess, child_environment
from campus_provision.provision.ansiblecfg import (
    forks_for,
    inventory_control_dir,
    inventory_hosts,
    write_ansible_cfg,
)
from campus_provision.provision.events import RESULT_KINDS, Event, EventTail

POLL_SECONDS = 0.1
KILL_GRACE_SECONDS = 5.0
STOP_ROUNDS = 50
MAX_RESUMES = 20  # each resume runs strictly fewer hosts, so this is only a backstop
RUN_MARKER_ENV = "CAMPUS_PROVISION_RUN"
TIMINGS_ENV = "CAMPUS_TIMINGS_FILE"
EVENTS_FILE = "events.jsonl"
TIMINGS_FILE = "timings.json"
LOG_FILE = "ansible.log"
OnEvent = Callable[[Event], None]

# How ansible-core reports an error that ends the run: "ERROR! ..." up to 2.18,
# "[ERROR]: ..." from 2.19.
_ERROR_RE = re.compile(r"^(?:ERROR!|\[ERROR\]:)\s*(.+)$")


@dataclass(frozen=True)
class HostSummary:
    """What a run did on one host.

    The counts are Ansible's recap when the run got that far (``ok`` includes the
    changed tasks, as in Ansible's own recap), else counted from the events. ``seconds``
    runs from the host's first task start to its last result. ``reason`` and
    ``failed_task`` say why and where the host failed or was unreachable (the failure
    that ended its run; one rescued by a ``rescue:`` block does not count): one line, at
    most about 300 characters, "output hidden (no_log)" for a no_log task. ``not_run``
    is set on a host that a play should have run on but Ansible never started that play;
    ``reason`` then says why ("not run: ...") unless the host failed.
    """

    host: str
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int
    seconds: float
    reason: str | None
    failed_task: str | None
    not_run: bool = False


@dataclass(frozen=True)
class RunResult:
    """The outcome of one provisioning run (one or more ansible-playbook rounds).

    ``run_dir`` holds ansible.cfg, events.jsonl, ansible.log (ansible-playbook's own
    output) and timings.json (per-task durations, slowest first). ``rc`` is the worst
    exit code of its rounds. ``empty_plays`` names the plays that matched no host (in
    the inventory, within ``--limit``) in the first round.
    """

    rc: int
    hosts: tuple[HostSummary, ...]
    run_dir: Path
    seconds: float
    empty_plays: tuple[str, ...] = ()

    @property
    def log(self) -> Path:
        """ansible-playbook's own stdout and stderr."""
        return self.run_dir / LOG_FILE

    def ok(self) -> bool:
        """Whether ansible-playbook succeeded and every host ran, none failed or unreachable."""
        return self.rc == 0 and not any(h.failed or h.unreachable or h.not_run for h in self.hosts)

    def total_changed(self) -> int:
        """Changed tasks over all hosts."""
        return sum(h.changed for h in self.hosts)


def ansible_playbook() -> str:
    """The ansible-playbook beside this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ProvisionError(
            "ansible-playbook not found (beside this Python or on PATH); run 'make setup'"
        )
    return found


def last_error(log: Path) -> str | None:
    """The last error line ansible-playbook printed to its log, if any."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        match = _ERROR_RE.match(line.strip())
        if match:
            return match.group(1).strip()
    return None


def _write_extra_vars(run_dir: Path, extra_vars: Mapping[str, Any]) -> Path:
    # Only the file's name goes on the command line: secrets in argv show in ps.
    path = run_dir / f".extra-vars-{os.getpid()}-{time.monotonic_ns()}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(dict(extra_vars), fh, default=str)
    return path


def _marker(run_dir: Path) -> str:
    """What marks every process of the run at ``run_dir`` (its resolved path)."""
    return str(run_dir.resolve())


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries ``CAMPUS_PROVISION_RUN=<marker>``."""
    needle = f"{RUN_MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ:
                found.append(int(entry.name))
    return found


def _stop(proc: subprocess.Popen[bytes], marker: str) -> None:
    """End ansible-playbook and everything it started (its workers, their ssh)."""
    # Ansible's workers call setsid, so the group signal does not reach them, and once the
    # main process is gone they are no longer its descendants: every process of the run
    # carries the run's marker in its environment, which is how the leftovers are found.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(STOP_ROUNDS):  # bounded: a worker forking as it dies is caught next round
        left = [pid for pid in _marked(marker) if pid != os.getpid()]
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)


def _command(
    playbook: Path,
    inventory: Path,
    *,
    limit: str | None,
    tags: str | None,
    skip_tags: str | None,
    check: bool,
    diff: bool,
    extra_vars_file: Path | None,
) -> list[str]:
    cmd = [ansible_playbook(), str(playbook), "-i", str(inventory)]
    for flag, value in (("--limit", limit), ("--tags", tags), ("--skip-tags", skip_tags)):
        if value:
            cmd += [flag, value]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if extra_vars_file is not None:
        cmd += ["-e", f"@{extra_vars_file}"]
    return cmd


def _environment(base: Mapping[str, str], cfg: Path, run_dir: Path) -> dict[str, str]:
    # The generated ansible.cfg is the whole configuration of the run: an ANSIBLE_*
    # variable left in the shell (a stdout callback, callbacks, a roles path) would
    # override it silently and leave a run directory that does not say what ran.
    env = {k: v for k, v in base.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(cfg),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="False",
        PYTHONUNBUFFERED="1",
        CAMPUS_EVENTS_FILE=str(run_dir / EVENTS_FILE),
        **{TIMINGS_ENV: str(run_dir / TIMINGS_FILE)},
        **{RUN_MARKER_ENV: _marker(run_dir)},
    )
    return env


def _merge_timings(into: Path, more: Path) -> None:
    """Add the rows of a later round's timings to ``into``, slowest first; drop ``more``."""
    rows: list[Any] = []
    for path in (into, more):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            rows += data if isinstance(data, list) else []
    more.unlink(missing_ok=True)
    rows.sort(key=lambda r: -float(r.get("seconds") or 0) if isinstance(r, dict) else 0.0)
    tmp = into.with_name(f".{into.name}.tmp")
    tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(into)


def _skipped(events: Iterable[Event]) -> tuple[str | None, tuple[str, ...]]:
    """The play a round stopped at and the hosts of the plays it never started."""
    stopped_at: str | None = None
    targets: set[str] = set()
    for event in events:
        if event.kind == "play":
            stopped_at = event.play
        elif event.kind == "not_run" and event.targets:
            targets.update(event.targets)
    return stopped_at, tuple(sorted(targets))


def _empty_plays(events: Iterable[Event]) -> tuple[str, ...]:
    """The plays that matched no host: a "play" event followed by "no_hosts"."""
    found: list[str] = []
    play: str | None = None
    for event in events:
        if event.kind == "play":
            play = event.play
        elif event.kind == "no_hosts" and play is not None and play not in found:
            found.append(play)
    return tuple(found)


def stopped_reason(play: str | None) -> str:
    """Why a host's plays never started: the ``play`` before them failed everywhere."""
    name = f"the play '{play}'" if play else "a play"
    return f"not run: {name} failed on every host, Ansible stopped"


def run_playbook(
    playbook: Path,
    inventory: Path,
    run_dir: Path,
    *,
    limit: str | None = None,
    tags: str | None = None,
    skip_tags: str | None = None,
    check: bool = False,
    diff: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
    on_event: OnEvent | None = None,
    timeout: float = 3 * 3600,
    keystore: KeystoreAccess | None = None,
) -> RunResult:
    """Run ``playbook`` against ``inventory`` (a hosts.yml) and summarize it per host.

    ``run_dir`` is created if missing; a run there replaces the files of an earlier one.
    ``extra_vars`` go to a 0600 JSON file passed as ``-e @file`` and deleted after the
    run. ``on_event`` is called in the caller's thread for each event as it arrives.
    ``keystore`` says where the campus_volume_key lookup finds the keystore; whatever the
    source, ansible-playbook gets the passphrase only as a file's path, never in its
    environment or argv (see :func:`~campus_provision.keys.passphrase.child_environment`).
    A host that fails does not stop the others: when Ansible ends the playbook because a
    play failed on every host, the plays it never started are run in a further round on
    their hosts (a "resume" event says so). Raises ProvisionError when the playbook or
    inventory does not exist, or the run outlives ``timeout`` seconds (it is then killed
    with everything it started).
    """
    if not playbook.is_file():
        raise ProvisionError(f"{playbook}: no such playbook")
    if not inventory.exists():
        raise ProvisionError(f"{inventory}: no such inventory (render the spec first)")
    playbook, inventory = playbook.resolve(), inventory.absolute()
    # A directory inventory (the login overlay of provision) holds the rendered hosts.yml.
    hosts_file = inventory / "hosts.yml" if inventory.is_dir() else inventory
    hosts = inventory_hosts(hosts_file)
    # A passphrase file others can read is refused here, before anything is written; the
    # file handed over (if one is made) lives until the run has ended, however it ends.
    with child_environment(os.environ, keystore) as base:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir = run_dir.resolve()
        cfg = write_ansible_cfg(run_dir, forks=forks_for(len(hosts)),
                                control_dir=inventory_control_dir(hosts_file))  # fmt: skip
        events_path = run_dir / EVENTS_FILE
        events_path.write_bytes(b"")
        timings = run_dir / TIMINGS_FILE
        timings.unlink(missing_ok=True)
        for old in run_dir.glob("resume-*.limit"):
            old.unlink()
        extra_file = _write_extra_vars(run_dir, extra_vars) if extra_vars else None
        events: list[Event] = []
        tail = EventTail(events_path)

        def deliver(event: Event | None = None) -> None:
            for new in [event] if event is not None else tail.read():
                events.append(new)
                if on_event is not None:
                    on_event(new)

        started = time.monotonic()
        try:
            rc, not_run, empty = _run_rounds(
                functools.partial(_command, playbook, inventory, tags=tags, skip_tags=skip_tags,
                                  check=check, diff=diff, extra_vars_file=extra_file),
                limit,
                run_dir,
                _environment(base, cfg, run_dir),
                deliver,
                lambda: events,
                (started + timeout, timeout),
            )  # fmt: skip
        finally:
            if extra_file is not None:
                extra_file.unlink(missing_ok=True)
        return RunResult(
            rc=rc,
            hosts=summarize(events, not_run),
            run_dir=run_dir,
            seconds=round(time.monotonic() - started, 3),
            empty_plays=empty,
        )


def _run_rounds(
    command: Callable[..., list[str]],
    limit: str | None,
    run_dir: Path,
    env: dict[str, str],
    deliver: Callable[..., None],
    events: Callable[[], list[Event]],
    deadline: tuple[float, float],
) -> tuple[int, dict[str, str], tuple[str, ...]]:
    """Run ansible-playbook, then again while plays never started (at most MAX_RESUMES).

    Returns the worst exit code, the hosts left not run with why, and the plays that
    matched no host in the first round. Each further round is limited to the hosts of the
    plays not started (a ``resume-N.limit`` file in the run dir).
    """
    rc = 0
    not_run: dict[str, str] = {}
    empty: tuple[str, ...] = ()
    timings = run_dir / TIMINGS_FILE
    for round_no in range(MAX_RESUMES + 1):
        first = len(events())
        if round_no:
            env[TIMINGS_ENV] = str(run_dir / f".timings-{round_no}.json")
        rc = max(rc, _run_once(command(limit=limit), env, run_dir, deliver, deadline,
                               append=round_no > 0))  # fmt: skip
        if round_no:
            _merge_timings(timings, Path(env[TIMINGS_ENV]))
        else:
            empty = _empty_plays(events())
        stopped_at, orphans = _skipped(events()[first:])
        previous = set(not_run) if round_no else None
        not_run = dict.fromkeys(orphans, stopped_reason(stopped_at))
        if not orphans or round_no == MAX_RESUMES:
            break
        if previous is not None and not set(orphans) < previous:
            break  # no progress (cannot happen with Ansible): report them as not run
        limit_file = run_dir / f"resume-{round_no + 1}.limit"
        limit_file.write_text("".join(f"{h}\n" for h in orphans), encoding="utf-8")
        limit = f"@{limit_file}"
        deliver(Event(kind="resume", play=stopped_at, targets=orphans, time=time.time()))
    return rc, not_run, empty


def _run_once(
    cmd: list[str],
    env: Mapping[str, str],
    run_dir: Path,
    deliver: Callable[[], None],
    deadline: tuple[float, float],
    *,
    append: bool,
) -> int:
    """Run one ansible-playbook round to its end, delivering events; its exit code.

    ``deadline`` is when the whole run must have ended (monotonic) and its timeout.
    """
    log = run_dir / LOG_FILE
    with log.open("ab" if append else "wb") as out:
        if append:
            out.write(f"\n# campus-provision: again, for the plays not started: {cmd}\n".encode())
            out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=run_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to end it whole
        )
    try:
        while proc.poll() is None:
            deliver()
            if time.monotonic() > deadline[0]:
                _stop(proc, _marker(run_dir))
                raise ProvisionError(
                    f"ansible-playbook did not finish within {deadline[1]:.0f} s and was "
                    f"stopped; see {log}"
                )
            time.sleep(POLL_SECONDS)
        deliver()
    finally:
        if proc.poll() is None:  # interrupted, or on_event raised
            _stop(proc, _marker(run_dir))
    return proc.returncode


@dataclass
class _Host:
    first: float | None = None
    last: float | None = None
    counts: dict[str, int] | None = None
    tally: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULT_KINDS, 0))
    reason: str | None = None
    failed_task: str | None = None


def summarize(
    events: Iterable[Event], not_run: Mapping[str, str] | None = None
) -> tuple[HostSummary, ...]:
    """One summary per host in ``events`` or ``not_run``, sorted by host name.

    ``not_run`` maps a host that plays never ran on to why ("not run: ..."). The recaps
    of several rounds add up.
    """
    not_run = not_run or {}
    hosts: dict[str, _Host] = {name: _Host() for name in not_run}
    for event in events:
        if event.host is None:
            continue
        h = hosts.setdefault(event.host, _Host())
        if event.kind == "stats":
            h.counts = h.counts or {}
            for key, value in event.counts.items():
                h.counts[key] = h.counts.get(key, 0) + value
            continue
        if event.kind not in RESULT_KINDS:
            continue
        h.tally[event.kind] += 1
        start = event.time - (event.seconds or 0.0)
        h.first = start if h.first is None else min(h.first, start)
        h.last = event.time if h.last is None else max(h.last, event.time)
        if event.kind in ("failed", "unreachable"):
            # The last one is the one that ended the host's run; earlier ones were rescued.
            h.reason, h.failed_task = event.msg, event.task
    out = []
    for name in sorted(hosts):
        h = hosts[name]
        tally = h.tally
        if h.counts is not None:
            c = h.counts
            ok, changed, failed = c.get("ok", 0), c.get("changed", 0), c.get("failures", 0)
            unreachable, skipped = c.get("unreachable", 0), c.get("skipped", 0)
        else:  # the run ended before Ansible's recap
            ok = tally["ok"] + tally["changed"] + tally["ignored"]
            changed, failed = tally["changed"], tally["failed"]
            unreachable, skipped = tally["unreachable"], tally["skipped"]
        broken = bool(failed or unreachable)
        seconds = (h.last - h.first) if h.first is not None and h.last is not None else 0.0
        out.append(
            HostSummary(
                host=name,
                ok=ok,
                changed=changed,
                failed=failed,
                unreachable=unreachable,
                skipped=skipped,
                seconds=round(seconds, 3),
                reason=h.reason if broken else not_run.get(name),
                failed_task=h.failed_task if broken else None,
                not_run=name in not_run,
            )
        )
    return tuple(out)
