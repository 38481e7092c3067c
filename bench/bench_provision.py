"""Provisioning benchmark: the workstations play on 4 fresh nspawn PCs, tuned vs stock Ansible.

One lab (prefix ``cpg``: both sites' mirrors and service hosts, two nspawn PCs per site),
with the lab's bundle published on its mirrors. Each configuration starts from fresh PCs
(each PC powered off, its overlay's upper layer wiped, booted again from the base image)
and runs playbooks/workstations.yml twice with the same inventory: the first run, then an
immediate re-run that must change nothing on any host. Only ansible-playbook is timed,
never the lab's start or the PCs' reset.

- tuned: what ``provision --lab`` runs (the runner and its generated ansible.cfg:
  pipelining, ControlPersist, forks = host count, no fact gathering, campus_events).
- stock: ansible-core's defaults: a plain ``ansible-playbook`` with an ansible.cfg that
  only says where the roles and the keystore lookup are, and where ssh's sockets go (a
  private directory, so no other lab's connection can answer; the ssh options are
  Ansible's own); a first play gathers the full default fact set, as a play does unless
  told not to.
- mitogen (``--mitogen``): tuned plus the mitogen_linear strategy, when mitogen is there
  and supports the pinned ansible-core.

Tuned runs first, so stock meets a warmer mirror and page cache: the ratio is on the
safe side. Prints the table and the machine; raw JSON goes to bench/results/. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campus_provision.lab import control, net
from campus_provision.lab.plan import LabHost
from campus_provision.lab.proc import run
from campus_provision.lab.state import LabPaths, read_record, state_dir_from_env
from campus_provision.provision import runner
from campus_provision.provision.ansiblecfg import LOOKUP_PLUGIN_DIR, inventory_control_dir
from campus_provision.provision.bootstrap import choose_users, overlay_inventory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "seoul" / "campus.yml"
PLAYBOOK = ROOT / "playbooks" / "workstations.yml"
PREFIX = "cpg"
PER_SITE = 2
RUN_TIMEOUT = 1800.0
WIPE_TIMEOUT = 1800.0
PROFILE_TOP = 15
_RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
)
STOCK_MEANS = (
    "stock = ansible-core defaults: pipelining off, forks 5, linear strategy, full fact "
    "gathering (a gather_facts: true play, default subset, before workstations.yml), ssh_args "
    "Ansible's own (-C, ControlMaster=auto, ControlPersist=60s), default stdout callback; "
    "its ansible.cfg sets only roles_path, lookup_plugins and a private control_path_dir"
)


@dataclass
class Run:
    """One ansible-playbook run: wall seconds, rc and the recap per host."""

    seconds: float
    rc: int
    changed: dict[str, int]
    failed: dict[str, int]
    run_dir: str
    changed_tasks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "host: task: message", first 3 lines

    def ok(self, hosts: list[str]) -> bool:
        return self.rc == 0 and set(self.changed) == set(hosts) and not any(self.failed.values())


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and kernel of this machine."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
    return {
        "node": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def other_labs() -> list[str]:
    """Prefixes of the other labs running on this machine now (their namespaces)."""
    return sorted({ns.split("-", 1)[0] for ns in net.namespaces()} - {PREFIX})


def load_now() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# --- resetting the PCs ---------------------------------------------------------------


def close_masters(directory: Path) -> None:
    """End the ssh master connections whose sockets are in ``directory`` (ours)."""
    if not directory.is_dir():
        return
    for sock in directory.iterdir():
        if sock.is_socket():
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                               capture_output=True, timeout=10, check=False)  # fmt: skip
            sock.unlink(missing_ok=True)


def wipe_pcs(paths: LabPaths, pcs: list[LabHost]) -> None:
    """Each PC off and its disk (the overlay's upper layer) deleted."""
    with ThreadPoolExecutor(max_workers=max(1, len(pcs))) as pool:
        list(pool.map(lambda h: control.stop_host(paths, h.name), pcs))
    for host in pcs:
        d = paths.host_dir(host.name)
        for part in ("upper", "work"):
            if (d / part).exists():
                # A provisioned PC's layer holds some 100,000 files: under load their
                # deletion outlasts the lab's usual 120 s command bound.
                run(["rm", "-rf", "--one-file-system", str(d / part)], timeout=WIPE_TIMEOUT)
        # A fresh PC makes new host keys on its first boot.
        run(["ssh-keygen", "-R", str(host.address.ip), "-f", str(paths.known_hosts)], check=False)


def reset_pcs(paths: LabPaths, pcs: list[LabHost]) -> float:
    """Each PC off, its disk wiped, booted fresh from the base image; the seconds taken."""
    start = time.monotonic()
    wipe_pcs(paths, pcs)
    for host in pcs:
        control.start_host(paths, host.name)
    return time.monotonic() - start


def teardown(paths: LabPaths) -> None:
    """``lab down``, after the PCs' big disks are deleted with a bound that fits them."""
    pcs = [h for h in control.plan_from_record(paths) if h.role == "workstation"]
    try:
        wipe_pcs(paths, pcs)
    finally:
        control.down(paths)


# --- the runs ------------------------------------------------------------------------


def login(paths: LabPaths, run_dir: Path, admin: str) -> Path:
    """The inventory for this run: admin (with sudo) where it logs in, else root."""
    inventory = paths.inventory / "hosts.yml"
    return overlay_inventory(inventory, run_dir / "inventory",
                             choose_users(inventory, "workstations", admin))  # fmt: skip


@contextlib.contextmanager
def cfg_patch(extra_defaults: str) -> Iterator[None]:
    """The runner's generated ansible.cfg, with lines added to its [defaults] section.

    The runner calls ``write_ansible_cfg`` by its module-level name: that name is swapped.
    """
    names = vars(runner)
    original = names["write_ansible_cfg"]

    def patched(run_dir: Path, **kwargs: Any) -> Path:
        path = Path(original(run_dir, **kwargs))
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("[defaults]\n", f"[defaults]\n{extra_defaults}", 1))
        return path

    names["write_ansible_cfg"] = patched
    try:
        yield
    finally:
        names["write_ansible_cfg"] = original


