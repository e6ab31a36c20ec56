"""`vmvault files ls|get|find` (file-level restore) and `vmvault export` (a point over NBD)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any
from urllib.parse import quote

import typer

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out

files_app = typer.Typer(
    help="Browse and extract files of a recovery point without restoring its disks.",
    no_args_is_help=True,
)

PointArg = Annotated[str, typer.Argument(help="The recovery point's id.")]
DiskOpt = Annotated[
    str | None,
    typer.Option(
        "--disk",
        help="Read this disk's file system (vdb; a partition: vdb2); paths are from its root.",
    ),
]


@files_app.command("ls")
def files_ls(
    point: PointArg,
    path: Annotated[
        str | None, typer.Argument(help="A path as the guest sees it (/data/docs).")
    ] = None,
    disk: DiskOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List a directory of the point (no PATH and no --disk: its file systems and where the
    guest mounted them)."""
    if path is None and disk is None:
        docs: list[dict[str, Any]] = (
            remote.get(f"/points/{remote.part(point)}/filesystems")
            if remote.active()
            else [v.to_json() for v in services().files.volumes(point)]
        )
        _table(docs, json_, ("DISK", "OFFSET", "SIZE", "MOUNTED ON"),
               lambda d: (d["volume"], str(d["offset"]), render.size(d["size"]),
                          d["mounted_on"] or ""))  # fmt: skip
        return
    if remote.active():
        docs = remote.get(
            f"/points/{remote.part(point)}/files?path={quote(path or '/')}", disk=disk
        )
    else:
        docs = [e.to_json() for e in services().files.ls(point, path or "/", disk)]
    _entries(docs, json_)


@files_app.command("find")
def files_find(
    point: PointArg,
    pattern: Annotated[
        str, typer.Argument(help="A name pattern ('*.conf'); with a '/', a path pattern.")
    ],
    disk: DiskOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Find the point's files whose name (or path) matches PATTERN."""
    if remote.active():
        docs = remote.get(f"/points/{remote.part(point)}/files/find", pattern=pattern, disk=disk)
    else:
        docs = [e.to_json() for e in services().files.find(point, pattern, disk)]
    _entries(docs, json_)


@files_app.command("get")
def files_get(
    point: PointArg,
    paths: Annotated[list[str], typer.Argument(help="Files or directories to extract.")],
    to: Annotated[str, typer.Option("--to", help="An existing directory to write them into.")],
    disk: DiskOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Extract files (a directory: its whole tree) with their owners, modes and times."""
    if remote.active():
        remote.refuse_option("get", "download files with GET /points/{id}/files/content")
    written = services().files.get(point, paths, to, disk)
    if json_:
        emit_json({"written": [str(p) for p in written]})
        return
    for p in written:
        out.print(f"wrote {p}", markup=False)


def export(
    point: PointArg,
    disk: Annotated[str | None, typer.Option("--disk", help="Serve this disk only.")] = None,
    writable: Annotated[
        bool,
        typer.Option(
            "--writable", help="Accept writes, into a scratch overlay (the vault never changes)."
        ),
    ] = False,
    socket: Annotated[
        str | None,
        typer.Option("--socket", help="The unix socket (default: in the work directory)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Serve a point's disks over NBD straight from the vault (a job, until Ctrl-C or
    'vmvault jobs cancel')."""
    if remote.active():
        body = {"disk": disk, "writable": writable, "socket": socket}
        _served(remote.post(f"/points/{remote.part(point)}/export", body), json_)
        return
    stop = threading.Event()

    def interrupted(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    outcome = services().exports.export(
        point,
        disk,
        writable=writable,
        socket=socket,
        ready=lambda e: _served(e.to_json(), json_),
        stop=stop,
    )
    if outcome.error is not None:
        raise outcome.error
    if not json_:
        out.print(f"export job {outcome.job.id} stopped")


def _served(doc: dict[str, Any], json_: bool) -> None:
    """What serves where; with ``--json`` one line, flushed (a script reads it while the
    export runs)."""
    if json_:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        return
    out.print(f"export job {doc['job']} of point {doc['point']} serving on {doc['socket']}")
    for d in doc["disks"]:
        mode = "read-write overlay" if doc["writable"] else "read-only"
        out.print(f"  {d['target']}: {d['uri']}  ({render.size(d['size'])}, {mode})", markup=False)
    if not remote.active():
        out.print("stop with Ctrl-C or 'vmvault jobs cancel JOB'")
    sys.stdout.flush()


def _entries(docs: list[dict[str, Any]], json_: bool) -> None:
    _table(docs, json_, ("KIND", "MODE", "UID", "GID", "SIZE", "PATH"),
           lambda d: (d["kind"], d["mode"], str(d["uid"]), str(d["gid"]), str(d["size"]),
                      d["path"]))  # fmt: skip


def _table(
    docs: list[dict[str, Any]],
    json_: bool,
    cols: tuple[str, ...],
    cells: Callable[[dict[str, Any]], tuple[str, ...]],
) -> None:
    if json_:
        emit_json(docs)
        return
    table = Listing(cols)
    for d in docs:
        table.add(*cells(d))
    render.print_table(table)
