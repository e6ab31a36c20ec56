"""Step 5 of a restore test: boot the restored VM isolated, check it, record, remove it.

The VM (every NIC link down) is started; its guest agent must answer within the boot
timeout, then every file system the VM had mounted at backup time must be mounted again
within ``mount_wait``.  The result is recorded on the point (pass or fail), then the VM is
destroyed and undefined with its NVRAM and TPM state and its files are deleted — also when
the test failed or was cancelled (a cancel is seen within :data:`CANCEL_SLICE` s).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from vmvault.domain.errors import Cancelled, RestoreStartFailed, RestoreTestFailed
from vmvault.domain.restore_test import (
    RestoreTestResult,
    expected_mounts,
    judge_test,
)
from vmvault.services.jobs import JobContext
from vmvault.services.restore import journal
from vmvault.services.restore.model import CANCEL_SLICE, RestoreReport, RestoreRequest

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def run_test(
    svc: RestoreService, req: RestoreRequest, report: RestoreReport, ctx: JobContext
) -> None:
    """Boot and check the defined test VM; record the result; ``RESTORE_TEST_FAILED`` if bad."""
    plan = req.plan
    uri = plan.host_uri
    recorded = req.manifest.extra.get("fsinfo")
    left_out = {d.target for d in req.point.disks if d.excluded} | set(plan.drop_disks)
    expected = expected_mounts(recorded or [], left_out)
    if recorded is None:
        ctx.warn(
            "the point holds no list of the guest's file systems (taken offline or without "
            "an agent): the test checks only that the guest boots and its agent answers"
        )
    result = RestoreTestResult(svc.clock(), False, None, ctx.job.id, expected)
    problem: str | None = None
    try:
        if not req.shape.agent_channel:
            problem = "the VM has no guest agent channel: nothing can answer the test"
        else:
            ctx.phase(journal.TESTING, name=plan.name, uuid=plan.uuid)
            t0 = time.monotonic()
            svc.driver.start(uri, plan.uuid)
            report.started = True
            if wait_for_agent(svc, uri, plan.uuid, ctx):
                result.boot_seconds = report.boot_seconds = time.monotonic() - t0
                result.mounted, result.missing = wait_for_mounts(svc, uri, plan.uuid, expected)
                if result.missing:
                    problem = "not mounted after boot: " + ", ".join(result.missing)
            else:
                problem = f"the guest agent did not answer within {svc.boot_timeout:g} s"
    except RestoreStartFailed as exc:
        problem = exc.text
    result.ok = problem is None
    result.problem = problem
    report.test = result
    with svc.uow() as uow:
        uow.points.record_restore_test(req.point.id, result.to_json())
        uow.commit()
    ctx.log(result.summary)
    if problem is not None:
        tail = svc.driver.console_tail(uri, plan.uuid)
        if tail:
            ctx.log("console of the test VM (last lines):\n" + tail)
        raise RestoreTestFailed(point=req.point.id, why=problem)


def wait_for_agent(svc: RestoreService, uri: str, uuid: str, ctx: JobContext) -> bool:
    """The driver's wait, in slices of :data:`CANCEL_SLICE` s: a cancel is seen in time."""
    deadline = time.monotonic() + svc.boot_timeout
    while True:
        step = max(0.0, min(CANCEL_SLICE, deadline - time.monotonic()))
        t0 = time.monotonic()
        if svc.driver.wait_for_agent(uri, uuid, step):
            return True
        if ctx.cancelled():
            raise Cancelled(operation=f"restore test (job {ctx.job.id})")
        now = time.monotonic()
        if now >= deadline or now - t0 < step:  # out of time, or the domain stopped
            return False


def wait_for_mounts(
    svc: RestoreService, uri: str, uuid: str, expected: list[str]
) -> tuple[list[str], list[str]]:
    deadline = time.monotonic() + svc.mount_wait
    while True:
        fsinfo: list[dict[str, Any]] | None = svc.driver.guest_filesystems(uri, uuid)
        mounted, missing = judge_test(expected, fsinfo)
        if not missing or time.monotonic() > deadline:
            return mounted, missing
        time.sleep(0.5)


def remove_test_vm(svc: RestoreService, vm: journal.NewVm, ctx: JobContext | None) -> list[str]:
    """Destroy and undefine the test VM and delete its files; returns what was removed."""
    svc.driver.remove(vm.uri, vm.uuid)
    gone = [str(p) for p in vm.made if svc.files.remove(p)]
    svc.driver.refresh_default_pool(vm.uri)
    if ctx is not None:
        ctx.record(journal.TEST_REMOVED)
        ctx.log(f"test VM {vm.name} destroyed and undefined, its files deleted")
    return gone