def changed_tasks_from_events(run_dir: Path) -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for line in (run_dir / runner.EVENTS_FILE).read_text().splitlines():
            event = json.loads(line)
            if event.get("kind") == "changed":
                out.append(f"{event.get('host')}: {event.get('task')}")
    return out


def failures_from_events(run_dir: Path) -> list[str]:
    """Each failed or unreachable result: host, task and Ansible's message (one line)."""
    out = []
    with contextlib.suppress(OSError):
        for line in (run_dir / runner.EVENTS_FILE).read_text().splitlines():
            event = json.loads(line)
            if event.get("kind") in ("failed", "unreachable"):
                msg = " ".join(str(event.get("msg") or "").split())[:400]
                out.append(f"{event.get('host')}: {event.get('task')}: {msg}")
    return out


def run_tuned(inventory: Path, run_dir: Path, extra: dict[str, str]) -> Run:
    """The workstations play exactly as ``provision --lab`` runs it."""
    result = runner.run_playbook(PLAYBOOK, inventory, run_dir, extra_vars=extra,
                                 timeout=RUN_TIMEOUT)  # fmt: skip
    return Run(
        seconds=result.seconds,
        rc=result.rc,
        changed={h.host: h.changed for h in result.hosts},
        failed={h.host: h.failed + h.unreachable for h in result.hosts},
        run_dir=str(run_dir),
        changed_tasks=changed_tasks_from_events(run_dir),
        failures=failures_from_events(run_dir),
    )


