"""`vmvault restore` and `restore-test`."""

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
from vmvault.cli.set_restore import restore_set
from vmvault.domain.job import Job
from vmvault.domain.restore import RestoreMode
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
    """
    if set_id is not None:
        if vm is not None or point is not None or replace or test or keep_previous:
            raise typer.BadParameter(
                "--set restores a whole set: no VM, --point, --replace or --test"
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
        if start or test or host or keep_previous:
            raise typer.BadParameter("--disks-only defines no VM: no --start, --test, --host")
        _restore_disks(vm, point, directory, fmt, overwrite, from_vault, json_)
        return
    if test and replace:
        raise typer.BadParameter("--test boots a copy and removes it: use it with --as-new")
    mode = RestoreMode.REPLACE if replace else (RestoreMode.TEST if test else RestoreMode.AS_NEW)
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
        )
    _restore_result(outcome.job, outcome.result, json_)


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
    if not wait:
        if directory is not None:
            raise typer.BadParameter(
                "--dir is not kept for a queued test; the server uses the default pool dir"
            )
        queued([services().queue.submit_restore_test(vm, point, from_vault=from_vault)], json_)
    with live_progress(not json_):
        outcome = services().restores.restore_test(vm, point, directory, from_vault)
    _restore_result(outcome.job, outcome.result, json_)


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
    if json_:
        doc = documents.job_doc(outcome.job)
        if outcome.result:
            doc["files"] = [str(d.path) for d in outcome.result.disks] + [
                str(outcome.result.domain_xml)
            ]
        emit_json(doc)
    else:
        render.job_result_line(outcome.job)
        if outcome.result:
            for d in outcome.result.disks:
                out.print(
                    f"  {d.target}: {d.path} ({size(d.result.bytes_written)} written in "
                    f"{d.result.seconds:.2f}s)",
                    markup=False,
                )
            out.print(f"  domain XML: {outcome.result.domain_xml}", markup=False)
    raise typer.Exit(render.exit_code_for([outcome.job]))


def restore_doc(r: RestoreReport) -> dict[str, Any]:
    return {
        "mode": r.mode.value,
        "point": r.point_id,
        "vm_name": r.vm_name,
        "vm_uuid": r.vm_uuid,
        "host": r.host_uri,
        "disks": [
            {
                "target": d.target,
                "path": str(d.path),
                "link": str(d.link) if d.link else None,
                "bytes_written": d.bytes_written,
                "seconds": round(d.seconds, 3),
            }
            for d in r.disks
        ],
        "nics": [
            {
                "mac": n.mac,
                "original_mac": n.original_mac,
                "type": n.type,
                "source": n.source,
                "connected": n.connected,
                "link_down": n.link_down,
                "problem": n.problem,
            }
            for n in r.nics
        ],
        "files": r.files,
        "started": r.started,
        "boot_seconds": r.boot_seconds,
        "downtime_seconds": r.downtime_seconds,
        "previous": [str(p) for p in r.previous],
        "test": r.test.to_json() if r.test else None,
    }


def _restore_result(job: Job, report: RestoreReport | None, json_: bool) -> None:
    if json_:
        _, log = services().jobs.show(job.id)
        emit_json(documents.job_doc(job, log) | {"result": restore_doc(report) if report else None})
        raise typer.Exit(render.exit_code_for([job]))
    render.job_result_line(job)
    if report is not None:
        what = "tested as" if report.mode is RestoreMode.TEST else "restored as"
        out.print(f"  {what} {report.vm_name} ({report.vm_uuid})", markup=False)
        for d in report.disks:
            link = f" (link {d.link})" if d.link else ""
            out.print(
                f"  {d.target}: {d.path}{link}, {size(d.bytes_written)} in {d.seconds:.2f}s",
                markup=False,
            )
        for n in report.nics:
            state = "connected" if n.connected else f"disconnected: {n.problem}"
            down = ", link down" if n.link_down and n.connected else ""
            out.print(f"  NIC {n.mac} ({n.type} {n.source}): {state}{down}", markup=False)
        if report.boot_seconds is not None:
            out.print(f"  guest agent answered {report.boot_seconds:.1f}s after start")
        if report.downtime_seconds is not None and report.started:
            out.print(f"  downtime {report.downtime_seconds:.1f}s")
        for p in report.previous:
            out.print(f"  previous image kept: {p}", markup=False)
        if report.test is not None:
            out.print(f"  {report.test.summary}", markup=False)
    raise typer.Exit(render.exit_code_for([job]))
