"""The scheduler: turns due slots of policies (and of the GC schedule) into queued jobs.

Each schedule has a name — ``policy:<policy name>`` or ``gc:<vault>`` — and a row in the
catalog's ``schedule_state`` with the last slot the scheduler handled.  A :meth:`tick`:

1. for each schedule, asks :func:`~vmvault.domain.schedule.catch_up` for the one slot due
   in ``(last handled, now]``.  Before a schedule's first slot, "last handled" is the
   policy's last change (``updated_at``; a new or edited schedule never fires for a slot
   before it existed) or, for GC, the moment the server first saw the vault;
2. in **one transaction**: advances the row to that slot with compare-and-set and queues the
   slot's jobs.  A second server, or the same one after a restart, finds the row moved and
   creates nothing, so every slot's jobs are created exactly once;
3. however many slots were missed while the server was down, only the latest is run (caught
   up once, not once per missed slot).

A policy's slot queues a ``backup`` job for every VM it protects (state ``protected``).  A VM
that already has an active job gets a ``failed`` backup job instead, with
``OPERATION_IN_PROGRESS`` and the holder's id, so a skipped backup shows on the dashboard; it
is ended by :func:`~vmvault.services.jobs.close_job` like every job, so its end hooks (the
``failed`` notification) run.
Retention runs after each successful backup (BackupService's hook), not here.

**One scheduler at a time.** Every node's ``vmvault serve`` runs a scheduler, but a tick does
anything only while its node holds the catalog's leader lease (``leases`` row
:data:`~vmvault.domain.node.SCHEDULER_LEASE`, domain/node.py): each tick takes or renews it
for :data:`~vmvault.domain.node.LEASE`; when the leader stops renewing (its node died or lost
the catalog), another node's next tick after the lease has expired takes over.  The lease
makes one scheduler *active*; the compare-and-set of step 2 is what makes every slot fire
*exactly once* even if two ever overlap (a leader whose clock runs late, a tick begun just
before its lease expired): the next leader catches the missed slot up (step 3), so across a
failover no slot is lost and none runs twice.

Nothing here reads the wall clock: ``clock`` is injected (tests walk a simulated day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vmvault.domain.errors import OperationInProgress
from vmvault.domain.job import Job, JobConflict, JobState, JobType, conflict_key
from vmvault.domain.node import LEASE, SCHEDULER_LEASE
from vmvault.domain.schedule import Schedule, catch_up, next_slot, slot_key
from vmvault.domain.vm import VmItem, VmState
from vmvault.services.jobs import EndHook, close_job
from vmvault.services.ports import UnitOfWork, UnitOfWorkFactory
from vmvault.services.queue import queue_job, queue_jobs


@dataclass
class Fired:
    """One slot handled: its schedule, identity, and the jobs it created."""

    schedule: str
    slot: datetime
    key: str
    jobs: list[Job] = field(default_factory=list)


class SchedulerService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        gc_schedule: Schedule | None,
        on_end: Sequence[EndHook] = (),
        node: str | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.gc_schedule = gc_schedule
        #: The node this scheduler runs for: it ticks only while that node holds the leader
        #: lease (None: a scheduler alone, no lease).
        self.node = node
        #: How long a tick's lease lasts: more than the time between two ticks.
        self.lease = lease
        #: Called after a tick queued jobs (the server wakes its workers).
        self.on_queued: Callable[[], None] | None = None
        #: The end hooks of a job the scheduler creates already failed (JobRunner's).
        self.on_end: Sequence[EndHook] = on_end

    def tick(self) -> list[Fired]:
        """Queue the jobs of every slot due now, if this node leads; returns what fired."""
        now = self.clock()
        fired: list[Fired] = []
        if not self.lead(now):
            return fired
        with self.uow() as uow:
            policies = list(uow.policies.all())
            vaults = [v.name for v in uow.vaults.all()]
        for rec in policies:
            name = f"policy:{rec.name}"
            f = self._fire(name, rec.policy.schedule, rec.updated_at, now, rec.vault, rec.name)
            if f is not None:
                fired.append(f)
        if self.gc_schedule is not None:
            for vault in vaults:
                f = self._fire(f"gc:{vault}", self.gc_schedule, None, now, vault, None)
                if f is not None:
                    fired.append(f)
        if any(f.jobs for f in fired) and self.on_queued is not None:
            self.on_queued()
        return fired

    def lead(self, now: datetime) -> bool:
        """Take or renew the leader lease; whether this node leads until now + ``lease``."""
        if self.node is None:
            return True
        with self.uow() as uow:
            leads = uow.leases.acquire(SCHEDULER_LEASE, self.node, now, now + self.lease)
            uow.commit()
        return leads

    def next_due(self) -> datetime | None:
        """The earliest slot after now of any schedule (the server sleeps until then)."""
        now = self.clock()
        with self.uow() as uow:
            schedules = [r.policy.schedule for r in uow.policies.all()]
        if self.gc_schedule is not None:
            schedules.append(self.gc_schedule)
        return min((next_slot(s, now) for s in schedules), default=None)

    def _fire(
        self,
        name: str,
        schedule: Schedule,
        changed: datetime | None,
        now: datetime,
        vault: str,
        policy: str | None,
    ) -> Fired | None:
        with self.uow() as uow:
            last = uow.schedules.last(name)
            if last is None and changed is None:  # GC: armed from the first time we see it
                uow.schedules.advance(name, None, now, None, now)
                uow.commit()
                return None
            since = max(d for d in (last, changed) if d is not None)
            due = catch_up(schedule, since, now)
            if due is None:
                return None
            key = slot_key(schedule, due)
            if not uow.schedules.advance(name, last, due, key, now):
                return None  # another scheduler handled it: the transaction creates nothing
            f = Fired(name, due, key)
            if policy is not None:
                f.jobs = self._backups(uow, vault, policy, key, now)
            else:
                origin = f"gc schedule at {key}"
                f.jobs = [queue_job(uow, "gc", vault, None, {}, origin, now)]
            uow.commit()
        return f

    def _backups(
        self, uow: UnitOfWork, vault: str, policy: str, key: str, now: datetime
    ) -> list[Job]:
        """The slot's jobs, in a number of queries that does not grow with its VMs: the
        protected VMs read at once, their conflict keys checked at once, the jobs of the free
        ones inserted at once (:func:`queue_jobs`); a busy VM gets its failed job apart."""
        origin = f"policy {policy} at {key}"
        due = [
            vm for vm in uow.vms.all(vault=vault, state=VmState.PROTECTED) if vm.policy == policy
        ]
        record = uow.policies.get(policy)
        if record is not None and record.policy.as_set and len(due) > 1:  # docs/sets.md
            group: dict[str, Any] = {"vms": [vm.uuid for vm in due], "keep_until": None}
            hosts = {vm.host_uri for vm in due}  # claimed by a node of its host (one host)
            group["host"] = next(iter(hosts)) if len(hosts) == 1 else None
            return [queue_job(uow, "backup-set", vault, None, group, origin, now)]
        keys = {vm.uuid: conflict_key(JobType.BACKUP, vault, vm.uuid) or "" for vm in due}
        busy = uow.jobs.holders(list(keys.values()))
        free = [vm for vm in due if keys[vm.uuid] not in busy]
        items = [(vm.uuid, vm.label, {"vm": vm.uuid, "keep_until": None}) for vm in free]
        queued = queue_jobs(uow, "backup", vault, items, origin, now)
        if queued is None:  # a job of one of them was queued meanwhile: one by one
            return [self._backup(uow, vault, vm, origin, now) for vm in due]
        jobs = dict(zip((vm.uuid for vm in free), queued, strict=True))
        for vm in due:
            if vm.uuid not in jobs:
                jobs[vm.uuid] = self._skipped(uow, vault, vm, busy[keys[vm.uuid]], origin, now)
        return [jobs[vm.uuid] for vm in due]

    def _backup(self, uow: UnitOfWork, vault: str, vm: VmItem, origin: str, now: datetime) -> Job:
        """One VM's backup job of a slot: queued, or failed when the VM is busy."""
        request = {"vm": vm.uuid, "keep_until": None}
        try:
            return queue_job(uow, "backup", vault, (vm.uuid, vm.label), request, origin, now)
        except JobConflict as conflict:
            return self._skipped(uow, vault, vm, conflict.holder, origin, now)

    def _skipped(
        self, uow: UnitOfWork, vault: str, vm: VmItem, holder: Job, origin: str, now: datetime
    ) -> Job:
        """The ``failed`` backup job of a VM that already has an active job ``holder``."""
        request = {"vm": vm.uuid, "keep_until": None}
        err = OperationInProgress(vm=vm.label, job=holder.id, job_type=holder.type.value)
        job = uow.jobs.create(
            JobType.BACKUP, vault, vm.uuid, vm.label, JobState.FAILED, now, None, None,
            request={"op": "backup", **request}, origin=origin,
        )  # fmt: skip
        job.started_at = now
        uow.jobs.append_log(job.id, f"{origin}: not started", now)
        # ended like every job: the end hooks write its notifications
        close_job(uow, job, JobState.FAILED, err, now, self.on_end)
        return job
