"""Backup, recovery points, restore of disks, verify and GC commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from vmvault import documents
from vmvault.cli import render
from vmvault.cli.context import services
from vmvault.cli.render import emit_json, out
from vmvault.documents import point_doc
from vmvault.domain.errors import InvalidInput
from vmvault.domain.job import Job
from vmvault.domain.restore import RestoreMode
from vmvault.services.restore import RestoreReport

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait", help="Run in the foreground (default) or queue it for 'vmvault serve'."
    ),
]
VaultOpt = Annotated[
    str | None,
    typer.Option("--vault", help="Vault to use (default: VMVAULT_VAULT or the only one)."),
]

points_app = typer.Typer(help="Recovery points.", no_args_is_help=True)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


@contextmanager
def live_progress(enabled: bool) -> Iterator[None]:
    """A Rich progress bar fed by the job runner's progress reports (terminal only)."""
    if not enabled or not out.is_terminal:
        yield
        return
    bars: dict[int, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
        transient=True,
    ) as progress:

        def observe(job: Job) -> None:
            if job.id not in bars:
                bars[job.id] = progress.add_task(
                    f"{job.type.value} {job.vm_name or ''}", total=job.bytes_total or None
                )
            progress.update(bars[job.id], completed=job.bytes_done, total=job.bytes_total or None)

        runner = services().runner
        runner.observers.append(observe)
        try:
            yield
        finally:
            runner.observers.remove(observe)


def backup(
    vms: Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")],
    wait: WaitOpt = True,
    keep_until: Annotated[
        str | None,
        typer.Option(help="Retention leaves the point alone until then (YYYY-MM-DD[THH:MM])."),
    ] = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Back up VMs now: one backup job per VM (full the first time, then incremental)."""
    until = _keep_until(keep_until) if keep_until else None
    if not wait:
        queued(services().queue.submit_backup(vault, vms, keep_until=until), json_)
    with live_progress(not json_):
        outcomes = services().backups.backup(vault, vms, keep_until=until)
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
                    f"{p.frozen_ms} ms), {_size(p.bytes_logical)} logical, "
                    f"{_size(p.bytes_read)} read, {_size(p.bytes_new)} new",
                    markup=False,
                )
        for prune in services().protection.prunes:  # retention of protected VMs
            render.job_result_line(prune.job)
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


def _keep_until(text: str) -> datetime:
    """A date (midnight) or date-time, local time unless it names its offset; in the future."""
    try:
        value = datetime.fromisoformat(text.strip()).astimezone()
    except ValueError:
        what = f"--keep-until '{text}'"
        raise InvalidInput("use YYYY-MM-DD or YYYY-MM-DDTHH:MM", what=what) from None
    if value <= datetime.now(UTC):
        raise InvalidInput("it is not in the future", what=f"--keep-until '{text}'")
    return value


@points_app.command("list")
def points_list(
    vm: Annotated[str | None, typer.Argument(help="Only this VM's points.")] = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List recovery points, newest first."""
    points = services().points.list_points(vault, vm)
    if json_:
        emit_json([point_doc(p) for p in points])
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "VM", "CREATED", "CONSISTENCY", "METHOD", "DISKS", "LOGICAL", "NEW"):
        table.add_column(col, no_wrap=col in ("ID", "VM"))
    for p in points:
        disks = ",".join(
            d.target + ("" if not d.excluded else "*") + ("+" if d.incremental else "")
            for d in p.disks
        )
        table.add_row(
            p.id,
            p.vm_name,
            render.short_time(p.created_at),
            p.consistency.value,
            p.method.value,
            disks,
            _size(p.bytes_logical),
            _size(p.bytes_new),
        )
    out.print(table)


@points_app.command("show")
def points_show(point_id: str, json_: JsonOpt = False) -> None:
    """Show one recovery point."""
    p = services().points.get(point_id)
    doc = point_doc(p)
    if json_:
        emit_json(doc)
        return
    for key in ("id", "vm_name", "vm", "vault", "created_at", "consistency", "method"):
        out.print(f"{key:12} {doc[key]}", markup=False)
    out.print(f"{'frozen':12} {p.frozen_ms} ms")
    out.print(f"{'checkpoint':12} {p.checkpoint or '-'}", markup=False)
    out.print(
        f"{'sizes':12} {_size(p.bytes_logical)} logical, {_size(p.bytes_read)} read, "
        f"{_size(p.bytes_new)} new"
    )
    for d in p.disks:
        how = "excluded" if d.excluded else ("incremental" if d.incremental else "full")
        out.print(
            f"disk {d.target:6} {_size(d.size):>10}  {how:11} read {_size(d.bytes_read)}, "
            f"new {_size(d.bytes_new)}  ({d.reason or ''})",
            markup=False,
        )
    for w in p.warnings:
        out.print(f"warning: {w}", markup=False)