def stock_files(run_dir: Path, control_dir: Path) -> tuple[Path, Path]:
    """ansible.cfg and the playbook of a stock run."""
    cfg = run_dir / "ansible.cfg"
    cfg.write_text(
        "# campus-provision bench: stock ansible-core, only where things are.\n"
        "[defaults]\n"
        f"roles_path = {ROOT / 'roles'}\n"
        f"lookup_plugins = {LOOKUP_PLUGIN_DIR}\n"
        "\n[ssh_connection]\n"
        f"control_path_dir = {control_dir}\n"
    )
    play = run_dir / "stock.yml"
    play.write_text(
        "---\n"
        "- name: Gather facts, as a play does by default\n"
        "  hosts: workstations\n"
        "  gather_facts: true\n"
        "  tasks: []\n\n"
        f"- name: Campus workstations\n  ansible.builtin.import_playbook: {PLAYBOOK}\n"
    )
    return cfg, play


def run_stock(inventory: Path, run_dir: Path, extra: dict[str, str], control_dir: Path) -> Run:
    """A plain ansible-playbook with ansible-core's defaults; counts from its PLAY RECAP."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg, play = stock_files(run_dir, control_dir)
    extra_file = run_dir / "extra-vars.json"
    extra_file.write_text(json.dumps(extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(cfg), ANSIBLE_NOCOLOR="1", PYTHONUNBUFFERED="1")
    cmd = [runner.ansible_playbook(), str(play), "-i", str(inventory), "-e", f"@{extra_file}"]
    log = run_dir / "ansible.log"
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -1
    seconds = round(time.monotonic() - start, 3)
    text = log.read_text(encoding="utf-8", errors="replace")
    changed, failed = {}, {}
    for line in text.split("PLAY RECAP", 1)[-1].splitlines():
        match = _RECAP.match(line.strip())
        if match:
            host = match.group(1)
            changed[host] = int(match.group(3))
            failed[host] = int(match.group(4)) + int(match.group(5))
    tasks = re.findall(r"^changed: \[([^\]]+)\]", text, flags=re.MULTILINE)
    fatal = [" ".join(m.split())[:400] for m in re.findall(r"^fatal: .*$", text, re.MULTILINE)]
    return Run(seconds, rc, changed, failed, str(run_dir), [f"{h}: (see log)" for h in tasks],
               fatal)  # fmt: skip


@dataclass
class Config:
    name: str
    runs: Callable[[Path, Path], Run]  # (inventory, run_dir) -> Run


def measure(
    config: Config, paths: LabPaths, pcs: list[LabHost], admin: str, work: Path, *, reset: bool
) -> dict[str, Any]:
    """Fresh PCs (reset them unless they are), then the first run and the re-run of ``config``."""
    names = sorted(h.name for h in pcs)
    print(f"== {config.name}" + (": resetting the PCs to fresh" if reset else ""), flush=True)
    out: dict[str, Any] = {"reset_seconds": round(reset_pcs(paths, pcs), 1) if reset else 0.0}
    for phase in ("first", "rerun"):
        run_dir = work / config.name / phase
        inventory = login(paths, run_dir, admin)
        print(f"   {config.name} {phase} run (load {load_now()})...", flush=True)
        result = config.runs(inventory, run_dir)
        ok = result.ok(names)
        verdict = "ok" if ok else "FAILED"
        print(f"   {config.name} {phase}: {result.seconds:.1f} s, rc {result.rc}, "
              f"changed {sum(result.changed.values())}, {verdict}", flush=True)  # fmt: skip
        out[phase] = asdict(result) | {"ok": ok}
        if not ok:
            for failure in result.failures[:4]:
                print(f"     {failure}", flush=True)
            print(f"   log: {run_dir}/ansible.log (removed at the end unless --keep-runs DIR)",
                  flush=True)  # fmt: skip
            break
    return out


def mitogen_strategy_dir(path: Path | None) -> tuple[Path | None, str]:
    """The mitogen strategy plugins directory, or None and why mitogen is not measured."""
    if path is not None:
        base = path / "ansible_mitogen"
    else:
        spec = importlib.util.find_spec("ansible_mitogen")
        if spec is None or spec.origin is None:
            return None, ("mitogen is not installed: 'pip install mitogen' in the venv, or "
                          "--mitogen-path DIR (a 'pip install --target DIR mitogen')")  # fmt: skip
        base = Path(spec.origin).parent
    strategy = base / "plugins" / "strategy"
    if not (strategy / "mitogen_linear.py").is_file():
        return None, f"no mitogen_linear strategy under {base}"
    # Mitogen says which ansible-core it supports in its own version check, and refuses
    # to load under one it does not: ask it the way ansible-playbook would load it.
    probe = (
        f"import sys; sys.path.insert(0, {str(base.parent)!r}); "
        "import ansible_mitogen.loaders, ansible_mitogen.utils as u; "
        "print('.'.join(map(str, u.ansible_version)))"
    )
    check = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
    if check.returncode != 0:
        why = (check.stderr.strip().splitlines() or ["import failed"])[-1]
        return None, f"mitogen does not load with this ansible-core: {why}"
    return strategy, f"mitogen from {base.parent} loads with ansible-core {check.stdout.strip()}"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mitogen", action="store_true", help="also measure mitogen_linear")
    parser.add_argument(
        "--mitogen-path",
        type=Path,
        default=None,
        help="a directory holding ansible_mitogen (pip install --target)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print the tuned runs' 15 slowest tasks"
    )
    parser.add_argument(
        "--keep-runs",
        type=Path,
        default=None,
        help="keep the run directories here (default: a temp dir, removed)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["tuned", "stock", "mitogen"],
        default=None,
        help="measure only this configuration (repeatable; for diagnosis, no ratios)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="print a saved result (bench/results/provision-*.json) again",
    )
    return parser.parse_args()  # fmt: skip


def measure_all(
    paths: LabPaths,
    up: control.UpResult,
    strategy: Path | None,
    work: Path,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Each configuration on fresh PCs, in order: tuned, stock, mitogen (if any)."""
    pcs = [h for h in up.plan.hosts if h.role == "workstation"]
    record = read_record(paths) or {}
    extra = {"campus_bundle_dir": record["bundle"], "campus_signing_pubkey": record["pubkey"]}
    os.environ.setdefault("CAMPUS_KEYS_DIR", str(paths.state_dir / "keys"))
    admin = str(record["admin"])
    stock_cp = Path(tempfile.mkdtemp(prefix="cpg-", dir="/tmp"))
    tuned_cp = inventory_control_dir(paths.inventory / "hosts.yml")
    configs = [
        Config("tuned", lambda inv, d: run_tuned(inv, d, extra)),
        Config("stock", lambda inv, d: run_stock(inv, d, extra, stock_cp)),
    ]
    if strategy is not None:
        lines = f"strategy_plugins = {strategy}\nstrategy = mitogen_linear\n"

        def mitogen(inv: Path, d: Path) -> Run:
            with cfg_patch(lines):
                return run_tuned(inv, d, extra)

        configs.append(Config("mitogen", mitogen))
    if only:
        configs = [c for c in configs if c.name in only]
    print(f"{len(pcs)} PCs: {', '.join(h.name for h in pcs)} (lab up in {up.seconds:.0f} s)")
    results: dict[str, Any] = {}
    for i, config in enumerate(configs):
        if i:
            close_masters(tuned_cp)
            close_masters(stock_cp)
        # The lab's own PCs are fresh for the first configuration.
        try:
            results[config.name] = measure(config, paths, pcs, admin, work, reset=bool(i))
        except Exception as exc:  # one configuration's crash is reported, not the end
            print(f"   {config.name}: {type(exc).__name__}: {exc}", flush=True)
            results[config.name] = {"error": f"{type(exc).__name__}: {exc}"}
    close_masters(tuned_cp)
    close_masters(stock_cp)
    shutil.rmtree(stock_cp, ignore_errors=True)
    return results


