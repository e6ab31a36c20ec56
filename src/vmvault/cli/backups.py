"""`vmvault backup`: back VMs up now, in the foreground or queued for the server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from vmvault import documents, outcomes
from vmvault.cli import remote, remote_jobs, render
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
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        body = {"vms": vms, "vault": vault, "set": as_set, "require": require}
        docs = remote.post("/backups", body | {"keep_until": until and until.isoformat()})
        if not wait:
            queued(docs, json_)
        if as_set:
            [job] = remote_jobs.wait(docs, not json_)
            _set_result(job | remote_jobs.outcome(job, outcomes.set_doc(None)), json_)
        jobs, points, prunes = zip(*remote_jobs.backups(docs, not json_), strict=True)
        _result(list(jobs), list(points), list(prunes), json_)
    if as_set:
        backup_set(vms, wait, until, vault, json_)
    if not wait:
        queued(services().queue.submit_backup(vault, vms, until, require=require), json_)
    with live_progress(not json_):
        done = services().backups.backup(vault, vms, keep_until=until, require=require)
    _result(
        [documents.job_doc(o.job) for o in done],
        [point_doc(o.result) if o.result else None for o in done],
        [documents.job_doc(o.prune.job) if o.prune else None for o in done],
        json_,
    )


def _result(
    jobs: list[dict[str, Any]],
    points: list[dict[str, Any] | None],
    prunes: list[dict[str, Any] | None],
    json_: bool,
) -> NoReturn:
    """The backup jobs, the point each made and the retention job that ran after it (protected
    VMs): their documents, local or remote."""
    if json_:
        emit_json([j | {"point": p} for j, p in zip(jobs, points, strict=True)])
    else:
        for job, p in zip(jobs, points, strict=True):
            render.job_result_line(job)
            if p is not None:
                out.print(
                    f"  point {p['id']}: {p['consistency']} ({p['method']}, frozen "
                    f"{p['frozen_ms']} ms, paused {p['paused_ms']} ms), "
                    f"{size(p['bytes_logical'])} logical, {size(p['bytes_read'])} read, "
                    f"{size(p['bytes_new'])} new",
                    markup=False,
                )
        for prune in prunes:  # retention of protected VMs
            if prune is not None:
                render.job_result_line(prune)
    raise typer.Exit(render.exit_code_for(jobs))


def backup_set(
    vms: list[str], wait: bool, until: datetime | None, vault: str | None, json_: bool
) -> NoReturn:
    """``backup --set``: one set job, a child backup job per VM."""
    if not wait:
        queued([services().queue.submit_backup_set(vault, vms, keep_until=until)], json_)
    with live_progress(not json_):
        outcome = services().backup_sets.backup_set(vault, vms, keep_until=until)
    _set_result(documents.job_doc(outcome.job) | outcomes.set_doc(outcome), json_)


def _set_result(doc: dict[str, Any], json_: bool) -> NoReturn:
    """A set job's document with its outcome (vmvault/outcomes.py): children, points."""
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
        for child in doc["children"]:
            render.job_result_line(child)
        if doc["set_id"] is not None:
            instant = datetime.fromisoformat(doc["instant"]).isoformat(timespec="milliseconds")
            out.print(
                f"  set {doc['set_id']}: {len(doc['points'])} points at {instant}, set window "
                f"{doc['window_ms']} ms (first freeze to last thaw)",
                markup=False,
            )
            for p in doc["points"]:
                out.print(f"  point {p['id']} {p['vm_name']}: {p['consistency']}", markup=False)
    raise typer.Exit(render.exit_code_for([doc]))


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
