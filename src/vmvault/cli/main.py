"""The ``vmvault`` command: parse → service → render, nothing else.

Exit codes: 0 success, 1 failure, 2 bad usage/input, 3 completed with warnings.
Errors are printed as ``error CODE: message`` and ``remedy: …`` on stderr; a traceback is
shown only for a bug, and only with ``VMVAULT_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from vmvault import documents
from vmvault.cli import backups, copies, points, policies, process, render, restores
from vmvault.cli.context import services
from vmvault.cli.lab import lab_app
from vmvault.cli.options import ExcludeDiskOpt, JsonOpt, VaultOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.cli.vaults import host_app, vault_app
from vmvault.domain.errors import InternalError, VmvaultError
from vmvault.domain.inputs import check_encoded
from vmvault.domain.job import Job, JobState, JobType, parse_since
from vmvault.domain.vm import VmState

app = typer.Typer(
    help="vmvault: backups of libvirt KVM/QEMU virtual machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
vm_app = typer.Typer(help="VMs found by discovery.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs: every operation vmvault ran.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")
app.add_typer(host_app, name="host")
app.add_typer(vm_app, name="vm")
app.add_typer(jobs_app, name="jobs")
app.add_typer(lab_app, name="lab")
app.add_typer(points.points_app, name="points")
app.command()(backups.backup)
app.command()(copies.copy)
app.command()(restores.restore)
app.command("restore-test")(restores.restore_test)
app.command()(points.verify)
app.command()(points.gc)
app.add_typer(policies.policy_app, name="policy")
app.add_typer(policies.protection_app, name="protection")
app.command()(policies.protect)
app.command()(policies.unregister)
app.command()(policies.dashboard)


# --- discovery, VMs, registration --------------------------------------------------------------


@app.command()
def discover(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Find the VMs of every host in the vault's location (a discovery job)."""
    outcome = services().inventory.discover(vault)
    if json_:
        emit_json(documents.discovery_doc(outcome))
    else:
        render.job_result_line(outcome.job)
        if outcome.result is not None:
            r = outcome.result
            out.print(r.summary())
            for label, vms in (("new", r.new), ("changed", r.changed), ("vanished", r.vanished)):
                for vm in vms:
                    out.print(f"  {label:8} {vm.label} ({vm.uuid})", markup=False)
    raise typer.Exit(render.exit_code_for([outcome.job]))