def main() -> int:
    args = parse_args()
    if args.report is not None:
        return report_saved(args.report, args.profile)
    paths = LabPaths(state_dir_from_env(), PREFIX)
    mine = machine()
    labs_before = other_labs()
    strategy, mitogen_note = (None, "not asked (--mitogen)")
    if args.mitogen or "mitogen" in (args.only or []):
        strategy, mitogen_note = mitogen_strategy_dir(args.mitogen_path)
        print(f"mitogen: {mitogen_note}" + ("" if strategy else "; skipped"), flush=True)
    work = (args.keep_runs or Path(tempfile.mkdtemp(prefix="bench-provision-"))).absolute()
    control.down(paths)
    print(f"lab {PREFIX}: {PER_SITE} nspawn PCs per site + service hosts, mirror", flush=True)
    try:
        up = control.up(EXAMPLE, paths, per_site=PER_SITE, mirror=True)
        results = measure_all(paths, up, strategy, work, args.only)
        labs = sorted(set(labs_before) | set(other_labs()))
        # Saved before the lab goes: a teardown that fails must not lose the measurements.
        code = report(results, mine, labs, mitogen_note, args.profile)
    finally:
        teardown(paths)
        if args.keep_runs is None:
            shutil.rmtree(work, ignore_errors=True)
    return code


