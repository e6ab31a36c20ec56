"""The ``vmvault`` command: parse → service → render, nothing else.

Exit codes: 0 success, 1 failure, 2 bad usage/input, 3 completed with warnings.
Errors are printed as ``error CODE: message`` and ``remedy: …`` on stderr; a traceback is
shown only for a bug, and only with ``VMVAULT_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import typer
import typer.main

from vmvault import documents
from vmvault.cli import (
    audit_trail,
    backups,
    coercion,
    copies,
    dashboard,
    points,
    policies,
    process,
    remote,
    remote_jobs,
    render,
    restores,
)
from vmvault.cli.access import audit_app, token_app
from vmvault.cli.approvals import approvals_app, held
from vmvault.cli.context import services
from vmvault.cli.lab import lab_app
from vmvault.cli.notify import notify_app
from vmvault.cli.options import ExcludeDiskOpt, JsonOpt, VaultOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.cli.vaults import host_app, vault_app
from vmvault.domain.approval import HeldForApproval
from vmvault.domain.errors import InternalError, VmvaultError
from vmvault.domain.inputs import check_encoded
from vmvault.domain.job import Job, JobState, JobType, parse_since
from vmvault.domain.vm import VmState

coercion.install()  # str/int parameters without pydantic (see the module)

#: What discovery found, in the order ``discover`` prints it (domain.inventory's summary).
DISCOVERED = ("new", "changed", "unchanged", "vanished")
#: The jobs ``vm show`` lists (as many as the local history gives).
VM_HISTORY = 20

app = typer.Typer(
    help="vmvault: backups of libvirt KVM/QEMU virtual machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
vm_app = typer.Typer(help="VMs found by discovery.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs: every operation vmvault ran.", no_args_is_help=True)


@app.callback()
def root(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="VMVAULT_SERVER",
            metavar="URL",
            help="Run the command against this vmvault server's REST API "
            "(https://HOST:8470); docs/server.md, 'Remote CLI'.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="VMVAULT_TOKEN",
            metavar="TOKEN",
            show_default=False,
            help="API token for --server (or VMVAULT_TOKEN_FILE: a file holding it).",
        ),
    ] = None,
) -> None:
    """vmvault: backups of libvirt KVM/QEMU virtual machines."""
    remote.configure(server, token, _env_path("VMVAULT_TOKEN_FILE"), _env_path("VMVAULT_SERVER_CA"))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


app.add_typer(vault_app, name="vault")
app.add_typer(host_app, name="host")
app.add_typer(vm_app, name="vm")
app.add_typer(jobs_app, name="jobs")
app.add_typer(lab_app, name="lab")
app.add_typer(notify_app, name="notify")
app.add_typer(points.points_app, name="points")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_app, name="approvals")
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
app.command()(dashboard.dashboard)


# --- discovery, VMs, registration --------------------------------------------------------------


@app.command()
def discover(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Find the VMs of every host in the vault's location (a discovery job)."""
    if remote.active():
        doc = remote.post("/vms/discover", {"vault": vault})
        labels = (
            {} if json_ else {v["uuid"]: render.label(v) for v in remote.get("/vms", vault=vault)}
        )
    else:
        outcome = services().inventory.discover(vault)
        doc = documents.discovery_doc(outcome)
        r = outcome.result
        labels = {v.uuid: v.label for v in (r.new + r.changed + r.vanished)} if r else {}
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
        if doc.get("result") is not None:
            found = doc["result"]
            out.print(", ".join(f"{len(found[k])} {k}" for k in DISCOVERED))
            for kind in ("new", "changed", "vanished"):
                for uuid in found[kind]:
                    out.print(f"  {kind:8} {labels.get(uuid, uuid)} ({uuid})", markup=False)
    raise typer.Exit(render.exit_code_for([doc]))


