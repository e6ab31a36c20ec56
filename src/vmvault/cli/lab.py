"""``vmvault lab``: build and run the built-in lab of real test guests."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vmvault.cli.context import services
from vmvault.cli.render import emit_json, out

lab_app = typer.Typer(
    help="The built-in lab: real Linux test guests on the local libvirtd.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@lab_app.command("build")
def lab_build(
    force: Annotated[bool, typer.Option(help="Rebuild even when cached.")] = False,
) -> None:
    """Build (or reuse) the guest kernel + initramfs from Debian packages."""
    t0 = time.monotonic()
    key = services().lab.build(force)
    out.print(f"guest image {key[:16]} ready in {time.monotonic() - t0:.1f}s")


@lab_app.command("up")
def lab_up(
    count: Annotated[int, typer.Option(help="Guests of each variant.")] = 1,
    variant: Annotated[list[str] | None, typer.Option(help="Variant (repeatable).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Start lab guests (adds to those already running) and wait for their agents."""
    t0 = time.monotonic()
    vms = services().lab.up(count, variant or [])
    if json_:
        emit_json(vms)
        return
    for vm in vms:
        out.print(f"{vm['name']:24} {vm['variant']:12} {vm['state']:10} {vm['uuid']}")
    out.print(f"{len(vms)} guest(s) up in {time.monotonic() - t0:.1f}s")


@lab_app.command("status")
def lab_status(json_: JsonOpt = False) -> None:
    """List the lab's guests."""
    vms = services().lab.status()
    if json_:
        emit_json(vms)
        return
    if not vms:
        out.print("no lab guests")
    for vm in vms:
        out.print(f"{vm['name']:24} {vm['variant']:12} {vm['state']:10} {vm['uuid']}")


@lab_app.command("down")
def lab_down() -> None:
    """Destroy every lab guest and remove its disks and metadata."""
    names = services().lab.down()
    out.print(f"removed {len(names)} lab guest(s)" + (": " + ", ".join(names) if names else ""))
