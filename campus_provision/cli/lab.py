"""``campus-provision lab``: real Debian 12 hosts on this machine to try and test against."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from campus_provision.cli.common import SpecArg, console, user_errors
from campus_provision.errors import LabError
from campus_provision.lab import control
from campus_provision.lab.image import ensure_base, ensure_vm_disk
from campus_provision.lab.plan import Driver
from campus_provision.lab.proc import require_root
from campus_provision.lab.state import DEFAULT_PREFIX, LabPaths, state_dir_from_env

app = typer.Typer(
    help="A lab of real Debian 12 hosts (containers and VMs) in namespaces of its own.",
    no_args_is_help=True,
)

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where labs and the image cache live \\[default: $CAMPUS_LAB_STATE or "
        "/var/lib/campus-provision/lab].",
        show_default=False,
    ),
]
PrefixOpt = Annotated[
    str, typer.Option("--prefix", help="Name of this lab; two labs need two prefixes.")
]


def _paths(state_dir: Path | None, prefix: str) -> LabPaths:
    return LabPaths(state_dir or state_dir_from_env(), prefix)


def _progress(line: str) -> None:
    console.print(f"[dim]·[/dim] {line}")


@app.command("image")
def image(
    state_dir: StateOpt = None,
    vm: Annotated[bool, typer.Option("--vm", help="Also build the VM disk image.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build again even if cached.")] = False,
) -> None:
    """Build (or reuse) the base Debian 12 image the lab's hosts boot from.

    Built once with debootstrap and cached under the state directory, keyed by a hash
    of its package list.

    Example: sudo campus-provision lab image --vm
    """
    with user_errors():
        require_root()
        images = _paths(state_dir, DEFAULT_PREFIX).images
        img = ensure_base(images, progress=_progress, rebuild=rebuild)
        verb = f"built in {img.seconds:.0f} s" if img.built else "cached"
        console.print(f"base image {img.key}: {verb} ({img.rootfs})")
        if vm:
            started = time.monotonic()
            img = ensure_vm_disk(images, img, progress=_progress)
            console.print(f"VM disk: {img.vm_disk} ({time.monotonic() - started:.0f} s)")


@app.command("up")
def up(
    spec: SpecArg,
    per_site: Annotated[int, typer.Option("--per-site", help="PCs per site to start.")] = 2,
    driver: Annotated[
        str, typer.Option("--driver", help="nspawn (containers) or qemu (VMs) for the PCs.")
    ] = "nspawn",
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="Only PCs of this site (repeatable).")
    ] = None,
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror/--no-mirror",
            help="Publish the lab's offline bundle on the lab mirrors (built once, cached).",
        ),
    ] = True,
    state_dir: StateOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX,
) -> None:
    """Start the lab: every service host of SPEC and the first PCs of each site.

    Renders the lab's inventory from the same spec (lab addresses replace the spec's)
    and waits until every host answers SSH. Then builds the offline bundle of the lab
    PCs' software profiles (from Debian's mirror, once; cached by its package set and
    signed with the lab's own keys) and publishes it on the lab's mirror hosts with the
    campus_mirror role, so 'campus-provision provision --lab' can run. Safe to run again.

    Example: sudo campus-provision lab up inventories/seoul/campus.yml --per-site 2
    """
    if driver not in ("nspawn", "qemu"):
        raise typer.BadParameter("nspawn or qemu", param_hint="--driver")
    with user_errors():
        paths = _paths(state_dir, prefix)
        drv: Driver = "qemu" if driver == "qemu" else "nspawn"
        result = control.up(
            spec, paths, per_site=per_site, driver=drv, sites=sites, mirror=mirror,
            progress=_progress,
        )  # fmt: skip
    if result.image.built:
        console.print(f"base image built in {result.image.seconds:.0f} s")
    console.print(
        f"lab '{prefix}' up: {len(result.plan.hosts)} hosts ({result.started} started) "
        f"in {result.seconds:.1f} s; inventory: {paths.inventory / 'hosts.yml'}"
    )


@app.command("down")
def down(state_dir: StateOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Stop and remove everything the lab made: processes, mounts, namespaces, files.

    Works after a crash or a half-finished 'lab up' too.

    Example: sudo campus-provision lab down
    """
    with user_errors():
        paths = _paths(state_dir, prefix)
        removed = control.down(paths, progress=_progress)
        left = control.leftovers(paths)
    if left:
        for item in left:
            typer.echo(f"left behind: {item}", err=True)
        raise typer.Exit(1)
    console.print(
        f"lab '{prefix}' down"
        + (f": removed {len(removed)} items" if removed else ": nothing was up")
    )


@app.command("status")
def status(state_dir: StateOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Show the lab's hosts: address, driver, and whether each runs and answers SSH.

    Example: sudo campus-provision lab status
    """
    with user_errors():
        require_root()
        rows = control.status(_paths(state_dir, prefix))
    if not rows:
        console.print(f"lab '{prefix}' is not up")
        raise typer.Exit(1)
    table = Table(title=f"lab '{prefix}'", title_justify="left")
    for col in ("host", "role", "driver", "address", "state"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r.state == "up" else "red"
        table.add_row(r.name, r.role, r.driver, r.address, f"[{colour}]{r.state}[/{colour}]")
    console.print(table)


HostArg = Annotated[str, typer.Argument(help="The lab host, e.g. sgm-a01.", show_default=False)]


@app.command("stop")
def stop(host: HostArg, state_dir: StateOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Power one lab host off; its disk is kept (like a PC switched off at the wall).

    Example: sudo campus-provision lab stop sgm-a02
    """
    with user_errors():
        stopped = control.stop_host(_paths(state_dir, prefix), host)
    console.print(f"{host}: " + ("stopped" if stopped else "was not running"))


@app.command("start")
def start(host: HostArg, state_dir: StateOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Boot a stopped lab host again from its own disk, and wait until it answers SSH.

    Example: sudo campus-provision lab start sgm-a02
    """
    with user_errors():
        seconds = control.start_host(_paths(state_dir, prefix), host, progress=_progress)
    console.print(f"{host}: up (SSH after {seconds:.0f} s)")


@app.command("link")
def link(
    host: HostArg,
    state: Annotated[str, typer.Argument(help="up or down.", show_default=False)],
    state_dir: StateOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX,
) -> None:
    """Plug a lab host's network cable in (up) or pull it out (down); the host keeps running.

    Example: sudo campus-provision lab link sgm-a02 down
    """
    with user_errors():
        if state not in ("up", "down"):
            raise LabError(f"link state must be 'up' or 'down', not '{state}'")
        control.set_link(_paths(state_dir, prefix), host, up=state == "up")
    console.print(f"{host}: link {state}")


@app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    host: HostArg,
    state_dir: StateOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX,
) -> None:
    """Open a shell on a lab host (or run the command given after it).

    Example: sudo campus-provision lab ssh sgm-a01 -- systemctl is-system-running
    """
    with user_errors():
        require_root()
        paths = _paths(state_dir, prefix)
        target = control.find_host(paths, host)
    user = control.login_user(paths, target)
    args = control.ssh_args(paths, target, user)
    if user != "root":  # root login is off on a provisioned PC: the lab admin, then sudo
        command = " ".join(shlex.quote(a) for a in ctx.args)
        args = [args[0], "-t", *args[1:], f"sudo -n sh -c {shlex.quote(command)}" if command
                else "sudo -i"]  # fmt: skip
    else:
        args += list(ctx.args)
    os.execvp(args[0], args)  # noqa: S606 - replaces this process with the user's ssh session
