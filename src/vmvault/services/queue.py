"""The job queue: work asked for now and done by the server's workers.

``vmvault backup --no-wait``, the REST API and the scheduler do not run jobs themselves; they
*queue* them: a job row in state ``queued`` that carries its request (``jobs.request``, JSON):

=================  ==========================================================  ==============
``op``             arguments                                                   runs
=================  ==========================================================  ==============
``backup``         ``vm`` (uuid), ``keep_until`` (ISO time or null)            BackupService
``backup-set``     ``vms`` (uuids), ``keep_until``                             BackupSetService
``verify``         ``point`` or ``vm`` (uuid) or neither (whole vault)         PointService
``gc``             –                                                           PointService
``restore-test``   ``vm`` (uuid), ``point``, ``from_vault`` (optional)            RestoreService
``copy``           ``vm`` (uuid), ``from``, ``to`` (vaults), ``policy`` (name   CopyService
                   or null: its copy retention prunes the target)
``restore``        ``vm`` (uuid), ``point``, ``mode`` (``as-new``, ``replace``, RestoreService
                   ``test`` or ``disks-only``), ``from_vault``, the options:   (disks-only:
                   ``name``, ``directory``, ``host``, ``start``,               PointService)
                   ``keep_previous``, ``shutdown_timeout``, ``format``,
                   ``overwrite`` (null: the default)
=================  ==========================================================  ==============

Invariants:

* A request is checked when it is queued (bad input is refused before anything exists) *and*
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

import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from vmvault.domain.consistency import parse_required
from vmvault.domain.errors import (
    InternalError,
    InvalidInput,
    OperationInProgress,
    VmvaultError,
)
from vmvault.domain.inputs import check_until
from vmvault.domain.job import Job, JobConflict, JobState, JobType, conflict_key
from vmvault.domain.policy import Policy
from vmvault.domain.restore import RestoreMode
from vmvault.domain.vm import VmItem
from vmvault.services import holdings
from vmvault.services.backup_sets import BackupSetService
from vmvault.services.backups import BackupService
from vmvault.services.context import Service, ServiceContext
from vmvault.services.copies import CopyService
from vmvault.services.points import PointService
from vmvault.services.ports import UnitOfWork
from vmvault.services.protection import ProtectionService
from vmvault.services.restore import RestoreService

OPS: dict[str, JobType] = {
    "backup": JobType.BACKUP,
    "backup-set": JobType.BACKUP_SET,
    "verify": JobType.VERIFY,
    "gc": JobType.GC,
    "restore-test": JobType.RESTORE,
    "copy": JobType.COPY,
    "restore": JobType.RESTORE,
}

#: The options of a queued ``restore`` request, each passed on as the keyword of that name.
RESTORE_OPTIONS = (
    "name",
    "directory",
    "host",
    "start",
    "keep_previous",
    "shutdown_timeout",
    "format",
    "overwrite",
)


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


class QueueService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        backups: Callable[[], BackupService],
        points: Callable[[], PointService],
        restores: Callable[[], RestoreService],
        protection: Callable[[], ProtectionService],
        copies: Callable[[], CopyService] | None = None,
        sets: Callable[[], BackupSetService] | None = None,
    ) -> None:
        super().__init__(ctx)
        self._sets = sets or (lambda: BackupSetService(ctx, backups()))
        self._copies = copies or (lambda: CopyService(ctx))
        self._backups = backups
        self._points = points
        self._restores = restores
        self._protection = protection
        #: Called after jobs were queued (the server wakes its workers).
        self.on_queued: Callable[[], None] | None = None
        #: Called after each run of a claimed job with the job (as claimed) and what its
        #: service returned (None when it raised): the server records the outcome
        #: (vmvault/outcomes.py) for the remote CLI.
        self.on_outcome: Callable[[Job, Any], None] | None = None

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
        vault, chosen = self._sets().choose(vault_name, refs)
        until = keep_until.isoformat() if keep_until is not None else None
        request = {"vms": [vm.uuid for vm in chosen], "keep_until": until}
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
        self._prepare_restore(request)
        with self.uow() as uow:
            vault = holdings.vault_holding(uow, point, from_vault)
        return self._submit([("restore", vault, (vm.uuid, vm.label), request)], origin)[0]

    def _prepare_restore(self, req: dict[str, Any]) -> Callable[[], Any]:
        """The checked restore of a ``restore`` request, to run (a refusal raises)."""
        mode = req.get("mode")
        options = {k: req[k] for k in RESTORE_OPTIONS if req.get(k) is not None}
        vm, point, from_vault = req["vm"], req["point"], req.get("from_vault")
        if mode == "disks-only":
            extra = sorted(set(options) - {"directory", "format", "overwrite"})
            if extra or "directory" not in options:
                raise InvalidInput(
                    "a disks-only restore takes a directory (and format, overwrite) only",
                    what="restore options",
                )
            fmt = options.pop("format", "qcow2")
            directory = options.pop("directory")
            return self._points().prepare_disks(
                vm, point, directory, fmt=fmt, from_vault=from_vault, **options
            )
        if mode not in {m.value for m in RestoreMode}:
            raise InvalidInput(
                "use as-new, replace, test or disks-only", what=f"restore mode {mode!r}"
            )
        if {"format", "overwrite"} & set(options):
            raise InvalidInput("format and overwrite go with disks-only", what="restore options")
        return self._restores().prepare(
            vm, point, RestoreMode(mode), from_vault=from_vault, **options
        )

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

    # --- running ---------------------------------------------------------------------------------

    def claim_next(self) -> Job | None:
        """Claim the oldest queued job for this node, or None when there is none."""
        now = self.clock()
        runner = self.runner
        with self.uow() as uow:
            host = runner.node.identity.host if runner.node is not None else None
            job = uow.jobs.claim_next(runner.pid, now, runner.node_id, runner.lease_until(), host)
            if job is None:
                return None
            who = (
                f"node {runner.node_id}, pid {runner.pid}"
                if runner.node_id
                else f"pid {runner.pid}"
            )
            uow.jobs.append_log(job.id, f"claimed by worker ({who})", now)
            uow.commit()
        return job

    def execute(self, job: Job) -> Job:
        """Run a claimed job to its end; returns it as the catalog has it afterwards.  Its
        lease is renewed by this node's heartbeat from now on (services/nodes.py)."""
        node = self.runner.node
        with node.hold(job.id) if node is not None else nullcontext():
            return self._execute(job)

    def _execute(self, job: Job) -> Job:
        self.runner.adopt(job)
        error: VmvaultError | None = None
        returned: Any = None
        try:
            returned = self._dispatch(job)
        except VmvaultError as exc:  # refused before its work began (or after it ended)
            error = exc
        except Exception as exc:
            self._log(job, "internal error:\n" + traceback.format_exc())
            error = InternalError(f"{type(exc).__name__}: {exc}")
        finally:
            unstarted = self.runner.adopted is not None
            self.runner.adopt(None)
        with self.uow() as uow:
            current = uow.jobs.get(job.id)
        assert current is not None
        if not current.state.final:
            if error is None:
                error = InternalError(f"request {job.request} started no {job.type.value} job")
            cancelled = unstarted and current.state is JobState.CANCELLING
            current = self.runner.finish(current, None if cancelled else error, cancelled)
        elif error is not None and not unstarted:
            self._log(job, f"after the job: {error.code} {error.text}")
        if self.on_outcome is not None:
            try:
                self.on_outcome(job, returned)
            except Exception:  # the job has ended as it should: its outcome is extra
                self._log(job, "outcome not recorded:\n" + traceback.format_exc())
        return current

    def _log(self, job: Job, line: str) -> None:
        with self.uow() as uow:
            uow.jobs.append_log(job.id, line, self.clock())
            uow.commit()

    def _keep_until(self, job: Job) -> datetime | None:
        """A queued backup's ``keep_until``, unless it has passed while queued."""
        until = (job.request or {}).get("keep_until")
        keep_until = datetime.fromisoformat(until) if until else None
        if keep_until is not None and keep_until <= self.clock():  # checked when queued
            self._log(job, f"keep-until {until} has passed while queued: not pinned")
            return None
        return keep_until

    def _dispatch(self, job: Job) -> Any:
        """Run the job's request; what its service returned."""
        req = job.request or {}
        op = req.get("op")
        if op == "backup":
            return self._backups().backup(
                job.vault,
                [req["vm"]],
                keep_until=self._keep_until(job),
                require=req.get("require"),
            )
        if op == "backup-set":
            return self._sets().backup_set(job.vault, req["vms"], keep_until=self._keep_until(job))
        if op == "verify":
            vm_ref = req.get("vm")
            return self._points().verify(job.vault, point_id=req.get("point"), vm_ref=vm_ref)
        if op == "gc":
            return self._points().gc(job.vault)
        if op == "restore-test":
            return self._restores().restore_test(
                req["vm"], req["point"], None, req.get("from_vault")
            )
        if op == "copy":
            return self._copies().run_request(req)
        if op == "restore":
            return self._prepare_restore(req)()
        raise InvalidInput(f"unknown operation {op!r}", what=f"request of job {job.id}")
