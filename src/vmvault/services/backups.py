"""Backing up VMs: one ``backup`` job per VM (design §2–§3).

Order of one backup, and what each step leaves behind if it fails:

0. clean up what an earlier backup of the VM that died left behind
   (:meth:`BackupService.clean_up`): its libvirt job, a frozen or paused guest, work files,
   its checkpoint, its half-written point;
1. re-read the domain (gone → ``VM_DELETED``); pick the method and, per disk, full or
   incremental (``domain.recovery_point``), repairing the checkpoint chain when libvirt lost a
   checkpoint whose bitmaps are still in the images;
2. take the point in time (libvirt pull backup with a new checkpoint ``vmvault-<point>``,
   guest frozen or paused just around it) — or, for a shut-off VM, export its images with
   qemu-nbd;
3. read every disk into the vault (chunks, then its index);
4. write the manifest — from here on the point exists — then the catalog row and the
   checkpoint record; delete the older vmvault checkpoints of the VM.

A failure before 4 deletes the new checkpoint and the point's index files (orphan chunks are
reclaimed by GC), so no half point and no stray checkpoint remain.

**Phases** (:meth:`JobContext.phase`: logged, shown to ``runner.phase_observers``, and a cancel
point), each a place where a cancel stops the backup with the undo above:

* ``freezing`` — running VM only: the guest is frozen (or paused) and ``backupBegin`` has not
  been called; a cancel here thaws / resumes it and nothing was begun;
* ``reading`` — the point in time is taken, no disk read yet (reads also check for a cancel
  between chunks, at most once a second);
* ``writing`` — every disk read, its chunks committed; the indexes are written next;
* ``committing`` — indexes written; the manifest and the catalog row are written next.  This
  is the last cancel point: once the manifest and the catalog row are written the backup is
  complete, and a cancel that arrives later is ignored (logged; the job ends completed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from vmvault.dataplane.backup import DiskBackupResult, backup_disk
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.manifest import DiskEntry, Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import InvalidInput, JobInterrupted, VmDeleted, VmvaultError
from vmvault.domain.inventory import match_vm
from vmvault.domain.job import JobState, JobType
from vmvault.domain.recovery_point import (
    CHECKPOINT_PREFIX,
    CheckpointRecord,
    DiskRead,
    Method,
    MethodChoice,
    PointDisk,
    RecoveryPoint,
    checkpoint_name,
    choose_method,
    consistency_of,
    is_our_checkpoint,
    new_point_id,
    plan_reads,
)
from vmvault.domain.restore_test import (
    fs_summary,
)
from vmvault.domain.vault import Vault
from vmvault.domain.vm import Disk, VmItem, VmState
from vmvault.services.jobs import JobContext, JobOutcome, JobRunner
from vmvault.services.ports import BackupDriver, Hypervisor, UnitOfWorkFactory
from vmvault.services.vaults import VaultService

#: The job-log line that names the point a backup writes (recovery reads it back).
POINT_LINE = "writing recovery point {point}"
_POINT_RE = re.compile(r"writing recovery point (\d{8}T\d{6}Z-[0-9a-f]+)")


def point_in_log(log: Iterable[str]) -> str | None:
    """The point a backup job was writing, from its log (:data:`POINT_LINE`)."""
    for line in log:
        found = _POINT_RE.search(line)
        if found:
            return found.group(1)
    return None


@dataclass
class ChainState:
    usable: bool
    problem: str | None
    repaired: str | None = None


class BackupService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        runner: JobRunner,
        vaults: VaultService,
        hypervisor: Hypervisor,
        driver: BackupDriver,
        clock: Callable[[], datetime],
        workers: int = 2,
    ) -> None:
        self.uow = uow
        self.runner = runner
        self.vaults = vaults
        self.hypervisor = hypervisor
        self.driver = driver
        self.clock = clock
        self.workers = workers
        #: Called after each successful backup (bootstrap sets it: retention of a protected
        #: VM runs as its own ``prune`` job once the backup job has ended).
        self.after_backup: Callable[[Vault, VmItem, RecoveryPoint], None] | None = None

    def choose(self, vault_name: str | None, refs: Sequence[str]) -> tuple[Vault, list[VmItem]]:
        """The vault and the VMs to back up, each registered with it (one bad reference
        refuses the whole request before anything starts or is queued)."""
        if not refs:
            raise InvalidInput("name at least one VM", what="VM list")
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            known = uow.vms.all()
        chosen: list[VmItem] = []
        for ref in refs:
            vm = match_vm(known, ref)
            if vm.state is VmState.DISCOVERED or vm.vault != vault.name:
                raise InvalidInput(
                    f"register it with vault '{vault.name}' first ('vmvault register {ref}')",
                    what=f"VM {vm.label} (not registered with this vault)",
                )
            if all(c.uuid != vm.uuid for c in chosen):
                chosen.append(vm)
        return vault, chosen

    def backup(
        self, vault_name: str | None, refs: Sequence[str], keep_until: datetime | None = None
    ) -> list[JobOutcome[RecoveryPoint]]:
        """One backup job per VM; every reference is checked before any job starts.

        ``keep_until``: retention leaves the new points alone until then (ad-hoc points)."""
        vault, chosen = self.choose(vault_name, refs)
        store = self.vaults.open_store(vault)
        outcomes = []
        for vm in chosen:
            work = partial(self._backup, vault, store, vm, keep_until)
            outcome = self.runner.run(JobType.BACKUP, vault.name, vm.uuid, vm.label, work)
            outcomes.append(outcome)
            if outcome.result is not None and self.after_backup is not None:
                self.after_backup(vault, vm, outcome.result)
        return outcomes

    # --- one VM --------------------------------------------------------------------------------

    def _backup(
        self,
        vault: Vault,
        store: VaultStore,
        vm: VmItem,
        keep_until: datetime | None,
        ctx: JobContext,
    ) -> RecoveryPoint:
        facts = self.hypervisor.domain_facts(vm.host_uri, vm.uuid)
        if facts is None:
            raise VmDeleted(vm=vm.label, host=vm.hostname)
        for line in self.clean_up(vm, store, self._interrupted_points(vm)):
            ctx.log(f"left by an interrupted backup: {line}")
        vm.apply(facts, self.clock())
        disks = vm.backup_disks
        for d in vm.excluded_disks:
            ctx.warn(f"disk {d.target} skipped: {d.reason}")
        choice = choose_method(vm.power_state, vm.agent_channel, vm.crash_consistent_only)
        ctx.log(f"method {choice.method.value}: {choice.reason}")
        with self.uow() as uow:
            history = uow.points.for_vm(vm.uuid, vault.name)
        previous = history[0] if history else None
        chain = self._chain(vm, previous, disks, ctx)
        capacity = self.driver.disk_sizes(vm.host_uri, vm.uuid)
        sizes = {d.target: capacity[d.target] for d in disks}
        reads = plan_reads(
            [(d.target, d.format, sizes[d.target]) for d in disks],
            previous,
            chain.usable,
            chain.problem,
        )
        for r in reads:
            ctx.log(f"disk {r.target}: {'incremental' if r.incremental else 'full'} ({r.reason})")
        now = self.clock()
        point_id = new_point_id(now)
        incremental = previous is not None and any(r.incremental for r in reads)
        incremental_from = previous.checkpoint if previous is not None and incremental else None
        offline = choice.method is Method.OFFLINE
        new_checkpoint: str | None = None
        if not offline and any(d.format == "qcow2" for d in disks):
            new_checkpoint = checkpoint_name(point_id)
        ctx.log(POINT_LINE.format(point=point_id))
        cancel = ctx.cancelled
        try:
            point = self._take_and_read(
                vault, store, vm, ctx, point_id, disks, reads, sizes, previous,
                incremental_from, new_checkpoint, choice, cancel,
            )  # fmt: skip
        except BaseException:
            self._discard(vm, store, point_id, new_checkpoint, ctx)
            raise
        if self._cancel_asked(ctx):
            ctx.log("cancel requested after the point was committed: ignored, it is complete")
        self._prune_checkpoints(vm, keep=point.checkpoint, ctx=ctx)
        if keep_until is not None:
            point.keep_until = keep_until
            with self.uow() as uow:
                uow.points.set_pinned(point.id, point.protected, keep_until)
                uow.commit()
            ctx.log(f"retention leaves point {point.id} alone until {keep_until.isoformat()}")
        return point

    def _take_and_read(
        self,
        vault: Vault,
        store: VaultStore,
        vm: VmItem,
        ctx: JobContext,
        point_id: str,
        disks: list[Disk],
        reads: list[DiskRead],
        sizes: dict[str, int],
        previous: RecoveryPoint | None,
        incremental_from: str | None,
        new_checkpoint: str | None,
        choice: MethodChoice,
        cancel: Callable[[], bool],
    ) -> RecoveryPoint:
        created = self.clock()
        domain_xml = self.driver.domain_xml(vm.host_uri, vm.uuid)
        by_target = {r.target: r for r in reads}
        prev_manifest = store.read_manifest(previous.id) if previous and incremental_from else None
        results: dict[str, DiskBackupResult] = {}
        total = sum(sizes.values())
        with ExitStack() as stack:
            stack.enter_context(store.writer(point_id))
            offline = choice.method is Method.OFFLINE
            if offline:
                session = self.driver.offline(disks, incremental_from)
            else:
                session = self.driver.take_point(
                    vm.host_uri,
                    vm.uuid,
                    disks,
                    checkpoint=new_checkpoint,
                    incremental_from=incremental_from,
                    quiesce=choice.quiesce,
                    cancel=cancel,
                    before_begin=lambda: ctx.phase("freezing"),
                )
            stack.enter_context(session)
            for note in session.notes:
                if note.startswith("warning:"):
                    ctx.warn(note.removeprefix("warning: "))
                else:
                    ctx.log(note)
            ctx.log(f"point in time taken (frozen={session.frozen}, window {session.frozen_ms} ms)")
            ctx.phase("reading")
            done_before = 0
            for disk in disks:
                read = by_target[disk.target]
                source = session.source(disk.target)
                prev_index: DiskIndex | None = None
                dirty = None
                if read.incremental and prev_manifest is not None:
                    prev_index = store.read_point_index(prev_manifest, disk.target)
                    dirty = source.dirty_extents()

                def progress(done: int, todo: int, base: int = done_before) -> None:
                    ctx.progress(base + done, total)

                t0 = time.monotonic()
                res = backup_disk(
                    store,
                    source,
                    previous=prev_index,
                    dirty=dirty,
                    workers=self.workers,
                    progress=progress,
                    cancel=cancel,
                )
                secs = max(time.monotonic() - t0, 1e-6)
                results[disk.target] = res
                done_before += sizes[disk.target]
                ctx.log(
                    f"disk {disk.target}: read {res.bytes_read:,} B in {secs:.2f}s "
                    f"({res.bytes_read / secs / 1e6:.0f} MB/s), new {res.bytes_new:,} B, "
                    f"{res.chunks_new} new / {res.chunks_dedup} dedup / "
                    f"{res.chunks_reused} reused / {res.chunks_zero} zero chunks"
                )
            # 3. indexes, then 4. the manifest: the point exists from here on
            ctx.phase("writing")
            entries: list[DiskEntry] = []
            for disk in disks:
                res = results[disk.target]
                digest = store.write_index(point_id, disk.target, res.index)
                entries.append(
                    DiskEntry(
                        target=disk.target,
                        size=sizes[disk.target],
                        index=f"{disk.target}.fidx",
                        index_digest=digest,
                        bytes_read=res.bytes_read,
                        bytes_new=res.bytes_new,
                    )
                )
            for d in vm.excluded_disks:
                entries.append(DiskEntry(target=d.target, size=0, excluded=True, reason=d.reason))
            consistency = consistency_of(session.frozen)
            checkpoint = new_checkpoint if not offline else incremental_from
            ctx.phase("committing")  # the last cancel point
            store.write_manifest(
                Manifest(
                    point_id=point_id,
                    vm_uuid=vm.uuid,
                    vm_name=vm.name,
                    created_at=created.isoformat(),
                    domain_xml=domain_xml,
                    method=choice.method.value,
                    consistency=consistency.value,
                    frozen_ms=session.frozen_ms,
                    checkpoint=checkpoint,
                    disks=entries,
                    extra={
                        "host_uri": vm.host_uri,
                        "incremental_from": incremental_from,
                        # what the guest had mounted: a restore test checks it is back
                        "fsinfo": fs_summary(session.fsinfo),
                    },
                )
            )
        point = RecoveryPoint(
            id=point_id,
            vault=vault.name,
            vm_uuid=vm.uuid,
            vm_name=vm.name,
            created_at=created,
            consistency=consistency,
            method=choice.method,
            frozen_ms=session.frozen_ms,
            checkpoint=checkpoint,
            disks=[
                PointDisk(
                    target=e.target,
                    size=e.size,
                    format=next((d.format for d in disks if d.target == e.target), None),
                    excluded=e.excluded,
                    reason=e.reason if e.excluded else by_target[e.target].reason,
                    incremental=False if e.excluded else by_target[e.target].incremental,
                    bytes_read=e.bytes_read,
                    bytes_new=e.bytes_new,
                )
                for e in entries
            ],
            job_id=ctx.job.id,
            warnings=list(ctx.job.warnings),
        )
        with self.uow() as uow:
            uow.points.add(point)
            if new_checkpoint is not None:
                xml = self.driver.checkpoint_xml(vm.host_uri, vm.uuid, new_checkpoint)
                uow.checkpoints.add(
                    CheckpointRecord(new_checkpoint, vm.uuid, point_id, created, xml)
                )
            uow.vms.save(vm)
            uow.commit()
        ctx.log(
            f"recovery point {point_id}: {point.consistency.value}, "
            f"{point.bytes_logical:,} B logical, {point.bytes_new:,} B new"
        )
        return point

    # --- chain ---------------------------------------------------------------------------------

    def _chain(
        self, vm: VmItem, previous: RecoveryPoint | None, disks: list[Disk], ctx: JobContext
    ) -> ChainState:
        """Can the previous point's checkpoint serve an incremental?  Repair it if libvirt
        lost its metadata while the bitmaps survived in the images."""
        if previous is None or previous.checkpoint is None:
            return ChainState(False, None)
        name = previous.checkpoint
        repaired = None
        if name not in self.driver.checkpoints(vm.host_uri, vm.uuid):
            with self.uow() as uow:
                records = {r.name: r for r in uow.checkpoints.for_vm(vm.uuid)}
            record = records.get(name)
            if record is None:
                return ChainState(False, f"checkpoint {name} missing in libvirt")
            try:
                self.driver.redefine_checkpoint(vm.host_uri, vm.uuid, record.xml)
            except VmvaultError as exc:
                return ChainState(False, f"checkpoint {name} missing in libvirt ({exc.text})")
            repaired = name
        qcow2 = [d.target for d in disks if d.format == "qcow2"]
        problems = self.driver.checkpoint_problems(vm.host_uri, vm.uuid, name, qcow2)
        if problems:
            return ChainState(False, "; ".join(problems))
        if repaired:
            ctx.log(f"checkpoint {name} was missing in libvirt: redefined from the catalog")
        return ChainState(True, None, repaired=repaired)

    def _discard(
        self, vm: VmItem, store: VaultStore, point_id: str, checkpoint: str | None, ctx: JobContext
    ) -> None:
        """Undo a backup that did not commit: no half point, no stray checkpoint."""
        if checkpoint is not None:
            try:
                if checkpoint in self.driver.checkpoints(vm.host_uri, vm.uuid):
                    self.driver.delete_checkpoint(vm.host_uri, vm.uuid, checkpoint)
                    ctx.log(f"removed checkpoint {checkpoint} of the failed backup")
            except VmvaultError as exc:
                ctx.log(f"could not remove checkpoint {checkpoint}: {exc.text}")
        store.delete_point(point_id)

    def _cancel_asked(self, ctx: JobContext) -> bool:
        with self.uow() as uow:
            current = uow.jobs.get(ctx.job.id)
        return current is not None and current.state is JobState.CANCELLING

    # --- what a dead backup left ---------------------------------------------------------------

    def clean_up(
        self,
        vm: VmItem,
        store: VaultStore | None,
        points: Iterable[str] = (),
        *,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Undo what a backup of ``vm`` that died left behind; returns what was done.

        1. the libvirt side (:meth:`BackupDriver.cleanup_stale`): a stray pull job, a frozen or
           paused guest, socket / scratch / state files, stale qemu-nbd exports;
        2. every ``vmvault-*`` checkpoint of the VM that no checkpoint record of the catalog
           references (a backup that died between ``backupBegin`` and its commit).  Other
           tools' checkpoints are never touched;
        3. the half-written points in ``store`` (indexes, no manifest, no catalog row, no live
           writer) of those checkpoints and of ``points``.

        The caller holds the VM (it runs a job on it, or the dead job still holds its conflict
        key); ``still_ours()`` is asked before anything is deleted, and deletion stops as soon
        as it says False (another job took the VM over: it cleans up itself).
        """
        done = self.driver.cleanup_stale(vm.host_uri, vm.uuid)
        with self.uow() as uow:
            recorded = {r.name for r in uow.checkpoints.for_vm(vm.uuid)}
            recorded |= {p.checkpoint for p in uow.points.for_vm(vm.uuid) if p.checkpoint}
        half = set(points)
        try:
            names = self.driver.checkpoints(vm.host_uri, vm.uuid)
        except VmvaultError as exc:
            return [*done, f"could not list the checkpoints: {exc.text}"]
        for name in names:
            if not is_our_checkpoint(name) or name in recorded:
                continue
            if not still_ours():
                return [*done, "another job took the VM over: the rest is left to it"]
            try:
                self.driver.delete_checkpoint(vm.host_uri, vm.uuid, name)
            except VmvaultError as exc:
                done.append(f"could not delete checkpoint {name}: {exc.text}")
                continue
            done.append(f"deleted checkpoint {name}: no recovery point uses it")
            half.add(name.removeprefix(CHECKPOINT_PREFIX))
        if store is not None and half:
            done += self._drop_half_points(store, half, still_ours)
        return done

    def _drop_half_points(
        self, store: VaultStore, ids: set[str], still_ours: Callable[[], bool]
    ) -> list[str]:
        """Delete the index directories of points that never got their manifest.

        Checked in this order so that a backup committing meanwhile is never hit: the
        directory exists, no manifest, no live writer registered for it, still no manifest
        (a writer ends only after its manifest is written)."""
        done: list[str] = []
        present = set(store.list_index_dirs())
        for point_id in sorted(ids & present):
            if store.manifest_path(point_id).exists():
                continue
            with self.uow() as uow:
                if uow.points.get(point_id) is not None:
                    continue
            if any(w.name == point_id for w in store.writers.live()):
                continue
            if store.manifest_path(point_id).exists() or not still_ours():
                continue
            store.delete_point(point_id)
            done.append(f"removed the half-written point {point_id} (indexes without manifest)")
        return done

    def _interrupted_points(self, vm: VmItem) -> list[str]:
        """Points that the VM's recent interrupted backup jobs were writing (their logs)."""
        ids: list[str] = []
        with self.uow() as uow:
            jobs = uow.jobs.find(job_type=JobType.BACKUP, vm_uuid=vm.uuid, limit=10)
            for job in jobs:
                if job.error_code == JobInterrupted.code:
                    found = point_in_log(uow.jobs.log(job.id))
                    if found is not None:
                        ids.append(found)
        return ids

    def _prune_checkpoints(self, vm: VmItem, keep: str | None, ctx: JobContext) -> None:
        """Only the newest vmvault checkpoint is needed for the next incremental."""
        with self.uow() as uow:
            records = uow.checkpoints.for_vm(vm.uuid)
        live = set(self.driver.checkpoints(vm.host_uri, vm.uuid)) if records else set()
        for rec in records:
            if rec.name == keep or not is_our_checkpoint(rec.name):
                continue
            if rec.name in live:
                self.driver.delete_checkpoint(vm.host_uri, vm.uuid, rec.name)
            with self.uow() as uow:
                uow.checkpoints.delete(rec.name)
                uow.commit()
            ctx.log(f"deleted checkpoint {rec.name} (no longer needed)")
