"""Backing up VMs: one ``backup`` job per VM (design §2–§3).

Order of one backup, and what each step leaves behind if it fails (the steps live in
:mod:`vmvault.services.backup`):

The point's consistency (``domain.consistency``) is known only once the point in time is
taken: a ``require`` it does not meet fails the backup ``CONSISTENCY_NOT_MET`` right there,
before any disk is read — the job is aborted, its checkpoint deleted, no point written.

0. clean up what an earlier backup of the VM that died left behind
   (:meth:`BackupService.clean_up`, from that job's journal): its libvirt job, a frozen or
   paused guest, work files, its checkpoint, its half-written point;
1. re-read the domain (gone → ``VM_DELETED``); plan (:mod:`.backup.plan`): the method and, per
   disk, full or incremental (``domain.recovery_point``), repairing the checkpoint chain when
   libvirt lost a checkpoint whose bitmaps are still in the images.  Journal: ``planned``;
2. take the point in time (libvirt pull backup with a new checkpoint ``vmvault-<point>``,
   guest frozen or paused just around ``backupBegin``) — or, for a shut-off VM, export its
   images with qemu-nbd.  The adapter hands back a typed
   :class:`~vmvault.domain.recovery_point.TakenPoint`.  Journal: ``freezing`` (before the
   window), ``point-taken`` (after it);
3. read every disk into the vault (:mod:`.backup.read`: chunks);
4. commit (:mod:`.backup.commit`): the indexes (``indexes-written``), the manifest — from
   here on the point exists (``manifest-written``) — then the catalog row, the checkpoint
   record and ``committed`` in one transaction (a set's member hands its rows to the set,
   which commits every VM's at once); delete the older vmvault checkpoints.

A failure before 4 deletes the new checkpoint and the point's index files (orphan chunks are
reclaimed by GC), so no half point and no stray checkpoint remain (:func:`.backup.cleanup.
discard`).

**Nothing touches the catalog while the guest is frozen or paused.**  Every journal step and
phase is written before the window or after it; inside it only the adapter's ``in_window``
hook runs, which calls :attr:`BackupService.window_observers` (in memory).  A cancel asked
meanwhile is seen at the first check after the guest is released.

**Phases** (:meth:`JobContext.phase`: logged, journaled, shown to ``runner.phase_observers``,
and a cancel point), each a place where a cancel stops the backup with the undo above:

* ``freezing`` — not for a shut-off VM: the point in time is about to be taken (the guest is
  frozen or paused next); a cancel here leaves the guest untouched and nothing begun;
* ``reading`` — the point in time is taken, no disk read yet (reads also check for a cancel
  between chunks, at most once a second);
* ``writing`` — every disk read, its chunks committed; the indexes are written next;
* ``committing`` — indexes written; the manifest and the catalog row are written next.  This
  is the last cancel point: once the manifest and the catalog row are written the backup is
  complete, and a cancel that arrives later is ignored (logged; the job ends completed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from vmvault.dataplane.vault import VaultStore
from vmvault.domain.backup_set import SetMember
from vmvault.domain.consistency import Consistency, meets, parse_required
from vmvault.domain.errors import ConsistencyNotMet, InvalidInput, VmDeleted
from vmvault.domain.host_uri import host_key
from vmvault.domain.inputs import check_until
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.recovery_point import BackupStep, RecoveryPoint, TakenPoint, UnfinishedBackup
from vmvault.domain.vault import Vault
from vmvault.domain.vm import EXCLUDED_BY_USER, VmItem
from vmvault.services import immutability
from vmvault.services.backup.cleanup import BackupCleanUp, discard
from vmvault.services.backup.commit import (
    point_rows,
    record_point,
    recovery_point,
    write_indexes,
    write_manifest,
)
from vmvault.services.backup.plan import BackupPlan, plan_backup
from vmvault.services.backup.read import read_disks
from vmvault.services.context import Service, ServiceContext
from vmvault.services.holdings import damage_recorded
from vmvault.services.jobs import JobContext, JobOutcome
from vmvault.services.ports import BackupDriver, Hypervisor, PointSession
from vmvault.services.vm_facts import refresh
from vmvault.services.vm_refs import MustBe, resolve_vms


@dataclass
class BackupOutcome(JobOutcome[RecoveryPoint]):
    """A backup job's outcome, with the ``prune`` job that retention ran after it (protected
    VMs only)."""

    prune: JobOutcome[Any] | None = None


class BackupService(Service):
    def __init__(self, ctx: ServiceContext, hypervisor: Hypervisor, driver: BackupDriver) -> None:
        super().__init__(ctx)
        self.hypervisor = hypervisor
        self.driver = driver
        self.cleanup = BackupCleanUp(ctx.uow, driver, ctx.clock)
        #: Called after each successful backup (bootstrap sets it: retention of a protected
        #: VM runs as its own ``prune`` job once the backup job has ended); what it returns
        #: comes back as :attr:`BackupOutcome.prune`.
        self.after_backup: (
            Callable[[Vault, VmItem, RecoveryPoint], JobOutcome[Any] | None] | None
        ) = None
        #: Called with the job inside the freeze / pause window, just before the backup job
        #: begins (tests and benchmarks hook in here).  They run while the guest is held:
        #: keep them in memory; a raise thaws / resumes the guest with nothing begun.
        self.window_observers: list[Callable[[Job], None]] = []

    def choose(self, vault_name: str | None, refs: Sequence[str]) -> tuple[Vault, list[VmItem]]:
        """The vault and the VMs to back up, each registered with it (one bad reference
        refuses the whole request before anything starts or is queued)."""
        vault, chosen = self.resolve(vault_name, refs)
        self.place(chosen)
        return vault, chosen

    def resolve(self, vault_name: str | None, refs: Sequence[str]) -> tuple[Vault, list[VmItem]]:
        """The vault and the VMs, each registered with it (no placement check yet)."""
        if not refs:
            raise InvalidInput("name at least one VM", what="VM list")
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            chosen = resolve_vms(uow, refs, vault=vault, must_be=MustBe.REGISTERED)
        return vault, chosen

    def place(self, vms: Sequence[VmItem], *, pull: bool = True) -> None:
        """HOST_NOT_SERVED / HOST_SERVED_ELSEWHERE: asked for, and run, on each VM's host
        (the live nodes read once for all of them) — but for the VMs of a host vmvault pulls
        from (``pull``; domain/pull.py), which any node backs up."""
        pulled = self.pulled_hosts() if pull else {}
        wanted = [(vm.host_uri, vm.label) for vm in vms if host_key(vm.host_uri) not in pulled]
        self.require_nodes(wanted, "backup")

    def pulled_hosts(self) -> dict[str, str]:
        """Host key → client PKI directory of every host vmvault pulls from."""
        with self.uow() as uow:
            return {host_key(h.uri): h.pull_tls for h in uow.hosts.all() if h.pull_tls}

    def backup(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        keep_until: datetime | None = None,
        require: str | None = None,
    ) -> list[BackupOutcome]:
        """One backup job per VM; every reference is checked before any job starts.

        ``keep_until``: retention leaves the new points alone until then (ad-hoc points).
        ``require``: the least consistency level of the new points (``--require``; None: the
        VM's policy's, if it has one) — a VM that cannot give it fails ``CONSISTENCY_NOT_MET``
        and keeps no point (docs/backup.md, "Consistency")."""
        required = parse_required(require)
        if keep_until is not None:
            keep_until = check_until(keep_until, self.clock())
        vault, chosen = self.choose(vault_name, refs)
        store = self.vaults.open_store(vault)
        outcomes = []
        for vm in chosen:
            work = partial(self._backup, vault, store, vm, keep_until, required)
            run = self.runner.run(JobType.BACKUP, vault.name, vm.uuid, vm.label, work)
            outcome = BackupOutcome(run.job, run.result, run.error)
            if outcome.result is not None and self.after_backup is not None:
                outcome.prune = self.after_backup(vault, vm, outcome.result)
            outcomes.append(outcome)
        return outcomes

    def member_work(
        self, vault: Vault, vm: VmItem, keep_until: datetime | None, member: SetMember
    ) -> Callable[[JobContext], RecoveryPoint]:
        """The work of one VM's backup as a member of a backup set (services/backup_sets.py
        runs it as the set's child job; the level required is its policy's, if any)."""
        store = self.vaults.open_store(vault)
        return partial(self._backup, vault, store, vm, keep_until, None, member=member)

    # --- one VM --------------------------------------------------------------------------------

    def _backup(
        self,
        vault: Vault,
        store: VaultStore,
        vm: VmItem,
        keep_until: datetime | None,
        require: Consistency | None,
        ctx: JobContext,
        member: SetMember | None = None,
    ) -> RecoveryPoint:
        """One VM's backup; ``member``: it is part of a backup set (services/backup_sets.py),
        which it waits for before it freezes, inside its window and before it publishes."""
        facts = self.hypervisor.domain_facts(vm.host_uri, vm.uuid)
        if facts is None:
            raise VmDeleted(vm=vm.label, host=vm.hostname)
        left = self.cleanup.unfinished(vm, besides=ctx.job.id)
        for line in self.clean_up(vm, store, left):
            ctx.log(f"left by an interrupted backup: {line}")
        unknown = refresh(self.uow, vm, facts, self.clock())
        if unknown:
            ctx.warn(unknown)
        for d in vm.excluded_disks:  # the operator's choice is logged; the others warned
            say = ctx.log if d.reason == EXCLUDED_BY_USER else ctx.warn
            say(f"disk {d.target} skipped: {d.reason}")
        require = require or self._policy_requires(vm)
        if require is not None:
            ctx.log(f"required: {require.value} or better")
        pull_tls = self.pulled_hosts().get(host_key(vm.host_uri))
        plan = plan_backup(self.uow, self.driver, self.clock, vault, vm, ctx, require, pull_tls)
        ctx.log(f"writing recovery point {plan.point_id}")
        ctx.record(BackupStep.PLANNED, **plan.journal())
        try:
            point = self._take_read_commit(store, plan, ctx, member, keep_until)
        except BaseException:
            discard(self.driver, vm, store, plan.point_id, plan.checkpoint, ctx)
            raise
        if self._cancel_asked(ctx):
            ctx.log("cancel requested after the point was committed: ignored, it is complete")
        self.cleanup.prune_checkpoints(vm, keep=point.checkpoint, ctx=ctx)
        held = immutability.hold_point(store, vault, point)
        if held:
            until = point.retain_until.isoformat() if point.retain_until else ""
            ctx.record(immutability.HELD, point=point.id, objects=held, until=until)
            ctx.log(
                f"{held} object(s) of {point.id} held (or extended) by the storage until {until}"
            )
        if keep_until is not None:
            point.keep_until = keep_until
            with self.uow() as uow:
                uow.points.set_pinned(point.id, point.protected, keep_until)
                uow.commit()
            ctx.log(f"retention leaves point {point.id} alone until {keep_until.isoformat()}")
        return point

    def _take_read_commit(
        self,
        store: VaultStore,
        plan: BackupPlan,
        ctx: JobContext,
        member: SetMember | None,
        keep_until: datetime | None = None,
    ) -> RecoveryPoint:
        """Steps 2–4 of the module docstring; the caller discards on any exception."""
        vm = plan.vm
        domain_xml = self.driver.domain_xml(vm.host_uri, vm.uuid)
        previous = plan.previous
        prev_manifest, epoch = (
            store.read_parent(previous.id) if previous and plan.incremental_from else (None, None)
        )
        if epoch is not None and self._damage_recorded(plan.vault.name):
            # a reuse list vouches only for what GC may delete, not for damage: touch each
            # reused chunk instead, and read a missing one (e.g. quarantined) from the disk
            ctx.log("damage is recorded in this vault: the reused chunks are checked one by one")
            epoch = None
        with ExitStack() as stack:
            stack.enter_context(store.writer(plan.point_id))
            session, taken = stack.enter_context(self._point_in_time(plan, ctx, member))
            ctx.phase(BackupStep.READING)
            with member.read_slot() if member is not None else nullcontext():
                results = read_disks(
                    store,
                    session,
                    plan,
                    prev_manifest,
                    epoch,
                    ctx,
                    workers=self.workers,
                    cancel=ctx.cancelled,
                )
            ctx.phase(BackupStep.WRITING)
            entries = write_indexes(store, plan, results)
            ctx.record(BackupStep.INDEXES_WRITTEN, disks=[e.target for e in entries])
            ctx.phase(BackupStep.COMMITTING)  # the last cancel point
            extra = None
            if member is not None:  # a set publishes all its points or none
                plan = replace(plan, created_at=member.before_publish(plan.point_id))
                extra = member.manifest_extra()
            with self.uow() as uow:  # fixed now, written in the manifest (docs/immutability.md)
                until = immutability.new_point_retain_until(uow, vm, plan.created_at, keep_until)
            if until is not None:
                extra = (extra or {}) | {"retain_until": until.isoformat()}
            write_manifest(store, plan, taken, entries, domain_xml, extra)
            ctx.record(BackupStep.MANIFEST_WRITTEN, point=plan.point_id)
        point = recovery_point(plan, taken, entries, ctx)
        point.retain_until = until
        if member is None:
            record_point(self.uow, self.driver, plan, point, ctx, self.clock())
        else:  # the set commits every VM's row at once, or none (docs/sets.md)
            point.set_id = member.set_id
            member.publish(point.id, point_rows(self.driver, plan, point, ctx.job.id, self.clock()))
        ctx.log(
            f"recovery point {point.id}: {point.consistency.value}, "
            f"{point.bytes_logical:,} B logical, {point.bytes_new:,} B new"
        )
        return point

    @contextmanager
    def _point_in_time(
        self, plan: BackupPlan, ctx: JobContext, member: SetMember | None = None
    ) -> Iterator[tuple[PointSession, TakenPoint]]:
        """Take the point in time (step 2) and hold its session open while it is read.

        The ``freezing`` phase is entered — logged, journaled, a cancel point — before the
        guest is frozen or paused; inside the window only :attr:`window_observers` run (in
        memory); ``point-taken`` is journaled once the guest is released."""
        vm = plan.vm
        session: PointSession
        if plan.offline:
            if member is not None:  # a shut-off VM is still: its point is any instant
                member.ready()
                member.in_window()
                member.after_begin()
            session = self.driver.offline(list(plan.disks), plan.incremental_from)
        else:
            if member is not None:
                member.ready()
            ctx.phase(
                BackupStep.FREEZING,
                quiesce=plan.choice.quiesce,
                was_paused=plan.choice.quiesce == "none",
            )
            session = self.driver.take_point(
                vm.host_uri,
                vm.uuid,
                list(plan.disks),
                checkpoint=plan.checkpoint,
                incremental_from=plan.incremental_from,
                quiesce=plan.choice.quiesce,
                cancel=ctx.cancelled,
                in_window=partial(self._in_window, ctx.job, member),
                allow_pause=plan.allow_pause,
                after_begin=member.after_begin if member is not None else None,
                before_pause=partial(self._before_pause, ctx),
                pull_tls=plan.pull_tls,
                point=plan.point_id,
            )
        with session:
            taken = session.taken
            if member is not None:
                member.released(taken)
            ctx.record(
                BackupStep.POINT_TAKEN,
                method=taken.method.value,
                reason=taken.reason,
                frozen=taken.frozen,
                fs_frozen=taken.fs_frozen,
                frozen_ms=taken.frozen_ms,
                paused_ms=taken.paused_ms,
                released=taken.released,
                consistency=taken.consistency.value,
                hooks=taken.hooks.state.value,
            )
            for note in taken.notes:
                ctx.log(note)
            for warning in taken.warnings:
                ctx.warn(warning)
            ctx.log(
                f"point in time taken: {taken.method.value}, {taken.consistency.value} "
                f"({taken.reason}; frozen {taken.frozen_ms} ms, paused {taken.paused_ms} ms)"
            )
            if not meets(taken.consistency, plan.require):
                assert plan.require is not None
                raise ConsistencyNotMet(
                    taken.reason,
                    vm=vm.label,
                    actual=taken.consistency.value,
                    required=plan.require.value,
                )
            yield session, taken

    def _before_pause(self, ctx: JobContext, reason: str) -> None:
        """The freeze failed and the guest is thawed: journal the saved-state pause that
        follows, so a kill inside it is undone by the next start (the VM is resumed)."""
        ctx.record(BackupStep.PAUSING, reason=reason)

    def _damage_recorded(self, vault: str) -> bool:
        with self.uow() as uow:
            return damage_recorded(uow, vault)

    def _policy_requires(self, vm: VmItem) -> Consistency | None:
        """The consistency the VM's policy requires (None: no policy, or none required)."""
        if vm.policy is None:
            return None
        with self.uow() as uow:
            row = uow.policies.get(vm.policy)
        return row.policy.require if row is not None else None

    def _in_window(self, job: Job, member: SetMember | None) -> None:
        """Inside the freeze / pause window: in memory only (no catalog, no log)."""
        if member is not None:
            member.in_window()
        for observer in self.window_observers:
            observer(job)

    def _cancel_asked(self, ctx: JobContext) -> bool:
        with self.uow() as uow:
            current = uow.jobs.get(ctx.job.id)
        return current is not None and current.state is JobState.CANCELLING

    # --- what a dead backup left ---------------------------------------------------------------

    def clean_up(
        self,
        vm: VmItem,
        store: VaultStore | None,
        unfinished: Sequence[UnfinishedBackup] = (),
        *,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Undo what backups of ``vm`` that died left behind (their journals: ``unfinished``,
        newest first); returns what was done (:meth:`.backup.cleanup.BackupCleanUp.clean_up`)."""
        return self.cleanup.clean_up(vm, store, unfinished, still_ours=still_ours)
