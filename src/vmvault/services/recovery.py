"""Start-up recovery: jobs whose process died, and what they left behind.

A vmvault process that dies mid-job (killed, OOM, power loss) leaves its job *in-progress* (or
*cancelling*) in the catalog, holding its VM's conflict key, and may leave the VM in a state no
one should find it in: a libvirt pull-backup job still running, a guest frozen or paused, NBD
sockets and scratch files, a checkpoint that no recovery point uses, a half-written point in
the vault, staged images of a restore.  :meth:`RecoveryService.recover` — which ``vmvault
serve`` calls at start-up — finds every such job and, for each:

1. cleans up its VM while the dead job still holds the VM's conflict key (so no new job of
   this catalog can start on the VM meanwhile; if one takes it over anyway, by closing the
   orphan itself, deletion stops and that job's own clean-up finishes the work):

   * ``backup``: :meth:`BackupService.clean_up`, told what the job's journal says
     (:func:`~vmvault.domain.recovery_point.unfinished_backup`) — the libvirt job, thaw /
     resume, work files, stray ``vmvault-*`` checkpoints, the half-written point it was
     writing (docs/backup.md, "The journal of a backup job");
   * ``restore``: :meth:`RestoreService.clean_up`, from the job's journal — staged images
     and partial files; a ``--replace`` interrupted during its switch is rolled back; a
     half-made new VM or a restore test's VM is removed (docs/restore.md, "The journal");
   * ``backup-set``: after its children (each a ``backup``, cleaned up as above — the set
     jobs are recovered last), :meth:`BackupSetService.clean_up` removes whatever of a set
     that was not fully published exists (docs/sets.md); then the rollbacks that failed
     sets left unfinished (the vault was unreachable) are retried (``SetUndo.retry``);
   * ``export``: its socket and overlay files (the server died with the process:
     :func:`vmvault.services.exports.clean_up`);
   * other types touch nothing that needs undoing (a GC or verify is safe to interrupt);

2. writes what it did into the job's log, one ``recovery:`` line each;
3. closes the job ``failed`` with ``JOB_INTERRUPTED``.

Only orphaned jobs are touched — their node's lease has passed, or their process on this
machine is gone (domain/node.py); never a job this process runs now — and of those only the
ones this node owns: a job that touches its VM's disks goes to a node of the VM's host, when
it (re)starts, since only it can thaw the guest and abort the libvirt job; an export to a node
of the machine that ran it (its files are there); any other job to any node (queued jobs
never ran and are left to the queue).  ``vmvault serve``
calls :meth:`recover` at start-up and again every lease period, so a node also closes the
jobs it could not end itself while the catalog was away.  A
second call finds nothing left to do.  A backup started later on the VM runs the same backup
clean-up first, so a job closed by someone else (``JobRunner.start`` closes a dead holder of
the key it needs) still gets its VM cleaned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import JobInterrupted, VmvaultError
from vmvault.domain.job import Job, JobType, JournalStep, conflict_key
from vmvault.domain.placement import touches_disks
from vmvault.domain.recovery_point import unfinished_backup
from vmvault.domain.vm import VmItem
from vmvault.services import exports
from vmvault.services.backups import BackupService
from vmvault.services.context import Service, ServiceContext
from vmvault.services.ports import UnitOfWork
from vmvault.services.restore import RestoreService

if TYPE_CHECKING:
    from vmvault.services.backup_sets import BackupSetService


@dataclass
class RecoveredJob:
    """A job whose process had died: now failed with ``JOB_INTERRUPTED``."""

    job: Job
    actions: list[str] = field(default_factory=list)  # what was cleaned up, for the log


class RecoveryService(Service):
    def __init__(
        self, ctx: ServiceContext, backups: BackupService, restores: RestoreService
    ) -> None:
        super().__init__(ctx)
        self.backups = backups
        self.restores = restores
        #: cleans up after backup sets (bootstrap sets it)
        self.sets: BackupSetService | None = None

    def recover(self) -> list[RecoveredJob]:
        """Close every in-progress or cancelling job that is orphaned, after cleaning up
        what it left; returns them, oldest first.  Jobs of live processes are not touched.
        Call it before this process starts any job (``vmvault serve`` does, at start-up)."""
        now = self.clock()
        with self.uow() as uow:
            active = uow.jobs.active()  # queued jobs have no pid nor lease: left to the queue
            # Our own pid counts as dead for a job of no node: this is called before this
            # process runs any job, so such a job is a previous process's whose pid was
            # reused (containers).  A job of a node is judged by its lease (domain/node.py).
            dead = [
                j
                for j in active
                if (j.node is None and j.pid is not None and j.pid == self.runner.pid)
                or self.runner.orphaned(uow, j, now)
            ]
            dead = [j for j in dead if self._ours(uow, j)]
        # a set job after its children: their VMs are clean before the set's points go
        order = sorted(dead, key=lambda j: (j.type is JobType.BACKUP_SET, j.id))
        recovered = [self._recover(job) for job in order]
        if self.sets is not None:  # failed sets whose rollback could not remove everything
            recovered += [RecoveredJob(job, acts) for job, acts in self.sets.undo.retry()]
        return recovered

    def _ours(self, uow: UnitOfWork, job: Job) -> bool:
        """Whether this node recovers ``job``: an export by a node of the machine that ran it
        (its socket and overlay are files there); a job that touches its VM's disks
        (domain/placement.py ``touches_disks``) by a node of the VM's host (it can thaw the
        guest and abort the libvirt job), when it starts or finds it, or, for a VM of a host
        where no node ever ran (one node managing remote hosts, as in the all-in-one set-up),
        by whichever node finds it; any other job by any node."""
        me = self.runner.node
        if me is None:
            return True
        if job.type is JobType.EXPORT:
            ran = uow.nodes.get(job.node) if job.node is not None else None
            # no row (forgotten after a day, or a job from before nodes): whoever finds it
            return ran is None or ran.machine == me.identity.machine
        if job.vm_uuid is None or not touches_disks(job.type, job.request):
            return True
        vm = uow.vms.get(job.vm_uuid)
        if vm is None or vm.host_uri == me.identity.host:
            return True
        return not any(n.host == vm.host_uri for n in uow.nodes.all())

    def _recover(self, job: Job) -> RecoveredJob:
        with self.uow() as uow:
            steps = uow.jobs.steps(job.id)
            vm = uow.vms.get(job.vm_uuid) if job.vm_uuid else None

        def still_ours() -> bool:
            key = conflict_key(job.type, job.vault, job.vm_uuid)
            if key is None:
                return True
            with self.uow() as uow:
                holder = uow.jobs.holder(key)
            return holder is not None and holder.id == job.id

        actions: list[str] = []
        try:
            if job.type is JobType.BACKUP and vm is not None:
                actions = self._backup(job, vm, steps, still_ours)
            elif job.type is JobType.BACKUP_SET and self.sets is not None:
                actions = self.sets.clean_up(job, steps)
            elif job.type is JobType.RESTORE:
                actions = self.restores.clean_up(job, steps, still_ours)
            elif job.type is JobType.EXPORT:
                actions = exports.clean_up(job, steps)
        except Exception as exc:  # one job's clean-up never keeps the others from theirs
            actions.append(f"clean-up stopped: {type(exc).__name__}: {exc}")
        now = self.clock()
        with self.uow() as uow:
            for line in actions or ["nothing to clean up"]:
                uow.jobs.append_log(job.id, f"recovery: {line}", now)
            current = uow.jobs.get(job.id)
            uow.commit()
        if current is not None and current.state.active:
            detail = "cleaned up after it, see the job log" if actions else None
            current = self.runner.finish(current, JobInterrupted(detail, pid=job.pid))
        return RecoveredJob(current or job, actions)

    def _backup(
        self, job: Job, vm: VmItem, steps: list[JournalStep], still_ours: Callable[[], bool]
    ) -> list[str]:
        """The dead backup's journal says what it left (docs/backup.md, "Journal")."""
        actions: list[str] = []
        store: VaultStore | None = None
        try:
            store = self.vaults.open_store(self.vaults.resolve(job.vault))
        except VmvaultError as exc:
            actions.append(
                f"vault {job.vault} not opened ({exc.text}): a half-written point is left "
                "to the next gc"
            )
        left = unfinished_backup(job.id, steps)
        actions += self.backups.clean_up(
            vm, store, [left] if left is not None else [], still_ours=still_ours
        )
        return actions
