"""Running queued jobs (services/queue.py queues them): claim the oldest, run its request
through the service of its ``op``, end the job — the server's workers call
:meth:`QueueRuns.claim_next` and :meth:`QueueRuns.execute`.

What each ``op`` of a request (``jobs.request``, JSON) runs:

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
                   ``overwrite``, ``instant`` (null: the default)
=================  ==========================================================  ==============

A request is checked again when it runs (the world may have changed since it was queued; a
request that no longer holds ends its job ``failed`` with the error's code and remedy).
Claiming is atomic (``queued → in-progress`` only if still queued; ``FOR UPDATE SKIP LOCKED``
on PostgreSQL); the worker that claims a job runs it as its node, with a lease its heartbeat
renews (services/queue.py's invariants).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from vmvault.domain.errors import InternalError, InvalidInput, VmvaultError
from vmvault.domain.job import Job, JobState
from vmvault.domain.restore import RestoreMode
from vmvault.services.backup_sets import BackupSetService
from vmvault.services.backups import BackupService
from vmvault.services.context import Service, ServiceContext
from vmvault.services.copies import CopyService
from vmvault.services.jobs import written
from vmvault.services.points import PointService
from vmvault.services.protection import ProtectionService
from vmvault.services.restore import RestoreService

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
    "instant",
)


class QueueRuns(Service):
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
        #: Called after each run of a claimed job with the job (as claimed) and what its
        #: service returned (None when it raised): the server records the outcome
        #: (vmvault/outcomes.py) for the remote CLI.
        self.on_outcome: Callable[[Job, Any], None] | None = None

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
            line = "internal error:\n" + traceback.format_exc()
            written(lambda: self._log(job, line), f"job {job.id}: a log line")
            error = InternalError(f"{type(exc).__name__}: {exc}")
        finally:
            unstarted = self.runner.adopted is not None
            self.runner.adopt(None)
        current = written(lambda: self._close(job, error, unstarted), f"job {job.id}: its end")
        if self.on_outcome is not None:
            try:
                self.on_outcome(job, returned)
            except Exception:  # the job has ended as it should: its outcome is extra
                self._log(job, "outcome not recorded:\n" + traceback.format_exc())
        return current

    def _close(self, job: Job, error: VmvaultError | None, unstarted: bool) -> Job:
        """End ``job`` unless its run did; returns it as the catalog has it."""
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
