"""`vmvault restore` and `restore-test`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from vmvault import documents, outcomes
from vmvault.cli import remote, remote_jobs, render
from vmvault.cli.backups import queued
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, WaitOpt
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out, size
from vmvault.cli.set_restore import restore_set
from vmvault.domain.job import Job
from vmvault.domain.restore import RestoreMode
from vmvault.domain.restore_test import RestoreTestResult

if TYPE_CHECKING:
    from vmvault.services.restore import RestoreReport

FromVaultOpt = Annotated[
    str | None,
    typer.Option(
        "--from-vault",
        "--vault",
        help="Read the point from this vault (one holding it or a copy; default: its own).",
    ),
]


def restore(
    vm: Annotated[str | None, typer.Argument(help="The VM the point belongs to.")] = None,
    point: Annotated[str | None, typer.Option("--point", help="Recovery point id.")] = None,
    as_new: Annotated[
        str | None,
        typer.Option("--as-new", help="Define a new VM with this name (--set: name suffix)."),
    ] = None,
    disks_only: Annotated[
        bool, typer.Option("--disks-only", help="Write disk images + domain XML only.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite the VM itself with the point.")
    ] = False,
    directory: Annotated[
        str | None,
        typer.Option("--dir", help="Target directory (default: the host's default pool dir)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="--as-new: libvirt URI of the target host.")
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start the restored VM.")] = False,
    test: Annotated[
        bool,
        typer.Option("--test", help="--as-new: boot it isolated, check it, then remove it."),
    ] = False,
    keep_previous: Annotated[
        bool, typer.Option("--keep-previous", help="--replace: keep the displaced images.")
    ] = False,
    shutdown_timeout: Annotated[
        float,
        typer.Option(help="--replace: seconds of graceful shutdown before forcing it off."),
    ] = 60.0,
    fmt: Annotated[
        str, typer.Option("--format", help="--disks-only: qcow2 (default) or raw.")
    ] = "qcow2",
    overwrite: Annotated[bool, typer.Option(help="--disks-only: replace existing files.")] = False,
    instant: Annotated[
        bool,
        typer.Option(
            "--instant",
            help="--as-new/--replace: run the VM from the point's export at once, copy its "
            "disks to local storage while it runs, then pivot.",
        ),
    ] = False,
    wait: WaitOpt = True,
    from_vault: FromVaultOpt = None,
    set_id: Annotated[
        str | None,
        typer.Option("--set", help="Restore every point of this backup set (no VM, no --point)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Restore a VM from a recovery point (a restore job).

    --as-new NAME: a new VM (new name, uuid and MAC addresses).
    --replace: the VM itself, once its restored disks are verified.
    --disks-only: the disk images and the domain XML, nothing defined.
    --set ID: every VM of a backup set, --as-new SUFFIX (VM NAME-SUFFIX) or --disks-only.
    --instant: the VM runs from the vault within seconds; the job ends once its disks are
    local (pivoted).  --no-wait queues any restore for 'vmvault serve'.
    """
    if set_id is not None:
        if vm is not None or point is not None or replace or test or keep_previous or instant:
            raise typer.BadParameter(
                "--set restores a whole set: no VM, --point, --replace, --test or --instant"
            )
        if not wait:  # every target is checked before the first restore: in the foreground
            raise typer.BadParameter("--set restores in the foreground: no --no-wait")
        remote.refuse_option(
            "--set",
            "the API queues one restore at a time, while a set's targets are all checked "
            "before its first restore starts",
        )
        restore_set(set_id, as_new, disks_only, directory, host, start, fmt, overwrite,
                    from_vault, json_)  # fmt: skip
    if vm is None or point is None:
        raise typer.BadParameter("name the VM and --point (or a whole set with --set)")
    modes = [m for m, on in (("--as-new", as_new is not None), ("--disks-only", disks_only),
                             ("--replace", replace)) if on]  # fmt: skip
    if len(modes) != 1:
        raise typer.BadParameter("give exactly one of --as-new NAME, --disks-only, --replace")
    if start and test:
        raise typer.BadParameter("--start and --test exclude each other")
    if disks_only:
        if directory is None:
            raise typer.BadParameter("--disks-only needs --dir DIR")
        if start or test or host or keep_previous or instant:
            raise typer.BadParameter(
                "--disks-only defines no VM: no --start, --test, --host, --instant"
            )
        if remote.active():  # the server's directory: absolute only (the API refuses others)
            body: dict[str, Any] = {
                "vm": vm,
                "point": point,
                "mode": "disks-only",
                "directory": directory,
            }
            body |= {"format": fmt, "overwrite": overwrite, "from_vault": from_vault}
            [job] = remote_jobs.wait([remote.post("/restores", body)], not json_)
            _disks_result(job | remote_jobs.outcome(job, outcomes.disks_doc(None)), json_)
        _restore_disks(vm, point, directory, fmt, overwrite, from_vault, json_)
        return
    if test and replace:
        raise typer.BadParameter("--test boots a copy and removes it: use it with --as-new")
    if instant and test:
        raise typer.BadParameter("--instant goes with --as-new or --replace, not --test")
    mode = RestoreMode.REPLACE if replace else (RestoreMode.TEST if test else RestoreMode.AS_NEW)
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        body = {"vm": vm, "point": point, "mode": mode.value, "name": as_new}
        body |= {"directory": directory, "host": host, "start": start, "from_vault": from_vault}
        body |= {"keep_previous": keep_previous, "shutdown_timeout": shutdown_timeout}
        body |= {"instant": instant or None}
        posted = remote.post("/restores", body)
        if not wait:
            queued([posted], json_)
        _remote_restore(posted, json_)
    if not wait:
        options: dict[str, Any] = {"name": as_new, "directory": directory, "host": host}
        options |= {"start": start or None, "keep_previous": keep_previous or None}
        options |= {"instant": instant or None}
        submitted = services().queue.submit_restore(
            vm, point, mode.value, from_vault=from_vault, shutdown_timeout=shutdown_timeout,
            **options,
        )  # fmt: skip
        queued([submitted], json_)
    with live_progress(not json_):
        outcome = services().restores.restore(
            vm,
            point,
            mode,
            name=as_new,
            directory=directory,
            host=host,
            start=start,
            keep_previous=keep_previous,
            shutdown_timeout=shutdown_timeout,
            from_vault=from_vault,
            instant=instant,
        )
    _local_result(outcome.job, outcome.result, json_)


