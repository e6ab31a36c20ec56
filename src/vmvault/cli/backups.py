"""`vmvault backup`: back VMs up now, in the foreground or queued for the server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, RequireOpt, VaultOpt, WaitOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out, size
from vmvault.documents import point_doc
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import parse_instant
from vmvault.domain.job import Job


def backup(
    vms: Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")],
    wait: WaitOpt = True,
    keep_until: Annotated[
        str | None,
        typer.Option(
            help="Retention leaves the point alone until then, and in an immutable vault it "
            "cannot be deleted before (its retain-until; YYYY-MM-DD[THH:MM])."
        ),
    ] = None,
    require: RequireOpt = None,
    vault: VaultOpt = None,
    as_set: Annotated[
        bool,
        typer.Option(
            "--set",
            help="Back the VMs up as one all-or-nothing set: one point in time for all, a "
            "point for every VM or for none (docs/sets.md).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Back up VMs now: one backup job per VM (full the first time, then incremental)."""
    until = parse_instant(keep_until, "--keep-until") if keep_until is not None else None
    if as_set and require is not None:  # the children's level is each VM's policy's
        raise InvalidInput(
            "a backup set takes each VM's policy's requirement, not its own",
            what="--require with --set",
        )
    if remote.active():  # queued on the server: its jobs, as '--no-wait' prints them here
        if wait:
            remote.refuse_option("in the foreground (add --no-wait)")
        body = {"vms": vms, "vault": vault, "set": as_set, "require": require}
        queued(remote.post("/backups", body | {"keep_until": until and until.isoformat()}), json_)
    if as_set:
        backup_set(vms, wait, until, vault, json_)
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


def backup_set(
    vms: list[str], wait: bool, until: datetime | None, vault: str | None, json_: bool
) -> NoReturn:
    """``backup --set``: one set job, a child backup job per VM."""
    if not wait:
        queued([services().queue.submit_backup_set(vault, vms, keep_until=until)], json_)
    with live_progress(not json_):
        outcome = services().backup_sets.backup_set(vault, vms, keep_until=until)
    result = outcome.result
    if json_:
        doc = documents.job_doc(outcome.job) | {
            "set_id": result.set_id if result else None,
            "window_ms": result.window_ms if result else None,
            "children": [documents.job_doc(c.job) for c in outcome.children],
            "points": [point_doc(p) for p in result.points] if result else [],
        }
        emit_json(doc)
    else:
        render.job_result_line(outcome.job)
        for child in outcome.children:
            render.job_result_line(child.job)
        if result is not None:
            out.print(
                f"  set {result.set_id}: {len(result.points)} points at "
                f"{result.instant.isoformat(timespec='milliseconds')}, set window "
                f"{result.window_ms} ms (first freeze to last thaw)",
                markup=False,
            )
            for p in result.points:
                out.print(f"  point {p.id} {p.vm_name}: {p.consistency.value}", markup=False)
    raise typer.Exit(render.exit_code_for([outcome.job]))


def queued(jobs: Sequence[Job | dict[str, Any]], json_: bool) -> NoReturn:
    """Report jobs queued for the server (objects or documents) and exit 0."""
    docs = [render.as_doc(j) for j in jobs]
    if json_:
        emit_json(docs)
    else:
        for j in docs:
            out.print(
                f"job {j['id']} queued: {j['type']} {j['vm_name'] or j['vault']} "
                f"(runs in 'vmvault serve'; watch it with 'vmvault jobs wait {j['id']}')",
                markup=False,
            )
    raise typer.Exit(render.EXIT_OK)
