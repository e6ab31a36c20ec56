"""`vmvault copy`: copy recovery points to a second vault (docs/copies.md)."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from vmvault import documents, outcomes
from vmvault.cli import remote, remote_jobs, render
from vmvault.cli.backups import queued
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, WaitOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out, size


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
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        body = {"from_vault": from_vault, "to_vault": to_vault, "vms": refs, "all": all_}
        posted = remote.post("/copies", body)
        if not wait:
            queued(posted, json_)
        jobs = remote_jobs.wait(posted, not json_)
        _copied([j | remote_jobs.outcome(j, outcomes.copy_doc(None)) for j in jobs], json_)
    if not wait:
        queued(services().queue.submit_copy(from_vault, to_vault, refs, all_), json_)
    with live_progress(not json_):
        done = services().copies.copy(from_vault, to_vault, refs, all_)
    _copied([documents.job_doc(o.job) | outcomes.copy_doc(o.result) for o in done], json_)


def _copied(docs: list[dict[str, Any]], json_: bool) -> NoReturn:
    """The copy jobs' documents, each with its report (vmvault/outcomes.py)."""
    if json_:
        emit_json(docs)
    else:
        for doc in docs:
            render.job_result_line(doc)
            if doc["copy"] is not None:
                out.print(f"  {summary(doc['copy'])}", markup=False)
    raise typer.Exit(render.exit_code_for(docs))


def summary(r: dict[str, Any]) -> str:
    """A copy report (:func:`vmvault.outcomes.copy_doc`) in one line."""
    if not r["points"]:
        line = (
            f"nothing to copy: '{r['to']}' holds every point of '{r['from']}' "
            f"({r['points_already_there']})"
        )
    else:
        line = (
            f"{len(r['points'])} point(s) copied to '{r['to']}' ({r['mode']}): "
            f"{r['chunks_sent']} chunk(s) sent, {r['chunks_present']} already there, "
            f"{size(r['bytes_sent'])} sent"
        )
    if r["pruned"]:
        line += f"; retention removed {len(r['pruned'])} point(s) from '{r['to']}'"
    return line
