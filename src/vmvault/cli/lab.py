"""``vmvault lab``: build and run the built-in lab of real test guests."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vmvault.cli import remote
from vmvault.cli.context import services
from vmvault.cli.render import emit_json, out

lab_app = typer.Typer(
    help="The built-in lab: real Linux test guests on the local libvirtd.", no_args_is_help=True
)


@lab_app.callback()
def _local_only() -> None:
    # the lab's guests, images and object store are this host's
    remote.refuse("the lab's guests and object store are the local host's")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
HostOpt = Annotated[
    str | None,
    typer.Option("--host", help="The lab's second libvirt host (its URI), not the main one."),
]


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
    host: HostOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Start lab guests (adds to those already running) and wait for their agents."""
    t0 = time.monotonic()
    vms = services().lab.up(count, variant or [], host)
    if json_:
        emit_json(vms)
        return
    for vm in vms:
        out.print(f"{vm['name']:24} {vm['variant']:12} {vm['state']:10} {vm['uuid']}")
    out.print(f"{len(vms)} guest(s) up in {time.monotonic() - t0:.1f}s")


@lab_app.command("status")
def lab_status(host: HostOpt = None, json_: JsonOpt = False) -> None:
    """List the lab's guests."""
    vms = services().lab.status(host)
    if json_:
        emit_json(vms)
        return
    if not vms:
        out.print("no lab guests")
    for vm in vms:
        out.print(f"{vm['name']:24} {vm['variant']:12} {vm['state']:10} {vm['uuid']}")


@lab_app.command("down")
def lab_down(host: HostOpt = None) -> None:
    """Destroy every lab guest and remove its disks and metadata."""
    names = services().lab.down(host)
    out.print(f"removed {len(names)} lab guest(s)" + (": " + ", ".join(names) if names else ""))


host_app = typer.Typer(
    help="The lab's second libvirt host: an independent libvirtd in its own mount and PID "
    "namespace, at qemu+tcp://127.0.0.1:PORT/system, under $VMVAULT_LAB_DIR/host.",
    no_args_is_help=True,
)
lab_app.add_typer(host_app, name="host")


def _print_host(doc: dict[str, object]) -> None:
    where = f" at {doc['uri']}" if doc["uri"] else ""
    out.print(f"lab host {doc['state']}{where} ({doc['dir']})", markup=False)
    if doc.get("tls_uri"):
        out.print(f"with TLS (the lab's CA): {doc['tls_uri']}", markup=False)
    if doc.get("pull_tls"):
        out.print(
            f"pull client certificates (host add --pull-tls): {doc['pull_tls']}", markup=False
        )


@host_app.command("up")
def host_up(json_: JsonOpt = False) -> None:
    """Start the second libvirt host (or return the one that is up) and print its URI."""
    t0 = time.monotonic()
    doc = services().lab.host_up()
    if json_:
        emit_json(doc)
        return
    _print_host(doc)
    out.print(
        f"ready in {time.monotonic() - t0:.1f}s; add it: vmvault host add {doc['uri']} "
        "--location L",
        markup=False,
    )


@host_app.command("status")
def host_status(json_: JsonOpt = False) -> None:
    """Say whether the second host is up, down or partial, and its URI."""
    doc = services().lab.host_status()
    if json_:
        emit_json(doc)
        return
    _print_host(doc)


@host_app.command("down")
def host_down(json_: JsonOpt = False) -> None:
    """Destroy the second host's domains, stop its daemons and remove its directory."""
    names = services().lab.host_down()
    if json_:
        emit_json({"removed": names is not None, "domains": names or []})
        return
    if names is None:
        out.print("no lab host to remove")
    else:
        out.print(f"lab host removed with {len(names)} domain(s)", markup=False)


storage_app = typer.Typer(
    help="The lab's real S3 service: a single-node Ceph cluster with the RADOS Gateway, "
    "under $VMVAULT_LAB_DIR/ceph.",
    no_args_is_help=True,
)
lab_app.add_typer(storage_app, name="storage")


@storage_app.command("up")
def storage_up(json_: JsonOpt = False) -> None:
    """Start the cluster (or what of it is not running) and print its endpoint and S3 keys."""
    t0 = time.monotonic()
    doc = services().lab_storage.up()
    if json_:
        emit_json(doc)
        return
    out.print(f"endpoint    {doc['endpoint']}", markup=False)
    out.print(f"access key  {doc['access_key']}", markup=False)
    out.print(f"secret key  {doc['secret_key']}", markup=False)
    out.print(f"region      {doc['region']} (path-style addressing)", markup=False)
    out.print(f"cluster in {doc['dir']}, ready in {time.monotonic() - t0:.1f}s", markup=False)


@storage_app.command("status")
def storage_status(json_: JsonOpt = False) -> None:
    """Say whether the cluster is up, down or partial, and where it answers."""
    doc = services().lab_storage.status()
    if json_:
        emit_json(doc)
        return
    where = f" at {doc['endpoint']}" if doc["endpoint"] and doc["state"] != "down" else ""
    out.print(f"lab storage {doc['state']}{where} ({doc['dir']})", markup=False)
    if doc["state"] != "up" and doc["exists"]:
        out.print("  'vmvault lab storage up' starts what is missing, 'down' removes it")
    for daemon, pid in doc["daemons"].items():
        out.print(f"  {daemon:14} {'pid ' + str(pid) if pid else 'not running'}", markup=False)


@storage_app.command("down")
def storage_down() -> None:
    """Stop the cluster's daemons and remove its directory (and every object in it)."""
    t0 = time.monotonic()
    removed = services().lab_storage.down()
    if removed:
        out.print(f"lab storage stopped and removed in {time.monotonic() - t0:.1f}s")
    else:
        out.print("no lab storage to remove")


catalog_app = typer.Typer(
    help="The lab's PostgreSQL catalog: Debian's server under $VMVAULT_LAB_DIR/postgres, "
    "on a unix socket only (docs/deployment.md).",
    no_args_is_help=True,
)
lab_app.add_typer(catalog_app, name="catalog")


@catalog_app.command("up")
def catalog_up(json_: JsonOpt = False) -> None:
    """Create (or start) the cluster and print its URL for VMVAULT_CATALOG_URL."""
    t0 = time.monotonic()
    doc = services().lab_catalog.up()
    if json_:
        emit_json(doc)
        return
    out.print(f"url  {doc['url']}", markup=False)
    out.print(f"cluster in {doc['dir']}, ready in {time.monotonic() - t0:.1f}s", markup=False)


@catalog_app.command("status")
def catalog_status(json_: JsonOpt = False) -> None:
    """Say whether the server runs and its URL."""
    doc = services().lab_catalog.status()
    if json_:
        emit_json(doc)
        return
    pid = f" (pid {doc['pid']})" if doc["pid"] else ""
    out.print(f"lab catalog {doc['state']}{pid} at {doc['url']}", markup=False)


@catalog_app.command("down")
def catalog_down(json_: JsonOpt = False) -> None:
    """Stop the server and remove its directory (and every catalog in it)."""
    removed = services().lab_catalog.down()
    if json_:
        emit_json({"removed": removed})
        return
    out.print("lab catalog stopped and removed" if removed else "no lab catalog to remove")
