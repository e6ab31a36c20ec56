"""The job queue: work asked for now and done by the server's workers.

``vmvault backup --no-wait``, the REST API and the scheduler do not run jobs themselves; they
*queue* them: a job row in state ``queued`` that carries its request (``jobs.request``, JSON:
an ``op`` and its arguments; the table of ops and what runs each is in
:mod:`vmvault.services.queue_runs`, which claims and runs them — :class:`QueueService` is
both: queueing here, running there).

Invariants:

* A request is checked when it is queued (bad input is refused before anything exists; a VM
  whose host no node serves is ``HOST_NOT_SERVED``, domain/placement.py) *and*
  again when it runs (the world may have changed meanwhile; a request that no longer holds
  ends its job ``failed`` with the error's code and remedy).
* A queued job of a VM holds the VM's conflict key like a running one: one active job per VM
  counts queued jobs too, so nothing can slip in between queueing and running.
* Claiming is atomic (``queued → in-progress`` only if still queued; on PostgreSQL with
  ``SELECT … FOR UPDATE SKIP LOCKED``, so workers of many nodes never take one job twice nor
  wait for each other); a cancelled queued job is never claimed and never started (it ends
  ``cancelled`` with nothing to undo).
* A node claims only jobs of no VM, of its own host's VMs, or of VMs of hosts where no node
  runs (persistence/jobs.py, ``claim_next``; docs/deployment.md).
* The worker that claims a job runs it as its node (domain/node.py): the job carries the
  node's id and a lease its heartbeat renews.  A node that dies mid-job leaves a job whose
  lease runs out (or, on its own machine, whose pid is dead), which recovery closes as
  ``JOB_INTERRUPTED``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vmvault.domain.consistency import parse_required
from vmvault.domain.errors import (
    InvalidInput,
    OperationInProgress,
)
from vmvault.domain.inputs import check_until
from vmvault.domain.job import Job, JobConflict, JobState, JobType, conflict_key
from vmvault.domain.policy import Policy
from vmvault.domain.vm import VmItem
from vmvault.services import holdings
from vmvault.services.context import queueing
from vmvault.services.ports import UnitOfWork
from vmvault.services.queue_runs import RESTORE_OPTIONS, QueueRuns

OPS: dict[str, JobType] = {
    "backup": JobType.BACKUP,
    "backup-set": JobType.BACKUP_SET,
    "verify": JobType.VERIFY,
    "gc": JobType.GC,
    "restore-test": JobType.RESTORE,
    "copy": JobType.COPY,
    "restore": JobType.RESTORE,
}


def queue_job(
    uow: UnitOfWork,
    op: str,
    vault: str,
    vm: tuple[str, str | None] | None,
    request: dict[str, Any],
    origin: str,
    now: datetime,
) -> Job:
    """Insert one queued job (inside the caller's transaction) for ``vm`` (uuid, label) or
    for no VM; raises :class:`~vmvault.domain.job.JobConflict` when its VM has an active job."""
    job_type = OPS[op]
    uuid, label = vm if vm is not None else (None, None)
    job = uow.jobs.create(
        job_type,
        vault,
        uuid,
        label,
        JobState.QUEUED,
        now,
        None,
        conflict_key(job_type, vault, uuid),
        request={"op": op, **request},
        origin=origin,
    )
    uow.jobs.append_log(job.id, f"queued by {origin}", now)
    return job


def queue_jobs(
    uow: UnitOfWork,
    op: str,
    vault: str,
    items: Sequence[tuple[str, str | None, dict[str, Any]]],
    origin: str,
    now: datetime,
) -> list[Job] | None:
    """:func:`queue_job` of one job per VM of ``items`` (uuid, label, request) in a few
    statements, whatever their number (a policy's slot over a fleet); None, with nothing
    queued, when one of the VMs has an active job (the caller checked
    ``uow.jobs.holders`` first: one was queued meanwhile — then queue them one by one)."""
    job_type = OPS[op]
    rows = [
        dict(
            type=job_type.value,
            vault=vault,
            vm_uuid=uuid,
            vm_name=label,
            conflict_key=conflict_key(job_type, vault, uuid),
            request={"op": op, **request},
            origin=origin,
            log=f"queued by {origin}",
        )
        for uuid, label, request in items
    ]
    return uow.jobs.create_queued(rows, now)


class QueueService(QueueRuns):
    #: Called after jobs were queued (the server wakes its workers).
    on_queued: Callable[[], None] | None = None

    # --- queueing --------------------------------------------------------------------------------

    def submit_backup(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        keep_until: datetime | None = None,
        origin: str = "cli",
        require: str | None = None,
    ) -> list[Job]:
        """Queue one backup job per VM; all or none (one VM busy: nothing is queued)."""
        if keep_until is not None:
            keep_until = check_until(keep_until, self.clock())
        parse_required(require)  # refused before anything is queued
        with queueing():  # HOST_NOT_SERVED unless a live node serves each VM's host
            vault, chosen = self._backups().choose(vault_name, refs)
        until = keep_until.isoformat() if keep_until is not None else None
        return self._submit(
            [
                (
                    "backup",
                    vault.name,
                    (vm.uuid, vm.label),
                    {"vm": vm.uuid, "keep_until": until, "require": require},
                )
                for vm in chosen
            ],
            origin,
        )

    def submit_backup_set(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        keep_until: datetime | None = None,
        origin: str = "cli",
    ) -> Job:
        """Queue one set job (its VMs are held by its children once it runs)."""
        if keep_until is not None:
            keep_until = check_until(keep_until, self.clock())
        with queueing():
            vault, chosen = self._sets().choose(vault_name, refs)
        until = keep_until.isoformat() if keep_until is not None else None
        # the set's host: only a node of that host claims it (persistence/jobs.py claim_next)
        host = chosen[0].host_uri
        request = {"vms": [vm.uuid for vm in chosen], "keep_until": until, "host": host}
        return self._submit([("backup-set", vault.name, None, request)], origin)[0]

    def submit_verify(
        self,
        vault_name: str | None,
        *,
        point_id: str | None = None,
        vm_ref: str | None = None,
        origin: str = "cli",
    ) -> Job:
        scope = self._points().verify_scope(vault_name, point_id=point_id, vm_ref=vm_ref)
        vm = (scope.vm_uuid, scope.vm_label) if scope.vm_uuid is not None else None
        request = {"point": point_id} if point_id else {"vm": scope.vm_uuid} if vm_ref else {}
        return self._submit([("verify", scope.vault.name, vm, request)], origin)[0]

    def submit_gc(self, vault_name: str | None, origin: str = "cli") -> Job:
        vault = self.vaults.resolve(vault_name)
        return self._submit([("gc", vault.name, None, {})], origin)[0]

    def submit_restore_test(
        self, vm_ref: str, point_id: str, origin: str = "cli", from_vault: str | None = None
    ) -> Job:
        vm, point = self._restores().vm_and_point(vm_ref, point_id)
        with queueing():
            self.require_node(vm.host_uri, vm.label, "restore test")
        with self.uow() as uow:
            vault = holdings.vault_holding(uow, point, from_vault)
        request = {"vm": vm.uuid, "point": point_id, "from_vault": vault}
        return self._submit([("restore-test", vault, (vm.uuid, vm.label), request)], origin)[0]

    def submit_restore(
        self,
        vm_ref: str,
        point_id: str,
        mode: str,
        *,
        from_vault: str | None = None,
        origin: str = "cli",
        **options: Any,
    ) -> Job:
        """Queue one restore of ``point_id`` (``mode``: ``as-new``, ``replace`` or
        ``disks-only``; ``options``: :data:`RESTORE_OPTIONS`).  Every check of the restore
        itself runs first (:meth:`_prepare_restore`): a bad target is refused with nothing
        queued, and checked again when the job runs."""
        unknown = sorted(set(options) - set(RESTORE_OPTIONS))
        if unknown:
            raise InvalidInput("not a restore option", what=", ".join(unknown))
        vm, point = self._restores().vm_and_point(vm_ref, point_id)
        request: dict[str, Any] = {"vm": vm.uuid, "point": point_id, "mode": mode}
        request |= {"from_vault": from_vault}
        request |= {k: v for k, v in options.items() if v is not None}
        with queueing():
            self._prepare_restore(request)
        with self.uow() as uow:
            vault = holdings.vault_holding(uow, point, from_vault)
        return self._submit([("restore", vault, (vm.uuid, vm.label), request)], origin)[0]

    def submit_copy(
        self,
        from_vault: str,
        to_vault: str,
        refs: Sequence[str],
        all_vms: bool = False,
        origin: str = "cli",
    ) -> list[Job]:
        """Queue one copy job per VM; all or none (checked as :meth:`CopyService.copy`)."""
        request = self._copies().plan(from_vault, to_vault, refs, all_vms)
        src, dst = request.source.name, request.target.name
        items: list[tuple[str, str, tuple[str, str | None] | None, dict[str, Any]]] = [
            ("copy", dst, (vm.uuid, vm.label), {"vm": vm.uuid, "from": src, "to": dst})
            for vm in request.vms
        ]
        return self._submit(items, origin)

    def queue_policy_copy(self, from_vault: str, vm: VmItem, policy: Policy) -> Job | None:
        """After a policy backup: queue the copy of the VM's new points to the policy's copy
        vault.  A VM busy with another job gets none now; the next copy sends every point
        the copy vault lacks, so nothing is lost."""
        if policy.copy is None:
            return None
        request = {
            "vm": vm.uuid,
            "from": from_vault,
            "to": policy.copy.vault,
            "policy": policy.name,
        }
        try:
            return self._submit(
                [("copy", policy.copy.vault, (vm.uuid, vm.label), request)],
                f"policy {policy.name} after a backup",
            )[0]
        except OperationInProgress:
            return None

    def _submit(
        self,
        items: list[tuple[str, str, tuple[str, str | None] | None, dict[str, Any]]],
        origin: str,
    ) -> list[Job]:
        now = self.clock()
        jobs: list[Job] = []
        with self.uow() as uow:
            for op, vault, vm, request in items:
                try:
                    jobs.append(queue_job(uow, op, vault, vm, request, origin, now))
                except JobConflict as conflict:  # rolled back: none of them is queued
                    h = conflict.holder
                    raise OperationInProgress(
                        vm=(vm[1] or vm[0]) if vm else vault, job=h.id, job_type=h.type.value
                    ) from None
            uow.commit()
        if self.on_queued is not None:
            self.on_queued()
        return jobs