def restore_test(
    vm: Annotated[str, typer.Argument(help="The VM the point belongs to.")],
    point: Annotated[str, typer.Option("--point", help="Recovery point id.")],
    directory: Annotated[
        str | None,
        typer.Option("--dir", help="Where the test VM's disks go (default: the default pool dir)."),
    ] = None,
    wait: WaitOpt = True,
    from_vault: FromVaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Test a recovery point: boot it as a throw-away VM with its NICs down, wait for its
    agent and the file systems it had mounted, record the result on the point, remove it."""
    if directory is not None and (not wait or remote.active()):
        raise typer.BadParameter(
            "--dir is not kept for a queued test; the server uses the default pool dir"
        )
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        posted = remote.post("/restore-tests", {"vm": vm, "point": point, "from_vault": from_vault})
        if not wait:
            queued([posted], json_)
        _remote_restore(posted, json_)
    if not wait:
        queued([services().queue.submit_restore_test(vm, point, from_vault=from_vault)], json_)
    with live_progress(not json_):
        outcome = services().restores.restore_test(vm, point, directory, from_vault)
    _local_result(outcome.job, outcome.result, json_)


def _restore_disks(
    vm: str,
    point: str,
    directory: str,
    fmt: str,
    overwrite: bool,
    from_vault: str | None,
    json_: bool,
) -> None:
    with live_progress(not json_):
        outcome = services().points.restore_disks(
            vm, point, directory, fmt=fmt, overwrite=overwrite, from_vault=from_vault
        )
    _disks_result(documents.job_doc(outcome.job) | outcomes.disks_doc(outcome.result), json_)


def _disks_result(doc: dict[str, Any], json_: bool) -> NoReturn:
    """A disks-only restore job's document with its outcome (vmvault/outcomes.py)."""
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
        if "files" in doc:
            for d in doc["disks"]:
                out.print(
                    f"  {d['target']}: {d['path']} ({size(d['bytes_written'])} written in "
                    f"{d['seconds']:.2f}s)",
                    markup=False,
                )
            out.print(f"  domain XML: {doc['files'][-1]}", markup=False)
    raise typer.Exit(render.exit_code_for([doc]))


def _remote_restore(posted: dict[str, Any], json_: bool) -> NoReturn:
    """A restore (or restore test) queued on the server, waited for and printed as locally."""
    [job] = remote_jobs.wait([posted], not json_, with_log=json_)
    _restore_result(job | remote_jobs.outcome(job, outcomes.restore_doc(None)), json_)


def _local_result(job: Job, report: RestoreReport | None, json_: bool) -> NoReturn:
    log = services().jobs.show(job.id)[1] if json_ else None
    _restore_result(documents.job_doc(job, log) | outcomes.restore_doc(report), json_)


def _restore_result(doc: dict[str, Any], json_: bool) -> NoReturn:
    """A restore job's document (with its log for ``--json``) and the VM it restored or
    tested (vmvault/outcomes.py)."""
    if json_:
        emit_json(doc)
        raise typer.Exit(render.exit_code_for([doc]))
    render.job_result_line(doc)
    r = doc["result"]
    if r is not None:
        what = "tested as" if r["mode"] == RestoreMode.TEST.value else "restored as"
        out.print(f"  {what} {r['vm_name']} ({r['vm_uuid']})", markup=False)
        for d in r["disks"]:
            link = f" (link {d['link']})" if d["link"] else ""
            out.print(
                f"  {d['target']}: {d['path']}{link}, {size(d['bytes_written'])} in "
                f"{d['seconds']:.2f}s",
                markup=False,
            )
        for n in r["nics"]:
            state = "connected" if n["connected"] else f"disconnected: {n['problem']}"
            down = ", link down" if n["link_down"] and n["connected"] else ""
            out.print(f"  NIC {n['mac']} ({n['type']} {n['source']}): {state}{down}", markup=False)
        if r["boot_seconds"] is not None:
            out.print(f"  guest agent answered {r['boot_seconds']:.1f}s after start")
        if r.get("pivot_seconds") is not None:
            out.print(
                f"  instant: ran from export job {r['export_job']}, every disk local and "
                f"pivoted after {r['pivot_seconds']:.1f}s (export and overlays removed)"
            )
        if r["downtime_seconds"] is not None and r["started"]:
            out.print(f"  downtime {r['downtime_seconds']:.1f}s")
        for p in r["previous"]:
            out.print(f"  previous image kept: {p}", markup=False)
        if r["test"] is not None:
            out.print(f"  {RestoreTestResult.from_json(r['test']).summary}", markup=False)
    raise typer.Exit(render.exit_code_for([doc]))
