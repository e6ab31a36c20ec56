"""Backing up several VMs as one all-or-nothing set (``vmvault backup VM… --set``; docs/sets.md).

One ``backup-set`` job (the parent) runs one ``backup`` child job per VM, each in its own
thread, through the ordinary backup (:meth:`BackupService.member_work`): the children meet at
a :class:`~vmvault.services.backup.set_gate.SetGate` before they freeze (``ready``), inside
their freeze / pause window right after their libvirt backup job began (``held``: bounded by
``hold_timeout``), once their indexes are written (``written``) and once their manifests are
(``published``): the last to arrive there commits every VM's catalog rows and
``set-published`` in one transaction (:meth:`SetRun.all_published`), so the catalog holds
the whole set or none of it.  A child that fails breaks the gate: every other child raises
where it waits, or is cancelled while it reads, and undoes its own backup; the set job then
removes whatever of the set was written (:meth:`SetUndo.roll_back`, retried from the journal
when the vault refused).

The parent watches its own cancel (``jobs cancel`` of the set job, or Ctrl-C in the main
thread) and passes it on to every child until every index is written.  A process killed
mid-set leaves the set job and its children active: start-up recovery (services/recovery.py)
cleans each child's VM first, as for any backup, then :meth:`BackupSetService.clean_up`
removes whatever of an unpublished set exists.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vmvault.domain.backup_set import (
    SetChild,
    SetResult,
    SetStep,
    new_set_id,
    unfinished_set,
)
from vmvault.domain.errors import (
    BackupSetFailed,
    BackupSetSpansHosts,
    Cancelled,
    InternalError,
    InvalidInput,
    JobNotActive,
    SetIncomplete,
    SetNotFound,
    VmvaultError,
)
from vmvault.domain.host_uri import host_key
from vmvault.domain.job import Job, JobType, JournalStep
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmItem
from vmvault.services.backup.set_gate import WRITTEN
from vmvault.services.backup.set_run import Member, SetRun, sigint_cancels
from vmvault.services.backup.set_undo import SetUndo
from vmvault.services.backups import BackupService
from vmvault.services.context import Service, ServiceContext
from vmvault.services.jobs import JobContext, JobOutcome, JobQueries

#: How long the first VM of a set, frozen or paused, waits for the last (``BACKUP_SET_TIMEOUT``;
#: ``VMVAULT_SET_HOLD_TIMEOUT``, at most 60 s: docs/sets.md).
HOLD_TIMEOUT = 30.0
#: How long a planned VM waits for the others to be planned before it freezes.
READY_TIMEOUT = 600.0
#: How often the set job looks at its own cancel and its children.
WATCH_EVERY = 0.2


@dataclass
class SetOutcome(JobOutcome[SetResult]):
    """The set job's outcome and each child backup job's."""

    children: list[JobOutcome[RecoveryPoint]] = field(default_factory=list)


class BackupSetService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        backups: BackupService,
        *,
        hold_timeout: float = HOLD_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
        parallel: int | None = None,
    ) -> None:
        super().__init__(ctx)
        self.backups = backups
        self.undo = SetUndo(ctx.uow, ctx.vaults, backups.driver, ctx.clock)
        self.hold_timeout = hold_timeout
        self.ready_timeout = ready_timeout
        #: how many VMs of a set read their disks at once (the host's cores bound it)
        self.parallel = parallel if parallel is not None else max(1, ctx.workers)

    # --- the set ------------------------------------------------------------------------------

    def choose(self, vault_name: str | None, refs: Sequence[str]) -> tuple[Vault, list[VmItem]]:
        """The vault and the set's VMs (at least two, one host); refused before anything."""
        vault, chosen = self.backups.resolve(vault_name, refs)
        if len(chosen) < 2:
            raise InvalidInput("a set needs at least two different VMs", what="VM list")
        hosts = sorted({host_key(vm.host_uri) for vm in chosen})
        if len(hosts) > 1:  # no instant across hosts (docs/sets.md, "Sets across hosts")
            raise BackupSetSpansHosts(hosts=", ".join(hosts))
        # the set runs on its host's node, as its members; a pulled host has none: refused
        self.backups.place(chosen, pull=False)
        return vault, chosen

    def backup_set(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        keep_until: datetime | None = None,
    ) -> SetOutcome:
        """Back up ``refs`` as one set: a point for every VM, or for none."""
        vault, chosen = self.choose(vault_name, refs)
        children: list[JobOutcome[RecoveryPoint]] = []
        label = "set: " + ", ".join(vm.name for vm in chosen)
        run = self.runner.run(
            JobType.BACKUP_SET,
            vault.name,
            None,
            label[:255],
            lambda ctx: self._run(vault, chosen, keep_until, ctx, children),
        )
        return SetOutcome(run.job, run.result, run.error, children=children)

    def _run(
        self,
        vault: Vault,
        vms: list[VmItem],
        keep_until: datetime | None,
        ctx: JobContext,
        outcomes: list[JobOutcome[RecoveryPoint]],
    ) -> SetResult:
        set_id = new_set_id(self.clock())
        jobs = self._start_children(vault, vms, ctx)
        pairs = list(zip(vms, jobs, strict=True))
        ctx.record(
            SetStep.PLANNED,
            set_id=set_id,
            vms=[SetChild(j.id, vm.uuid, vm.label).to_json() for vm, j in pairs],
        )
        ctx.log(f"backup set {set_id}: " + ", ".join(f"{vm.label} (job {j.id})" for vm, j in pairs))
        run = SetRun(self, ctx, set_id, vms)
        self._retry_rollbacks(ctx)
        results: dict[int, JobOutcome[RecoveryPoint]] = {}
        threads = [
            threading.Thread(
                target=self._child,
                args=(run, vault, vm, job, keep_until, results),
                name=f"set-{vm.name}",
                daemon=True,
            )
            for vm, job in pairs
        ]
        with sigint_cancels(run):  # Ctrl-C cancels the set: the outcome below still runs
            for t in threads:
                t.start()
            self._watch(ctx, run, jobs, threads)
            outcomes += [results[j.id] for j in jobs]
            failed = [o for o in outcomes if o.result is None]
            if run.published is None:  # a broken gate: no row of the set was committed
                self._roll_back(ctx, run, jobs)
                if run.interrupted.is_set():
                    raise KeyboardInterrupt
                raise self._cause(run, failed)
        if ctx.cancelled() or run.interrupted.is_set():
            ctx.log("cancel requested after every index was written: ignored, it is complete")
        for o in failed:  # after the set was committed (pruning a checkpoint, …): it stays
            ctx.warn(f"{o.job.vm_name}: {o.error.text if o.error else 'failed'} (its point stays)")
        with self.uow() as uow:
            by_id = {p.id: p for p in uow.points.in_set(set_id)}
        points = [by_id[pid] for pid in run.published if pid in by_id]
        assert run.instant is not None
        result = SetResult(set_id, run.instant, run.window_ms, points)
        ctx.log(f"backup set {set_id}: {len(points)} points, set window {result.window_ms} ms")
        if self.backups.after_backup is not None:
            for vm, p in zip(vms, points, strict=True):
                self.backups.after_backup(vault, vm, p)
        return result

    def _roll_back(self, ctx: JobContext, run: SetRun, jobs: list[Job]) -> None:
        """Remove whatever of the failed set was written (:meth:`SetUndo.roll_back`)."""
        with run.lock:
            ids = list(run.points.values())
        try:
            done, left = self.undo.roll_back(ctx.job, run.set_id, [j.id for j in jobs], ids)
        except Exception as exc:  # the catalog itself failed: the set job keeps its cause
            ctx.warn(f"could not roll the set back ({type(exc).__name__}: {exc})")
            return
        for line in done:
            ctx.log(line)
        if left:
            ctx.warn(
                f"{len(left)} point(s) of the set could not be removed ({', '.join(left)}): "
                "the next start-up recovery or set backup removes them (journal: "
                f"{SetStep.ROLLING_BACK} without {SetStep.ROLLED_BACK})"
            )

    def _retry_rollbacks(self, ctx: JobContext) -> None:
        """Finish what earlier failed sets could not remove (:meth:`SetUndo.retry`)."""
        try:
            redone = self.undo.retry()
        except Exception as exc:  # never keeps this set from running
            ctx.log(f"could not retry earlier sets' rollbacks: {type(exc).__name__}: {exc}")
            return
        for job, _ in redone:
            ctx.log(f"finished the rollback of set job {job.id} (see its log)")

    def _start_children(self, vault: Vault, vms: list[VmItem], ctx: JobContext) -> list[Job]:
        """One child job per VM, each holding its VM (a busy VM refuses the whole set)."""
        jobs: list[Job] = []
        try:
            for vm in vms:
                jobs.append(
                    self.runner.start(
                        JobType.BACKUP, vault.name, vm.uuid, vm.label, parent_id=ctx.job.id
                    )
                )
        except VmvaultError:
            for job in jobs:
                self.runner.finish(job, None, cancelled=True)
            raise
        return jobs

    def _child(
        self,
        run: SetRun,
        vault: Vault,
        vm: VmItem,
        job: Job,
        keep_until: datetime | None,
        results: dict[int, JobOutcome[RecoveryPoint]],
    ) -> None:
        def work(ctx: JobContext) -> RecoveryPoint:
            ctx.log(f"part of backup set {run.set_id} (job {run.job.job.id})")
            try:
                return self.backups.member_work(vault, vm, keep_until, Member(run, vm))(ctx)
            except VmvaultError as exc:
                run.gate.fail(vm.label, exc)
                raise
            except BaseException as exc:
                run.gate.fail(vm.label, InternalError(f"{type(exc).__name__}: {exc}"))
                raise

        try:
            results[job.id] = self.runner.execute(job, work)
        except BaseException as exc:  # never leave the set waiting for this thread
            err = InternalError(f"{type(exc).__name__}: {exc}")
            run.gate.fail(vm.label, err)
            results[job.id] = JobOutcome(job, None, err)

    def _watch(
        self, ctx: JobContext, run: SetRun, jobs: list[Job], threads: list[threading.Thread]
    ) -> None:
        """Until every child has ended: pass a cancel of the set (or a Ctrl-C) on to the
        children, and stop the others' reads as soon as one child failed.  Once every
        VM's indexes are written a cancel is ignored (the set commits within moments)."""
        stopped = False
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(WATCH_EVERY / len(threads))
            asked = ctx.cancelled() or run.interrupted.is_set()
            if not stopped and asked and not run.gate.passed(WRITTEN):
                run.gate.fail(None, Cancelled(operation=f"backup set {run.set_id}"))
                ctx.log("cancel requested: cancelling every VM's backup")
            if not stopped and run.gate.broken:
                stopped = True
                self._cancel_children(jobs)

    def _cancel_children(self, jobs: list[Job]) -> None:
        queries = JobQueries(self.uow, self.clock)
        for job in jobs:
            try:
                queries.cancel(job.id)
            except JobNotActive:
                continue

    def _cause(self, run: SetRun, failed: list[JobOutcome[RecoveryPoint]]) -> VmvaultError:
        """What the set job fails with: the cancel, or the first VM's failure, named."""
        if isinstance(run.gate.failure, Cancelled):
            return run.gate.failure
        vm, err = run.gate.failed_vm, run.gate.failure
        if err is None and failed:  # cannot happen: a failed child breaks the gate first
            err, vm = failed[0].error, failed[0].job.vm_name
        text = err.text if err is not None else "unknown"
        return BackupSetFailed(vm=vm or "?", reason=text)

    def clean_up(self, job: Job, steps: Sequence[JournalStep]) -> list[str]:
        """A set job whose process died (start-up recovery, after its children's VMs were
        cleaned up): :meth:`SetUndo.clean_up`."""
        return self.undo.clean_up(job, steps)

    # --- reading sets -----------------------------------------------------------------------------

    def points(self, set_id: str) -> list[RecoveryPoint]:
        """The points of a set (``points list --set``, ``restore --set``) — only of a set
        whose job committed it whole (``SET_INCOMPLETE`` otherwise: never a part of a set)."""
        with self.uow() as uow:
            found = uow.points.in_set(set_id)
            child = uow.jobs.get(found[0].job_id) if found and found[0].job_id else None
            parent = child.parent_id if child is not None else None
            steps = uow.jobs.steps(parent) if parent is not None else None
        if not found:
            raise SetNotFound(set=set_id)
        ids = {p.id for p in found}
        if steps is not None:  # the set job's journal says what it committed
            left = unfinished_set(parent or 0, steps)
            published = next((s for s in steps if s.step == SetStep.PUBLISHED), None)
            expected = len(left.children) if left is not None else len(found)
            if left is None or not left.published or published is None:
                why = "its set job never committed it"
                raise SetIncomplete(set=set_id, found=len(found), expected=expected, why=why)
            if ids != {str(p) for p in published.data.get("points", [])}:
                why = "the catalog and its set job disagree"
                raise SetIncomplete(set=set_id, found=len(found), expected=expected, why=why)
        else:  # no job left to ask: the manifest names the set's VMs
            store = self.vaults.open_store(self.vaults.resolve(found[0].vault))
            vms = store.read_manifest(found[0].id).extra.get("set", {}).get("vms", [])
            if len(vms) != len(found):
                why = "its manifest names more VMs"
                raise SetIncomplete(set=set_id, found=len(found), expected=len(vms), why=why)
        return found

    def children(self, job_id: int) -> list[Job]:
        with self.uow() as uow:
            return sorted(uow.jobs.find(parent_id=job_id), key=lambda j: j.id)