@vm_app.command("list")
def vm_list(
    state: Annotated[VmState | None, typer.Option(help="Only VMs in this state.")] = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List the VMs of the vault's location (vanished ones are marked)."""
    vms = services().inventory.list_vms(vault, state)
    if json_:
        emit_json([documents.vm_doc(vm) for vm in vms])
    else:
        out.print(render.vm_table(vms))


@vm_app.command("show")
def vm_show(vm: str, json_: JsonOpt = False) -> None:
    """Show one VM: disks, NICs, agent, state, recent jobs."""
    item = services().inventory.find(vm)
    jobs = services().inventory.history(item)
    doc = documents.vm_doc(item) | {"recent_jobs": [documents.job_doc(j) for j in jobs]}
    if json_:
        emit_json(doc)
        return
    for key in ("name", "uuid", "host", "host_uri", "group", "state", "power_state", "vault"):
        out.print(f"{key:14} {doc[key]}", markup=False)
    agent = item.agent_version or ("channel" if item.agent_channel else "none")
    out.print(f"{'agent':14} {agent}", markup=False)
    if item.vanished_at:
        out.print(f"{'vanished_at':14} {doc['vanished_at']}")
    cluster = f"yes: {item.cluster_managed}" if item.cluster_managed else "no"
    out.print(f"{'cluster-managed':14} {cluster}", markup=False)
    for d in item.effective_disks:
        extra = f"  excluded: {d.reason}" if d.excluded else ""
        out.print(
            f"disk {d.target:6} {d.type}/{d.device}/{d.format}  {d.path}{extra}", markup=False
        )
    for n in item.nics:
        out.print(f"nic  {n.mac}  {n.type}:{n.source}  {n.model}", markup=False)
    for w in item.registration_warnings:
        out.print(f"warning: {w}", markup=False)
    if jobs:
        out.print(render.job_table(jobs))


@vm_app.command("update")
def vm_update(
    vm: str,
    exclude_disk: ExcludeDiskOpt = None,
    include_disk: Annotated[
        list[str] | None,
        typer.Option(
            "--include-disk", help="Back this disk up again (target, repeatable): a full read."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change which disks of a VM its backups leave out (from its next backup on)."""
    item = services().inventory.update_vm(vm, exclude_disk or [], include_disk or [])
    if json_:
        emit_json(documents.vm_doc(item))
        return
    excluded = ", ".join(item.excluded_targets) or "none"
    out.print(f"{item.label}: disks excluded by user: {excluded}", markup=False)


@app.command()
def register(
    vms: Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")],
    crash_consistent: Annotated[
        bool,
        typer.Option(
            "--crash-consistent",
            help="Accept a VM whose guest agent is missing or silent (crash-consistent only).",
        ),
    ] = False,
    exclude_disk: ExcludeDiskOpt = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Register VMs with the vault: one register job per VM."""
    outcomes = services().inventory.register(
        vault, vms, allow_crash_consistent=crash_consistent, exclude_disks=exclude_disk or []
    )
    jobs = [o.job for o in outcomes]
    if json_:
        emit_json([documents.job_doc(j) for j in jobs])
    else:
        for o in outcomes:
            render.job_result_line(o.job)
            if o.result is not None and o.result.cluster_managed:
                out.print(
                    f"  cluster-managed ({o.result.cluster_managed}): vmvault never pauses, "
                    "shuts off, undefines or replaces it",
                    markup=False,
                )
    raise typer.Exit(render.exit_code_for(jobs))


# --- jobs ----------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(
    type_: Annotated[JobType | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    status: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs created within, e.g. 24h.")] = None,
    vm: Annotated[str | None, typer.Option(help="Only jobs of this VM.")] = None,
    json_: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    window = parse_since(since) if since is not None else None
    vm_uuid = services().inventory.find(vm).uuid if vm is not None else None
    jobs = services().jobs.list_jobs(type_, status, window, vm_uuid)
    if json_:
        emit_json([documents.job_doc(j) for j in jobs])
    else:
        out.print(render.job_table(jobs))


@jobs_app.command("show")
def jobs_show(job_id: int, json_: JsonOpt = False) -> None:
    """Show one job with its log."""
    job, log = services().jobs.show(job_id)
    doc = documents.job_doc(job, log)
    if json_:
        emit_json(doc)
        return
    keys = ("id", "type", "state", "vault", "vm_name", "vm", "origin", "started_at", "ended_at")
    for key in keys:
        out.print(f"{key:11} {doc[key] if doc[key] is not None else '-'}", markup=False)
    if job.parent_id is not None:
        out.print(f"{'set job':11} {job.parent_id}")
    if job.type is JobType.BACKUP_SET:
        for child in sorted(services().jobs.list_jobs(parent_id=job.id), key=lambda j: j.id):
            line = f"job {child.id} {child.vm_name}: {child.state.value}"
            out.print(f"{'child':11} {line} {child.error_code or ''}".rstrip(), markup=False)
    if job.duration is not None:
        out.print(f"{'duration':11} {job.duration.total_seconds():.1f}s")
    for w in job.warnings:
        out.print(f"warning    {w}", markup=False)
    if job.error_code:
        out.print(f"{'error':11} {job.error_code}: {job.message}", markup=False)
        out.print(f"{'remedy':11} {job.remedy}", markup=False)
    out.print("log:")
    for line in log:
        out.print(f"  {line}", markup=False)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, json_: JsonOpt = False) -> None:
    """Cancel a running job; it stops within seconds and leaves no trace."""
    job = services().jobs.cancel(job_id)
    if json_:
        emit_json(documents.job_doc(job))
    else:
        out.print(f"job {job.id} {job.type.value}: {job.state.value}")


@jobs_app.command("wait")
def jobs_wait(
    job_id: int,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Wait for a job to end (with a progress bar on a terminal); exit code as the job's."""
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
    if json_:
        emit_json(documents.job_doc(job))
    else:
        render.job_result_line(job)
    if not job.state.final:
        raise typer.Exit(render.EXIT_FAILED)
    raise typer.Exit(render.exit_code_for([job]))


@app.command()
def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the REST API, loopback only (the API has no authentication yet); "
            "default VMVAULT_LISTEN or 127.0.0.1:8470."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Jobs run at once (default VMVAULT_JOB_WORKERS, 2).")
    ] = None,
) -> None:
    """Run the server: scheduler, job workers and the REST API, until SIGTERM/SIGINT.

    Settings are checked and the port bound before anything starts: a bad
    setting exits 2, a port in use 1. Then jobs a dead process left running
    are closed as failed and their VMs cleaned up; queued jobs ('--no-wait',
    the API, the scheduler) then run here. A crashed scheduler or worker is
    restarted; after 6 crashes in 300 s the server stops with exit 1.
    GET /api/v1/health answers 503 while a component is down."""
    import logging

    from vmvault.jobs.server import serve as run_server

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if workers is not None and not 1 <= workers <= 32:
        raise typer.BadParameter("--workers must be between 1 and 32")
    run_server(services().settings, listen, workers)


@app.command("errors")
def errors_cmd(
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/errors.md.")] = False,
) -> None:
    """List every error code vmvault can report, with its message and remedy."""
    if markdown:
        sys.stdout.write(documents.catalog_markdown())
        return
    rows = documents.error_catalog()
    if json_:
        emit_json(rows)
        return
    for row in rows:
        out.print(f"[bold]{row['code']}[/] ({row['kind']})")
        out.print(f"  {row['message']}", markup=False)
        out.print(f"  remedy: {row['remedy']}", markup=False)


def main(argv: list[str] | None = None) -> None:
    """The ``vmvault`` command (``argv``: the arguments, default ``sys.argv[1:]``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        for arg in args:
            check_encoded(arg, "argument")
        app(args=args, prog_name="vmvault")
    except VmvaultError as exc:
        sys.exit(render.error(exc))
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("VMVAULT_DEBUG"):
            traceback.print_exc()
        sys.exit(render.error(InternalError(f"{type(exc).__name__}: {exc}")))


def run() -> None:
    """The console script: :func:`main` in a process set up and ended by
    :mod:`vmvault.cli.process`."""
    process.start()
    try:
        main()
    except SystemExit as exc:
        process.leave(exc.code)
    process.leave(0)
