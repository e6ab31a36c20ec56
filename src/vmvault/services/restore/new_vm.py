"""Step 4, a new VM (``--as-new``, and the VM of a restore test): place, define, start.

The staged images are renamed to their final names, the symlinks made in the host's default
directory, the original's NVRAM copied, and the rewritten XML defined.  Every path this makes
was checked absent up front and is recorded (``defining``) before the first one is made, so a
failure here — or start-up recovery after a kill — removes the domain and exactly those files.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.domain.errors import RestoreStartFailed
from vmvault.domain.restore import DomainShape, FileKind, RestoreMode, RestorePlan
from vmvault.services.jobs import JobContext
from vmvault.services.restore import journal
from vmvault.services.restore.model import RestoreReport, RestoreRequest
from vmvault.services.restore.restore_test import remove_test_vm, run_test

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def made_paths(plan: RestorePlan) -> list[Path]:
    """Every path a new VM makes: its images, symlinks and files (console logs, NVRAM)."""
    return (
        [d.path for d in plan.disks]
        + [link for link, _ in plan.links]
        + [Path(p) for p in plan.files.values()]
    )


def define_new(
    svc: RestoreService, req: RestoreRequest, report: RestoreReport, ctx: JobContext
) -> None:
    plan = req.plan
    uri = plan.host_uri
    files, driver = svc.files, svc.driver
    test = plan.mode is RestoreMode.TEST
    record = journal.NewVm(plan.name, plan.uuid, uri, test, made_paths(plan))
    # the last cancel point (a test: see "testing")
    ctx.phase(journal.DEFINING, **record.to_json())
    defined = cleaned = False
    try:
        for d in plan.disks:
            files.rename(d.staging, d.path)
        for link, target in plan.links:
            files.symlink(link, target)
            ctx.log(f"symlink {link} -> {target}")
        copy_nvram(svc, req, ctx)
        xml = driver.render(req.manifest.domain_xml, plan)
        driver.define(uri, xml)
        defined = True
        ctx.record(journal.DEFINED, uuid=plan.uuid)
        driver.refresh_default_pool(uri)
        ctx.log(f"defined {plan.name} ({plan.uuid}) with disks in {plan.directory}")
        for old_file, new_file in plan.files.items():
            ctx.log(f"file of {req.shape.name} {old_file} -> {new_file}")
        for nic in plan.nics:
            state = "connected" if nic.connected else "disconnected"
            down = ", link down" if nic.link_down else ""
            ctx.log(f"NIC {nic.mac} ({nic.type} {nic.source}): {state}{down}")
        if test:
            try:
                run_test(svc, req, report, ctx)
            finally:
                remove_test_vm(svc, record, ctx)
                defined, cleaned = False, True
            return
        if req.start:
            start_vm(svc, plan, req.shape, report, ctx, fail_on_agent=False)
        ctx.log(
            f"{plan.name} is not registered: 'vmvault discover' finds it, "
            f"'vmvault register {plan.name}' protects it"
        )
    except BaseException:
        if cleaned:
            raise  # the test VM is gone with its files
        if defined:
            with contextlib.suppress(Exception):
                driver.remove(uri, plan.uuid)
        removed = [p for p in record.made if _remove(svc, p)]
        if removed or defined:
            ctx.log(f"{plan.name} and its files were removed again")
        raise


def _remove(svc: RestoreService, path: Path) -> bool:
    try:
        return svc.files.remove(path)
    except OSError:
        return False


def copy_nvram(svc: RestoreService, req: RestoreRequest, ctx: JobContext) -> None:
    """UEFI variables are not in the point; the new VM gets a copy of the original's
    current ones (boot entries), or libvirt makes fresh ones from the template."""
    for f in req.shape.files:
        if f.kind is not FileKind.NVRAM or f.path not in req.plan.files:
            continue
        new = Path(req.plan.files[f.path])
        try:
            svc.files.copy(Path(f.path), new)
            ctx.log(f"NVRAM: copy of {f.path} (not in the point) as {new}")
        except OSError:
            ctx.log(f"NVRAM: {f.path} not readable; libvirt creates {new} from its template")


def start_vm(
    svc: RestoreService,
    plan: RestorePlan,
    shape: DomainShape,
    report: RestoreReport,
    ctx: JobContext,
    *,
    fail_on_agent: bool,
) -> None:
    """``--start``: start the VM and wait for its agent (silent: a warning, or a failure)."""
    t0 = time.monotonic()
    svc.driver.start(plan.host_uri, plan.uuid)
    report.started = True
    if not shape.agent_channel:
        ctx.log(f"{plan.name} started (no guest agent channel: not waiting for it)")
        return
    if svc.driver.wait_for_agent(plan.host_uri, plan.uuid, svc.boot_timeout):
        report.boot_seconds = time.monotonic() - t0
        ctx.log(f"{plan.name} started; its guest agent answered after {report.boot_seconds:.1f} s")
    elif fail_on_agent:
        raise RestoreStartFailed("the guest agent never answered", vm=plan.name)
    else:
        ctx.warn(
            f"{plan.name} started but its guest agent did not answer within {svc.boot_timeout:g} s"
        )