def seconds_of(results: dict[str, Any], name: str, phase: str) -> float | None:
    """Seconds of a run that succeeded; None for one that failed or did not run."""
    run_ = results.get(name, {}).get(phase, {})
    return float(run_["seconds"]) if run_.get("ok") and run_.get("seconds") else None


def cell(value: float | None, width: int, unit: str = "") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width - len(unit)}.2f}{unit}"


def print_table(results: dict[str, Any]) -> bool:
    """One row per configuration; True when every run succeeded and every re-run changed 0."""
    heads = [f"{'configuration':14}", f"{'first run':>10}", f"{'re-run':>9}",
             f"{'re-run/first':>13}", f"{'changed on re-run':>18}", f"{'stock/this first':>17}",
             f"{'stock/this re-run':>18}"]  # fmt: skip
    print(" ".join(heads))
    good = True
    for name, r in results.items():
        first, again = r.get("first", {}), r.get("rerun", {})
        changed = sum(again["changed"].values()) if again else None
        good &= bool(first.get("ok") and again.get("ok") and changed == 0 and "error" not in r)
        f_s, a_s = seconds_of(results, name, "first"), seconds_of(results, name, "rerun")
        r["rerun_fraction"] = ratio(a_s, f_s)
        r["stock_over_this"] = {
            phase: ratio(seconds_of(results, "stock", phase), seconds_of(results, name, phase))
            for phase in ("first", "rerun")
        }
        cells = [cell(f_s, 10, "s"), cell(a_s, 9, "s"), cell(r["rerun_fraction"], 13),
                 f"{'-' if changed is None else changed:>18}",
                 cell(r["stock_over_this"]["first"], 17, "x"),
                 cell(r["stock_over_this"]["rerun"], 18, "x")]  # fmt: skip
        failed = [p for p in ("first", "rerun") if r.get(p) and not r[p].get("ok")]
        note = f"  ERROR: {r['error']}" if "error" in r else ""
        note += f"  FAILED: {', '.join(failed)} run (rc {r[failed[0]]['rc']})" if failed else ""
        print(f"{name:14} " + " ".join(cells) + note)
    return good


