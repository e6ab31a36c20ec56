"""``--instant``: the VM runs from the point's export at once, its disks are copied to local
storage while it runs, then pivoted (the order and its reasons: :mod:`vmvault.domain.instant`;
the user's side: docs/restore.md, "Instant recovery").

Each step is journaled (:mod:`.journal`, ``instant`` … ``cleaned``) before the thing it
announces can be left half done.  ``instant`` is the last cancel point.  A failure before the
VM was started removes everything made (and, for ``--replace``, puts the VM back); a failure
after it is settled by :func:`.instant_settle.settle`, the same code start-up recovery runs
after a kill: pivot when every copy is in sync, else local images rebuilt from the point with
the guest's writes committed (``--replace``: the VM put back as it was).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from vmvault.domain.errors import InstantCopyFailed, RestoreStartFailed
from vmvault.domain.instant import InstantPlan, eta, plan_instant
from vmvault.domain.restore import RestoreMode, pre_restore_path
from vmvault.services.jobs import JobContext
from vmvault.services.restore import journal
from vmvault.services.restore.instant_settle import finish, remove_made, settle
from vmvault.services.restore.model import RestoredDisk, RestoreReport, RestoreRequest
from vmvault.services.restore.new_vm import copy_nvram, made_paths
from vmvault.services.restore.rollback import put_back
from vmvault.services.restore.switch import reset_chain

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService

#: How often the job logs the copy's progress and ETA.
LOG_EVERY = 5.0


def run_instant(
    svc: RestoreService,
    req: RestoreRequest,
    report: RestoreReport,
    shutdown_timeout: float,
    ctx: JobContext,
) -> None:
    plan = req.plan
    iplan = plan_instant(plan)
    uri, uuid, name = plan.host_uri, plan.uuid, plan.name
    instant = svc.instant
    report.instant = True
    t0 = time.monotonic()
    final_xml = svc.driver.render(req.manifest.domain_xml, plan)
    switch = None
    if plan.mode is RestoreMode.REPLACE:
        live = svc.driver.domain(uri, uuid)
        assert live is not None and req.live is not None
        moves = [
            journal.Move(d.target, d.final, d.overlay, pre_restore_path(d.final, str(ctx.job.id)))
            for d in iplan.disks
            if svc.files.exists(d.final)
        ]
        switch = journal.Switch(name, uuid, uri, live.power, live.xml, moves)
    if switch is None:
        made = iplan.made + made_paths(plan)
    else:  # --replace: an image the VM did not have yet is made by the copy (removed on undo)
        moved = {m.target for m in switch.moves}
        made = iplan.made + [d.final for d in iplan.disks if d.target not in moved]
    record = journal.Instant(
        name, uuid, uri, req.point.id, iplan.socket, iplan.disks, final_xml, made,
        [(lk, t) for lk, t in plan.links], switch,
    )  # fmt: skip
    ctx.phase(journal.INSTANT, **record.to_json())  # the last cancel point
    started = False
    try:
        if switch is not None:
            _set_aside(svc, switch, shutdown_timeout, ctx)
        dirs = svc.files.make_dirs(iplan.socket.parent)
        ctx.record(journal.STAGING, target="*", dirs=[str(d) for d in dirs])
        export = svc.exports.start(req.point.id, socket=str(iplan.socket))
        report.export_job = export.job_id
        ctx.record(journal.EXPORTING, job=export.job_id)
        ctx.log(f"export job {export.job_id} serves point {req.point.id} at {iplan.socket}")
        instant.allow_qemu(iplan.socket)
        for d in iplan.disks:
            instant.make_overlay(d.overlay, iplan.socket, d.target, d.size)
        ctx.record(journal.OVERLAYS)
        if switch is None:
            copy_nvram(svc, req, ctx)
        svc.driver.define(uri, instant.render(final_xml, iplan.overlays, iplan.socket))
        ctx.record(journal.INSTANT_DEFINED, uuid=uuid)
        svc.driver.start(uri, uuid)
        started = report.started = True
        ctx.record(journal.STARTED)
        ctx.log(f"{name} started from the export ({time.monotonic() - t0:.1f} s)")
        if req.shape.agent_channel:
            if svc.driver.wait_for_agent(uri, uuid, svc.boot_timeout):
                report.boot_seconds = time.monotonic() - t0
                ctx.log(f"{name}: guest agent answered after {report.boot_seconds:.1f} s")
            else:
                ctx.warn(f"{name}: guest agent silent after {svc.boot_timeout:g} s; copying on")
        _notify(svc, ctx, journal.STARTED)
        copied = _copy(svc, iplan, uri, uuid, ctx)
        for d in iplan.disks:
            instant.pivot(uri, uuid, d.target)
            ctx.record(journal.PIVOTED, target=d.target)
        report.pivot_seconds = time.monotonic() - t0
        ctx.log(f"{name}: every disk pivoted to local storage ({report.pivot_seconds:.1f} s)")
    except BaseException as exc:
        if not started:
            _undo(svc, record, ctx)
            raise
        ctx.log(f"instant restore failed before its pivot: {exc}; settling {name}")
        for line in settle(svc, record, svc.journal_of(ctx), in_job=True):
            ctx.log(line)
        raise
    for line in finish(svc, record, svc.journal_of(ctx), in_job=True):
        ctx.log(line)
    if switch is not None:
        _verify(svc, req, record, switch, ctx)
        _drop_asides(svc, switch, req.keep_previous, report, ctx)
        reset_chain(svc, req.vm, ctx)  # its checkpoints went with the undefine
    ctx.record(journal.CLEANED)
    ctx.log(f"{name} depends on nothing of vmvault now: export and overlays gone")
    for d in iplan.disks:
        link = next((lk for lk, t in plan.links if t == d.final), None)
        report.disks.append(
            RestoredDisk(d.target, d.final, link, copied[d.target], report.pivot_seconds)
        )


def _verify(
    svc: RestoreService,
    req: RestoreRequest,
    rec: journal.Instant,
    switch: journal.Switch,
    ctx: JobContext,
) -> None:
    """``--replace``: the new VM must answer on its local disks before the old images go;
    otherwise the VM is put back as it was."""
    if not req.shape.agent_channel or svc.driver.wait_for_agent(
        rec.uri, rec.uuid, svc.boot_timeout
    ):
        ctx.record(journal.VERIFIED)
        ctx.log(f"{rec.name} verified on its local disks (guest agent answers)")
        return
    ctx.log(f"{rec.name} does not answer on its local disks: putting the previous VM back")
    svc.instant.destroy(rec.uri, rec.uuid)
    svc.driver.undefine(rec.uri, rec.uuid)
    for line in put_back(svc, switch):
        ctx.log(line)
    raise RestoreStartFailed("the guest agent never answered after the pivot", vm=rec.name)


def _copy(
    svc: RestoreService, iplan: InstantPlan, uri: str, uuid: str, ctx: JobContext
) -> dict[str, int]:
    """Copy every disk to its local image while the VM runs, until all are in sync;
    returns the bytes each copy went through."""
    instant = svc.instant
    ctx.record(journal.COPYING)
    for d in iplan.disks:
        instant.start_copy(uri, uuid, d.target, d.final, d.fmt)
        ctx.log(f"{d.target}: copying to {d.final} ({d.fmt})")
    _notify(svc, ctx, journal.COPYING)
    t_copy = last_log = time.monotonic()
    while True:
        states = {d.target: instant.copy_state(uri, uuid, d.target) for d in iplan.disks}
        gone = [t for t, s in states.items() if not s.active]
        if gone:
            why = "the VM is paused on an I/O error" if instant.paused_on_error(uri, uuid) else ""
            raise InstantCopyFailed(
                f"the copy of {', '.join(gone)} ended before it was in sync {why}".strip(),
                vm=ctx.job.vm_name or uuid,
            )
        done = sum(s.cur for s in states.values())
        total = sum(max(s.end, 1) for s in states.values())
        ctx.progress(done, total)
        if all(s.ready for s in states.values()):
            break
        now = time.monotonic()
        if now - last_log >= LOG_EVERY:
            last_log = now
            left = eta(done, total, now - t_copy)
            when = f", ETA {left:.0f} s" if left is not None else ""
            ctx.log(f"copy {100 * done / total:.0f}% ({done >> 20} of {total >> 20} MiB){when}")
        time.sleep(svc.instant_poll)
    ctx.record(journal.SYNCED)
    ctx.log(f"every disk in sync after {time.monotonic() - t_copy:.1f} s of copying")
    return {t: s.cur for t, s in states.items()}


def _notify(svc: RestoreService, ctx: JobContext, step: str) -> None:
    for observer in svc.instant_observers:
        observer(ctx.job, step)


def _set_aside(
    svc: RestoreService, switch: journal.Switch, shutdown_timeout: float, ctx: JobContext
) -> None:
    """``--replace``: the VM off and undefined (NVRAM kept), its images set aside."""
    how = svc.driver.shutdown(switch.uri, switch.uuid, shutdown_timeout)
    ctx.record(journal.SHUT_OFF, how=how)
    ctx.log(f"{switch.vm} ({switch.was.value}) shut off: {how}")
    svc.driver.undefine(switch.uri, switch.uuid)
    ctx.record(journal.UNDEFINED)
    for m in switch.moves:
        assert m.aside is not None
        svc.files.rename(m.final, m.aside)
        ctx.log(f"{m.final} set aside as {m.aside} until the new disks are verified")
    ctx.record(journal.SWITCHED)


def _undo(svc: RestoreService, record: journal.Instant, ctx: JobContext) -> None:
    """A failure before the VM was started: remove what was made, put a replaced VM back."""
    j = svc.journal_of(ctx)
    if journal.INSTANT_DEFINED in j.seen or record.switch is None:
        with contextlib.suppress(Exception):
            if record.switch is None:
                svc.driver.remove(record.uri, record.uuid)
            else:
                svc.instant.destroy(record.uri, record.uuid)
                svc.driver.undefine(record.uri, record.uuid)
    for line in remove_made(svc, record, j, in_job=True):
        ctx.log(line)
    if record.switch is not None and journal.SHUT_OFF in j.seen:
        for line in put_back(svc, record.switch):
            ctx.log(line)


def _drop_asides(
    svc: RestoreService,
    switch: journal.Switch,
    keep: bool,
    report: RestoreReport,
    ctx: JobContext,
) -> None:
    for m in switch.moves:
        if m.aside is None:
            continue
        if keep:
            report.previous.append(m.aside)
            ctx.log(f"previous image kept: {m.aside}")
        elif svc.files.remove(m.aside):
            ctx.log(f"previous image removed: {m.aside}")
