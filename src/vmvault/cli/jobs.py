"""``vmvault jobs …``: every operation vmvault ran — list, show (with its log), cancel, wait."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from vmvault import documents
from vmvault.cli import remote, remote_jobs, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, LimitOpt, OffsetOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.domain.inputs import check_page
from vmvault.domain.job import Job, JobState, JobType, parse_since

#: ``jobs list``'s page unless ``--limit`` says: the 500 it always listed (scripts read it).
JOBS_PAGE = 500

jobs_app = typer.Typer(help="Jobs: every operation vmvault ran.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    type_: Annotated[JobType | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    status: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs created within, e.g. 24h.")] = None,
    vm: Annotated[str | None, typer.Option(help="Only jobs of this VM.")] = None,
    limit: LimitOpt = JOBS_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """List jobs, newest first, a page at a time."""
    check_page(limit, offset)
    if remote.reads():
        docs, total = remote.page(
            "/jobs",
            type=type_.value if type_ else None,
            state=status.value if status else None,
            since=since,
            vm=vm,
            limit=limit,
            offset=offset,
        )
    else:
        window = parse_since(since) if since is not None else None
        vm_uuid = services().inventory.find(vm).uuid if vm is not None else None
        jobs = services().jobs.list_jobs(type_, status, window, vm_uuid, limit=limit, offset=offset)
        total = services().jobs.count_jobs(type_, status, window, vm_uuid)
        docs = [documents.job_doc(j) for j in jobs]
    render.listing(docs, offset, total, json_, render.job_table)


@jobs_app.command("show")
def jobs_show(job_id: int, json_: JsonOpt = False) -> None:
    """Show one job with its log."""
    if remote.active():
        doc = remote.get(f"/jobs/{job_id}")
    else:
        doc = documents.job_doc(*services().jobs.show(job_id))
    if json_:
        emit_json(doc)
        return
    keys = ("id", "type", "state", "vault", "vm_name", "vm", "origin", "started_at", "ended_at")
    for key in keys:
        out.print(f"{key:11} {doc[key] if doc[key] is not None else '-'}", markup=False)
    if doc["parent"] is not None:
        out.print(f"{'set job':11} {doc['parent']}")
    if doc["type"] == JobType.BACKUP_SET.value:
        for child in sorted(_children(job_id), key=lambda j: j["id"]):
            line = f"job {child['id']} {child['vm_name']}: {child['state']}"
            out.print(f"{'child':11} {line} {child['error_code'] or ''}".rstrip(), markup=False)
    if doc["duration_s"] is not None:
        out.print(f"{'duration':11} {doc['duration_s']:.1f}s")
    for w in doc["warnings"]:
        out.print(f"warning    {w}", markup=False)
    if doc["error_code"]:
        out.print(f"{'error':11} {doc['error_code']}: {doc['message']}", markup=False)
        out.print(f"{'remedy':11} {doc['remedy']}", markup=False)
    out.print("log:")
    for line in doc["log"]:
        out.print(f"  {line}", markup=False)


def _children(set_job: int) -> list[dict[str, Any]]:
    """The job documents of a backup set's jobs (the API lists them among all jobs)."""
    if remote.active():
        return [j for j in remote.get_all("/jobs") if j["parent"] == set_job]
    return [documents.job_doc(j) for j in services().jobs.list_jobs(parent_id=set_job)]


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, json_: JsonOpt = False) -> None:
    """Cancel a running job; it stops within seconds and leaves no trace."""
    if remote.active():
        doc = remote.post(f"/jobs/{job_id}/cancel")
    else:
        doc = documents.job_doc(services().jobs.cancel(job_id))
    if json_:
        emit_json(doc)
    else:
        out.print(f"job {doc['id']} {doc['type']}: {doc['state']}")


@jobs_app.command("wait")
def jobs_wait(
    job_id: int,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Wait for a job to end (with a progress bar on a terminal); exit code as the job's."""
    if remote.active():
        doc = remote.get(f"/jobs/{job_id}")
        if doc["state"] == JobState.QUEUED.value and not json_:
            render.err.print(f"job {job_id} is queued: 'vmvault serve' runs it", markup=False)
        _waited(remote_jobs.wait([doc], not json_, timeout, cancel=False)[0], json_)
    observers = services().runner.observers
    noted = False

    def update(job: Job) -> None:
        nonlocal noted
        if job.state is JobState.QUEUED and not noted and not json_:
            render.err.print(f"job {job.id} is queued: 'vmvault serve' runs it", markup=False)
            noted = True
        for observe in observers:
            observe(job)

    with live_progress(not json_):
        job = services().jobs.wait(job_id, on_update=update, timeout=timeout)
    _waited(documents.job_doc(job), json_)


def _waited(doc: dict[str, Any], json_: bool) -> NoReturn:
    """The end of ``jobs wait``: the job, and its exit code (1 when it has not ended)."""
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
    if not JobState(doc["state"]).final:
        raise typer.Exit(render.EXIT_FAILED)
    raise typer.Exit(render.exit_code_for([doc]))
