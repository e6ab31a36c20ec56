"""Step 3, ``--replace``: the switch from the VM's images to the staged ones.

The VM ran while its disks were staged.  Now: record the switch (the VM's definition and
power state, every rename to come), shut the VM off, undefine it with its checkpoint
metadata, set each current image aside to ``<image>.pre-restore-<job>`` and rename the staged
one into place (same directory: atomic, no copy), define the point's XML under the VM's name
and uuid.  A failure from the undefine on puts everything back (:mod:`.rollback`); a
process killed here is rolled back by start-up recovery from the same record.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from vmvault.domain.errors import RestoreVmNotDefined
from vmvault.domain.restore import pre_restore_path
from vmvault.domain.vm import VmItem
from vmvault.services.jobs import JobContext
from vmvault.services.restore import journal
from vmvault.services.restore.model import RestoreReport, RestoreRequest
from vmvault.services.restore.new_vm import start_vm
from vmvault.services.restore.rollback import roll_back

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def replace(
    svc: RestoreService,
    req: RestoreRequest,
    report: RestoreReport,
    shutdown_timeout: float,
    ctx: JobContext,
) -> None:
    plan = req.plan
    uri, uuid, name = plan.host_uri, plan.uuid, plan.name
    files, driver = svc.files, svc.driver
    live = driver.domain(uri, uuid)
    if live is None:
        raise RestoreVmNotDefined(vm=req.vm.label, host=uri)
    tag = str(ctx.job.id)
    moves = [
        journal.Move(
            d.target,
            d.path,
            d.staging,
            pre_restore_path(d.previous, tag)
            if d.previous is not None and files.exists(d.previous)
            else None,
        )
        for d in plan.disks
    ]
    switch = journal.Switch(name, uuid, uri, live.power, live.xml, moves)
    # the last cancel point; from here on the VM is touched, and recovery can undo it
    ctx.phase(journal.SWITCHING, **switch.to_json())
    t_down = time.monotonic()
    how = driver.shutdown(uri, uuid, shutdown_timeout)
    ctx.record(journal.SHUT_OFF, how=how)
    ctx.log(f"{name} ({live.power.value}) shut off: {how}")
    try:
        driver.undefine(uri, uuid)
        ctx.record(journal.UNDEFINED)
        ctx.log(
            f"{name} undefined with its checkpoint metadata "
            f"({', '.join(live.checkpoints) or 'none'}); NVRAM and TPM state kept"
        )
        for m in moves:
            if m.aside is not None:
                files.rename(m.final, m.aside)
            files.rename(m.staging, m.final)
        ctx.record(journal.SWITCHED)
        for m in moves:
            if m.aside is not None:
                ctx.log(f"{m.final}: restored image in place, previous one at {m.aside}")
        driver.define(uri, driver.render(req.manifest.domain_xml, plan))
        ctx.record(journal.DEFINED, uuid=uuid)
    except BaseException:
        roll_back(svc, switch, ctx)
        raise
    ctx.log(f"{name} defined from point {req.point.id} (same name, uuid and MAC addresses)")
    reset_chain(svc, req.vm, ctx)
    keep = req.keep_previous
    try:
        if req.start:
            start_vm(svc, plan, req.shape, report, ctx, fail_on_agent=False)
        elif switch.was_running:
            ctx.log(f"{name} was {live.power.value}; it stays shut off (--start starts it)")
        report.downtime_seconds = time.monotonic() - t_down
        if report.started:
            ctx.log(f"downtime of {name}: {report.downtime_seconds:.1f} s")
    except BaseException:
        keep = True  # the VM did not come back: keep what it was
        raise
    finally:
        asides = [m.aside for m in moves if m.aside is not None]
        for aside in asides:
            if keep:
                report.previous.append(aside)
                ctx.log(f"previous image kept: {aside}")
            else:
                files.remove(aside)
        if asides and not keep:
            ctx.log("previous images removed")


def reset_chain(svc: RestoreService, vm: VmItem, ctx: JobContext | None = None) -> list[str]:
    """Forget vmvault's checkpoint records of ``vm`` (libvirt's went with the undefine): its
    next backup reads every disk in full."""
    with svc.uow() as uow:
        records = uow.checkpoints.for_vm(vm.uuid)
        for rec in records:
            uow.checkpoints.delete(rec.name)
        uow.commit()
    names = ", ".join(r.name for r in records) or "none recorded"
    line = (
        f"{vm.label} keeps its registration; its checkpoint chain is reset ({names}): "
        "the next backup reads every disk in full, deduplicated against the vault"
    )
    if ctx is not None:
        ctx.log(line)
    return [line] if records else []
