"""`vmvault copy`: copy recovery points to a second vault (docs/copies.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vmvault import documents
from vmvault.cli import render
from vmvault.cli.backups import queued
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, WaitOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out, size
from vmvault.services.copies import CopyReport


def copy(
    from_vault: Annotated[str, typer.Option("--from", help="The vault the points are read from.")],
    to_vault: Annotated[str, typer.Option("--to", help="The vault that receives the copies.")],
    vms: Annotated[
        list[str] | None, typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every VM with points in the --from vault.")
    ] = False,
    wait: WaitOpt = True,
    json_: JsonOpt = False,
) -> None:
    """Copy every point of the VMs that --from holds and --to does not (oldest first): one
    copy job per VM; only the chunks --to lacks are sent; each copy is verified in --to."""
    refs = vms or []
    if not wait:
        queued(services().queue.submit_copy(from_vault, to_vault, refs, all_), json_)
    with live_progress(not json_):
        outcomes = services().copies.copy(from_vault, to_vault, refs, all_)
    if json_:
        emit_json(
            [
                documents.job_doc(o.job) | {"copy": report_doc(o.result) if o.result else None}
                for o in outcomes
            ]
        )
    else:
        for o in outcomes:
            render.job_result_line(o.job)
            if o.result is not None:
                out.print(f"  {summary(o.result)}", markup=False)
    raise typer.Exit(render.exit_code_for([o.job for o in outcomes]))


def summary(r: CopyReport) -> str:
    if not r.points:
        line = f"nothing to copy: '{r.target}' holds every point of '{r.source}' ({r.already})"
    else:
        line = (
            f"{len(r.points)} point(s) copied to '{r.target}' ({r.mode}): "
            f"{r.chunks_sent} chunk(s) sent, {r.chunks_present} already there, "
            f"{size(r.bytes_sent)} sent"
        )
    if r.pruned:
        line += f"; retention removed {len(r.pruned)} point(s) from '{r.target}'"
    return line


def report_doc(r: CopyReport) -> dict[str, Any]:
    return {
        "from": r.source,
        "to": r.target,
        "mode": r.mode,
        "points": r.points,
        "points_already_there": r.already,
        "chunks_sent": r.chunks_sent,
        "chunks_present": r.chunks_present,
        "bytes_sent": r.bytes_sent,
        "seconds": round(r.seconds, 3),
        "pruned": r.pruned,
        "cleaned_up": r.cleaned,
    }