@vm_app.command("list")
def vm_list(
    state: Annotated[VmState | None, typer.Option(help="Only VMs in this state.")] = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List the VMs of the vault's location (vanished ones are marked)."""
    if remote.active():
        docs = remote.get("/vms", vault=vault, state=state.value if state else None)
    else:
        docs = [documents.vm_doc(vm) for vm in services().inventory.list_vms(vault, state)]
    if json_:
        emit_json(docs)
    else:
        out.print(render.vm_table(docs))


@vm_app.command("show")
def vm_show(vm: str, json_: JsonOpt = False) -> None:
    """Show one VM: disks, NICs, agent, state, recent jobs."""
    if remote.active():
        doc = remote.get(f"/vms/{quote(vm, safe='/')}")
        doc["recent_jobs"] = remote.get("/jobs", vm=doc["uuid"], limit=VM_HISTORY)
    else:
        item = services().inventory.find(vm)
        jobs = services().inventory.history(item)
        doc = documents.vm_doc(item) | {"recent_jobs": [documents.job_doc(j) for j in jobs]}
    if json_:
        emit_json(doc)
        return
    for key in ("name", "uuid", "host", "host_uri", "group", "state", "power_state", "vault"):
        out.print(f"{key:14} {doc[key]}", markup=False)
    out.print(f"{'agent':14} {render.agent(doc)}", markup=False)
    if doc["vanished_at"]:
        out.print(f"{'vanished_at':14} {doc['vanished_at']}")
    reason = doc["cluster_managed_reason"]
    out.print(f"{'cluster-managed':14} {f'yes: {reason}' if reason else 'no'}", markup=False)
    for d in doc["disks"]:
        extra = f"  excluded: {d['reason']}" if d["excluded"] else ""
        out.print(
            f"disk {d['target']:6} {d['type']}/{d['device']}/{d['format']}  {d['path']}{extra}",
            markup=False,
        )
    for n in doc["nics"]:
        out.print(f"nic  {n['mac']}  {n['type']}:{n['source']}  {n['model']}", markup=False)
    for w in doc["warnings"]:
        out.print(f"warning: {w}", markup=False)
    if doc["recent_jobs"]:
        out.print(render.job_table(doc["recent_jobs"]))


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
    excludes, includes = exclude_disk or [], include_disk or []
    if remote.active():
        body = {"exclude_disks": excludes, "include_disks": includes}
        doc = remote.patch(f"/vms/{quote(vm, safe='/')}", body)
    else:
        doc = documents.vm_doc(services().inventory.update_vm(vm, excludes, includes))
    if json_:
        emit_json(doc)
        return
    excluded = ", ".join(doc["excluded_disks"]) or "none"
    out.print(f"{render.label(doc)}: disks excluded by user: {excluded}", markup=False)


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
    if remote.active():
        body = {"vms": vms, "vault": vault, "crash_consistent": crash_consistent}
        jobs = remote.post("/vms/register", body | {"exclude_disks": exclude_disk or []})
        owners = [
            None
            if json_ or j["error_code"]
            else remote.get(f"/vms/{j['vm']}")["cluster_managed_reason"]
            for j in jobs
        ]
    else:
        outcomes = services().inventory.register(
            vault, vms, allow_crash_consistent=crash_consistent, exclude_disks=exclude_disk or []
        )
        jobs = [documents.job_doc(o.job) for o in outcomes]
        owners = [o.result.cluster_managed if o.result else None for o in outcomes]
    if json_:
        emit_json(jobs)
    else:
        for job, owner in zip(jobs, owners, strict=True):
            render.job_result_line(job)
            if owner:
                out.print(
                    f"  cluster-managed ({owner}): vmvault never pauses, "
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
    if remote.active():
        docs = remote.get_all(
            "/jobs",
            type=type_.value if type_ else None,
            state=status.value if status else None,
            since=since,
            vm=vm,
        )
    else:
        window = parse_since(since) if since is not None else None
        vm_uuid = services().inventory.find(vm).uuid if vm is not None else None
        jobs = services().jobs.list_jobs(type_, status, window, vm_uuid)
        docs = [documents.job_doc(j) for j in jobs]
    if json_:
        emit_json(docs)
    else:
        out.print(render.job_table(docs))


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


@app.command()
def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the REST API; beyond loopback it speaks HTTPS only; "
            "default VMVAULT_LISTEN or 127.0.0.1:8470."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Jobs run at once (default VMVAULT_JOB_WORKERS, 2).")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain) to serve HTTPS with (VMVAULT_TLS_CERT)."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="Its PEM private key (VMVAULT_TLS_KEY).")
    ] = None,
) -> None:
    """Run the server: scheduler, job workers and the REST API, until SIGTERM/SIGINT.

    Settings and the TLS certificate are checked and the port bound before
    anything starts: a bad setting or certificate exits 2, a port in use 1.
    Beyond loopback the API is HTTPS only: with --tls-cert/--tls-key, or a
    self-signed pair kept in VMVAULT_HOME/tls (its fingerprint is logged).
    Then jobs a dead process left running are closed as failed and their VMs
    cleaned up; queued jobs ('--no-wait', the API, the scheduler) then run
    here. A crashed scheduler or worker is restarted; after 6 crashes in 300 s
    the server stops with exit 1. GET /api/v1/health answers 503 while a
    component is down."""
    import logging

    from vmvault.jobs.server import serve as run_server

    remote.refuse("it runs the server itself: its workers and libvirt connections are local")

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if workers is not None and not 1 <= workers <= 32:
        raise typer.BadParameter("--workers must be between 1 and 32")
    absolute = [p.absolute() if p else None for p in (tls_cert, tls_key)]
    run_server(services().settings, listen, workers, *absolute)


@app.command("errors")
def errors_cmd(
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/errors.md.")] = False,
) -> None:
    """List every error code vmvault can report, with its message and remedy."""
    rows = remote.get("/errors") if remote.active() else documents.error_catalog()
    if markdown:
        sys.stdout.write(documents.catalog_markdown(rows))
        return
    if json_:
        emit_json(rows)
        return
    for row in rows:
        out.print(f"[bold]{row['code']}[/] ({row['kind']})")
        out.print(f"  {row['message']}", markup=False)
        out.print(f"  remedy: {row['remedy']}", markup=False)


def main(argv: list[str] | None = None) -> None:
    """The ``vmvault`` command (``argv``: the arguments, default ``sys.argv[1:]``); a command
    that changes something is written to the audit log with its exit code
    (:mod:`vmvault.cli.audit_trail`)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        _command(args)
    except SystemExit as exc:
        audit_trail.record(_tree, remote.command_args(args), exc.code)
        raise
    audit_trail.record(_tree, remote.command_args(args), 0)


def _tree() -> object:
    """The click command tree of :data:`app` (built only when a command is recorded)."""
    return typer.main.get_command(app)


def _command(args: list[str]) -> None:
    try:
        for arg in args:
            check_encoded(arg, "argument")
        words = remote.command_args(args)
        remote.name_commands(lambda: audit_trail.describe(_tree(), words))
        app(args=args, prog_name="vmvault")
    except VmvaultError as exc:
        sys.exit(render.error(exc))
    except HeldForApproval as exc:  # not done: waits for an admin (docs/approvals.md)
        sys.exit(held(exc))
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