@points_app.command("delete")
def points_delete(point_id: str, json_: JsonOpt = False) -> None:
    """Delete one recovery point (its unshared chunks go at the next GC)."""
    outcome = services().points.delete_point(point_id)
    if json_:
        emit_json(documents.job_doc(outcome.job))
    else:
        render.job_result_line(outcome.job)
    raise typer.Exit(render.exit_code_for([outcome.job]))


def restore(
    vm: Annotated[str, typer.Argument(help="The VM the point belongs to.")],
    point: Annotated[str, typer.Option("--point", help="Recovery point id.")],
    as_new: Annotated[
        str | None, typer.Option("--as-new", help="Define a new VM with this name.")
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
    json_: JsonOpt = False,
) -> None:
    """Restore a VM from a recovery point (a restore job).

    --as-new NAME: a new VM (new name, uuid and MAC addresses).
    --replace: the VM itself, once its restored disks are verified.
    --disks-only: the disk images and the domain XML, nothing defined.
    """
    modes = [m for m, on in (("--as-new", as_new is not None), ("--disks-only", disks_only),
                             ("--replace", replace)) if on]  # fmt: skip
    if len(modes) != 1:
        raise typer.BadParameter("give exactly one of --as-new NAME, --disks-only, --replace")
    if start and test:
        raise typer.BadParameter("--start and --test exclude each other")
    if disks_only:
        if not directory:
            raise typer.BadParameter("--disks-only needs --dir DIR")
        if start or test or host or keep_previous:
            raise typer.BadParameter("--disks-only defines no VM: no --start, --test, --host")
        _restore_disks(vm, point, directory, fmt, overwrite, json_)
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
    json_: JsonOpt = False,
) -> None:
    """Test a recovery point: boot it as a throw-away VM with its NICs down, wait for its
    agent and the file systems it had mounted, record the result on the point, remove it."""
    if not wait:
        if directory is not None:
            raise typer.BadParameter(
                "--dir is not kept for a queued test; the server uses the default pool dir"
            )
        queued([services().queue.submit_restore_test(vm, point)], json_)
    with live_progress(not json_):
        outcome = services().restores.restore_test(vm, point, directory)
    _restore_result(outcome.job, outcome.result, json_)


def _restore_disks(
    vm: str, point: str, directory: str, fmt: str, overwrite: bool, json_: bool
) -> None:
    with live_progress(not json_):
        outcome = services().points.restore_disks(
            vm, point, directory, fmt=fmt, overwrite=overwrite
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
                    f"  {d.target}: {d.path} ({_size(d.result.bytes_written)} written in "
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
                f"  {d.target}: {d.path}{link}, {_size(d.bytes_written)} in {d.seconds:.2f}s",
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


def verify(
    vm: Annotated[str | None, typer.Argument(help="Verify this VM's points.")] = None,
    point: Annotated[str | None, typer.Option("--point", help="Verify one point.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every point of the vault.")] = False,
    wait: WaitOpt = True,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-read and re-hash every chunk the chosen points reference (a verify job)."""
    if len([x for x in (vm, point) if x is not None]) + int(all_) != 1:
        raise typer.BadParameter("give exactly one of VM, --point ID or --all")
    if not wait:
        queued([services().queue.submit_verify(vault, point_id=point, vm_ref=vm)], json_)
    outcome = services().points.verify(vault, point_id=point, vm_ref=vm)
    _, log = services().jobs.show(outcome.job.id)
    if json_:
        emit_json(documents.job_doc(outcome.job, log))
    else:
        render.job_result_line(outcome.job)
        for line in log:
            if " point " in line or "chunk reads" in line:
                out.print(f"  {line}", markup=False)
    raise typer.Exit(render.exit_code_for([outcome.job]))


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count.")] = False,
    wait: WaitOpt = True,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Remove chunks no recovery point references (safe while backups run)."""
    if not wait:
        if dry_run:
            raise typer.BadParameter("--dry-run runs in the foreground only")
        queued([services().queue.submit_gc(vault)], json_)
    outcome = services().points.gc(vault, dry_run)
    if json_:
        doc = documents.job_doc(outcome.job)
        if outcome.result:
            r = outcome.result
            doc["result"] = {
                "chunks_scanned": r.chunks_scanned,
                "chunks_referenced": r.chunks_referenced,
                "chunks_removed": r.chunks_removed,
                "bytes_removed": r.bytes_removed,
                "chunks_kept_recent": r.chunks_kept_recent,
            }
        emit_json(doc)
    else:
        render.job_result_line(outcome.job)
        if outcome.result:
            r = outcome.result
            out.print(
                f"  {r.chunks_removed} chunks removed ({_size(r.bytes_removed)}), "
                f"{r.chunks_referenced} referenced, {r.chunks_kept_recent} kept as too recent"
            )
    raise typer.Exit(render.exit_code_for([outcome.job]))