def profiles_of(tuned: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tuned runs' slowest tasks, from campus_events' timings.json in their run dirs."""
    profiles = {}
    for phase in ("first", "rerun"):
        if not tuned.get(phase):
            continue
        try:
            rows = json.loads((Path(tuned[phase]["run_dir"]) / runner.TIMINGS_FILE).read_text())
        except (OSError, ValueError):
            continue
        total = round(sum(r["seconds"] for r in rows), 1)
        profiles[phase] = {"tasks": len(rows), "total": total, "top": rows[:PROFILE_TOP]}
    return profiles


def print_profiles(profiles: dict[str, dict[str, Any]]) -> None:
    for phase, p in profiles.items():
        print(f"\nslowest {len(p['top'])} tasks, tuned {phase} run (of {p['tasks']} tasks; "
              f"wall time over the PCs; all sum to {p['total']} s):")  # fmt: skip
        for row in p["top"]:
            print(f"  {row['seconds']:7.1f} s  {row['task']}")


def report(
    results: dict[str, Any], mine: dict[str, Any], labs: list[str], mitogen_note: str,
    profile: bool, profiles: dict[str, dict[str, Any]] | None = None,
) -> int:  # fmt: skip
    """Print the table, the ratios and the machine; save the raw JSON (unless ``profiles``
    come from a saved one); the exit code."""
    save = profiles is None
    host = (
        f"{mine['node']}: {mine['cpu']}, {mine['cores']} cores, {mine['ram_gb']} GB RAM, "
        f"kernel {mine['kernel']}"
    )
    print(f"\nprovisioning benchmark: playbooks/workstations.yml on 4 fresh nspawn PCs, on {host}")
    if labs:
        print(f"other labs on this machine during the run: {', '.join(labs)}; they share "
              "its cores: absolute times are inflated, the ratios side by side count")  # fmt: skip
    print(STOCK_MEANS)
    good = print_table(results)
    ratios = results.get("tuned", {}).get("stock_over_this", {})
    fraction = results.get("tuned", {}).get("rerun_fraction")
    print(f"stock/tuned: first run {ratios.get('first')}x, re-run {ratios.get('rerun')}x "
          f"(goal >= 3x); tuned re-run/first {fraction} (goal <= 0.2, changed=0)")  # fmt: skip
    if "mitogen" in results:
        speed = ratio(
            seconds_of(results, "tuned", "first"), seconds_of(results, "mitogen", "first")
        )
        failures = [f for phase in ("first", "rerun")
                    for f in results["mitogen"].get(phase, {}).get("failures", [])]  # fmt: skip
        said = (f"tuned/mitogen first run {speed}x" if speed
                else f"its runs failed: {failures[0] if failures else '(see above)'}")  # fmt: skip
        print(f"mitogen: {mitogen_note}; {said}")
    else:
        print(f"mitogen: {mitogen_note}")
    if profiles is None:
        profiles = profiles_of(results.get("tuned", {}))
    if profile:
        print_profiles(profiles)
    for name, r in results.items():
        if r.get("rerun") and sum(r["rerun"]["changed"].values()):
            print(f"NOT IDEMPOTENT ({name}): " + "; ".join(r["rerun"]["changed_tasks"][:10]))
    if not good:
        print("FAILED: a run failed or a re-run changed something (see above)")
    if not save:
        return 0 if good else 1
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {
        "date": stamp, "machine": mine, "other_labs": labs, "pcs": 4, "playbook": str(PLAYBOOK),
        "stock_means": STOCK_MEANS, "mitogen": mitogen_note, "configs": results,
        "ratios_stock_over_tuned": ratios, "profile_tuned_top": profiles, "ok": good,
        "only": sorted(results),
    }  # fmt: skip
    target = out / f"provision-{stamp}.json"
    target.write_text(json.dumps(data, indent=2) + "\n")
    print(f"raw results: {target.relative_to(ROOT)}")
    return 0 if good else 1


def report_saved(path: Path, profile: bool) -> int:
    """Print the table of a saved result again (no lab)."""
    data = json.loads(path.read_text())
    return report(data["configs"], data["machine"], data["other_labs"], data["mitogen"],
                  profile, data["profile_tuned_top"])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
