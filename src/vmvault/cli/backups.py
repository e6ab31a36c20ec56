"""`vmvault backup`: back VMs up now, in the foreground or queued for the server."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from vmvault import documents
from vmvault.cli import render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, RequireOpt, VaultOpt, WaitOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out, size
from vmvault.documents import point_doc
from vmvault.domain.inputs import parse_instant
from vmvault.domain.job import Job


def backup(
    vms: Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")],
    wait: WaitOpt = True,
    keep_until: Annotated[
        str | None,
        typer.Option(help="Retention leaves the point alone until then (YYYY-MM-DD[THH:MM])."),
    ] = None,
    require: RequireOpt = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Back up VMs now: one backup job per VM (full the first time, then incremental)."""
    until = parse_instant(keep_until, "--keep-until") if keep_until is not None else None
    if not wait:
        queued(services().queue.submit_backup(vault, vms, until, require=require), json_)
    with live_progress(not json_):
        outcomes = services().backups.backup(vault, vms, keep_until=until, require=require)
    jobs = [o.job for o in outcomes]
    if json_:
        emit_json(
            [
                documents.job_doc(o.job) | {"point": point_doc(o.result) if o.result else None}
                for o in outcomes
            ]
        )
    else:
        for o in outcomes:
            render.job_result_line(o.job)
            if o.result is not None:
                p = o.result
                out.print(
                    f"  point {p.id}: {p.consistency.value} ({p.method.value}, frozen "
                    f"{p.frozen_ms} ms, paused {p.paused_ms} ms), {size(p.bytes_logical)} logical, "
                    f"{size(p.bytes_read)} read, {size(p.bytes_new)} new",
                    markup=False,
                )
        for o in outcomes:  # retention of protected VMs
            if o.prune is not None:
                render.job_result_line(o.prune.job)
    raise typer.Exit(render.exit_code_for(jobs))


def queued(jobs: list[Job], json_: bool) -> NoReturn:
    """Report jobs queued for the server and exit 0."""
    if json_:
        emit_json([documents.job_doc(j) for j in jobs])
    else:
        for j in jobs:
            out.print(
                f"job {j.id} queued: {j.type.value} {j.vm_name or j.vault} "
                f"(runs in 'vmvault serve'; watch it with 'vmvault jobs wait {j.id}')",
                markup=False,
            )
    raise typer.Exit(render.EXIT_OK)
