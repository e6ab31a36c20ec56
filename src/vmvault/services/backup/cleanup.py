"""Undoing a backup that did not commit, and cleaning up after one whose process died.

*A failure or cancel* in the backup's own process: :func:`discard` deletes the new checkpoint
and the point (its orphan chunks go at the next GC): no half point, no stray checkpoint.
When the vault itself is what failed (an S3 endpoint gone), the deletion may fail too: it is
logged and the job keeps its own error.  What was written without a manifest is no point,
and GC removes it; a point whose manifest was written (a set member that failed at the
set's commit, a catalog that failed) is journalled ``discard-failed``, and the VM's next
backup finishes it as a dead backup's (step 3 below).  The pull job was already ended and the guest released by the point session.

*A process that died* left its job's journal (``docs/backup.md``, "Journal"), which
:func:`~vmvault.domain.recovery_point.unfinished_backup` reads into an
:class:`~vmvault.domain.recovery_point.UnfinishedBackup`.  :meth:`BackupCleanUp.clean_up` —
run by the VM's next backup and by start-up recovery — then, in order:

1. lets the adapter end the libvirt side (:meth:`BackupDriver.cleanup_stale`, given what the
   newest journal says): a stray pull job, a frozen or paused guest, socket and scratch
   files, stale qemu-nbd exports;
2. deletes every ``vmvault-*`` checkpoint of the VM that no checkpoint record and no recovery
   point of the catalog references.  Other tools' checkpoints are never touched;
3. commits a point whose manifest the dead backup wrote but whose catalog row it did not
   (from the manifest and the journal's plan), keeping its checkpoint — unless the backup was
   part of a backup set that never published: then the point is removed (docs/sets.md);
4. removes the half-written points (indexes, no manifest, no catalog row, no live writer)
   of those checkpoints and of the journals;
5. records ``cleaned-up`` in each dead job's journal, so that no later clean-up acts on it
   again (a VM the user paused since is never resumed by mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from vmvault.dataplane.vault import VaultStore
from vmvault.domain.backup_set import SetStep
from vmvault.domain.errors import JobInterrupted, VmvaultError
from vmvault.domain.job import JobType
from vmvault.domain.recovery_point import (
    CHECKPOINT_PREFIX,
    BackupStep,
    CheckpointRecord,
    UnfinishedBackup,
    is_our_checkpoint,
    unfinished_backup,
)
from vmvault.domain.vm import VmItem
from vmvault.services.backup.commit import point_from_manifest
from vmvault.services.jobs import JobContext
from vmvault.services.ports import BackupDriver, UnitOfWorkFactory

#: How many of a VM's latest backup jobs the next backup looks at for unfinished journals.
RECENT_JOBS = 10


def discard(
    driver: BackupDriver,
    vm: VmItem,
    store: VaultStore,
    point_id: str,
    checkpoint: str | None,
    ctx: JobContext,
) -> None:
    """Undo a backup that did not commit: no half point, no stray checkpoint."""
    if checkpoint is not None:
        try:
            if checkpoint in driver.checkpoints(vm.host_uri, vm.uuid):
                driver.delete_checkpoint(vm.host_uri, vm.uuid, checkpoint)
                ctx.log(f"removed checkpoint {checkpoint} of the failed backup")
        except VmvaultError as exc:
            ctx.log(f"could not remove checkpoint {checkpoint}: {exc.text}")
    manifest = _has_manifest(store, point_id)
    try:
        store.delete_point(point_id)
    except VmvaultError as exc:  # the vault itself failed (an S3 endpoint gone): keep the cause
        if manifest is False:
            ctx.log(
                f"could not remove what was written of point {point_id} ({exc.text}): it has "
                "no manifest, so it is no point; garbage collection removes its indexes and chunks"
            )
            return
        said = "was written" if manifest else "may have been written (the vault did not say)"
        ctx.log(
            f"could not remove point {point_id} ({exc.text}): its manifest {said}, so the "
            "vault may hold a point the catalog does not list; the VM's next backup (or the "
            "set's recovery) removes it or commits it"
        )
        ctx.record(BackupStep.DISCARD_FAILED, point=point_id, manifest=manifest)


def _has_manifest(store: VaultStore, point_id: str) -> bool | None:
    """Whether the point's manifest is in the vault (None: the vault does not answer)."""
    try:
        return store.has_manifest(point_id)
    except VmvaultError:
        return None


class BackupCleanUp:
    """What a dead backup left behind (see the module docstring)."""

    def __init__(
        self, uow: UnitOfWorkFactory, driver: BackupDriver, clock: Callable[[], datetime]
    ) -> None:
        self.uow = uow
        self.driver = driver
        self.clock = clock

    def unfinished(self, vm: VmItem, *, besides: int | None = None) -> list[UnfinishedBackup]:
        """The VM's recent backup jobs that were interrupted (``JOB_INTERRUPTED``) or left the
        guest held (a thaw / resume that failed) and that nobody cleaned up after yet;
        newest first.  ``besides``: the running job's id."""
        found: list[UnfinishedBackup] = []
        with self.uow() as uow:
            jobs = uow.jobs.find(job_type=JobType.BACKUP, vm_uuid=vm.uuid, limit=RECENT_JOBS)
            for job in jobs:
                if job.id == besides or job.state.active:
                    continue
                left = unfinished_backup(job.id, uow.jobs.steps(job.id))
                if left is None:
                    continue
                # a failed backup that could not delete its manifest had released its guest
                left_point = left.discard_failed and left.manifest_written
                if job.error_code == JobInterrupted.code or left.left_guest_held or left_point:
                    found.append(left)
        return found

    def clean_up(
        self,
        vm: VmItem,
        store: VaultStore | None,
        unfinished: Sequence[UnfinishedBackup] = (),
        *,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Undo what backups of ``vm`` that died left behind; returns what was done.

        The caller holds the VM (it runs a job on it, or the dead job still holds its conflict
        key); ``still_ours()`` is asked before anything is deleted, and deletion stops as soon
        as it says False (another job took the VM over: it cleans up itself)."""
        newest = unfinished[0] if unfinished else None
        done = self.driver.cleanup_stale(vm.host_uri, vm.uuid, newest)
        for u in unfinished:
            if u.manifest_written and not u.committed:
                done += self._finish_commit(vm, store, u)
        with self.uow() as uow:
            recorded = {r.name for r in uow.checkpoints.for_vm(vm.uuid)}
            # soft-deleted points too: a point exists until it is purged
            points = uow.points.for_vm(vm.uuid, deleted=None)
            recorded |= {p.checkpoint for p in points if p.checkpoint}
        half = {u.point for u in unfinished if not u.manifest_written}
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
        self._mark_cleaned(unfinished, done)
        return done

    def _finish_commit(
        self, vm: VmItem, store: VaultStore | None, u: UnfinishedBackup
    ) -> list[str]:
        """The dead backup wrote its manifest but not its catalog row: commit it now (row,
        checkpoint record if libvirt still has the checkpoint, ``committed``)."""
        if store is None:
            return [f"point {u.point} is in the vault but not in the catalog: vault not opened"]
        with self.uow() as uow:
            job = uow.jobs.get(u.job_id)
            parent = job.parent_id if job is not None else None
            set_steps = {s.step for s in uow.jobs.steps(parent)} if parent is not None else set()
        if parent is not None and SetStep.PUBLISHED not in set_steps:
            try:  # no partial set is ever visible
                store.delete_point(u.point)
            except VmvaultError as exc:  # the set's recovery removes it (its children's plans)
                return [f"could not remove point {u.point} of the unpublished backup set (job "
                        f"{parent}): {exc.text}; left to the set's recovery"]  # fmt: skip
            return [f"removed point {u.point}: its backup set (job {parent}) was never published"]
        try:
            manifest = store.read_manifest(u.point)
        except VmvaultError as exc:
            return [f"point {u.point} is not in the catalog and its manifest is unreadable "
                    f"({exc.text}): left as it is"]  # fmt: skip
        xml = None
        if u.checkpoint is not None and u.checkpoint == manifest.checkpoint:
            try:
                if u.checkpoint in self.driver.checkpoints(vm.host_uri, vm.uuid):
                    xml = self.driver.checkpoint_xml(vm.host_uri, vm.uuid, u.checkpoint)
            except VmvaultError:
                xml = None
        with self.uow() as uow:
            if uow.points.get(u.point) is not None:
                return []
            job = uow.jobs.get(u.job_id)
            point = point_from_manifest(
                manifest, u.vault or vm.vault or "", u, job.warnings if job else []
            )
            uow.points.add(point)
            if xml is not None and u.checkpoint is not None:
                record = CheckpointRecord(u.checkpoint, vm.uuid, u.point, point.created_at, xml)
                uow.checkpoints.add(record)
            uow.jobs.record_step(
                u.job_id, BackupStep.COMMITTED, {"point": u.point, "by": "clean-up"}, self.clock()
            )
            uow.commit()
        return [f"committed point {u.point} from its manifest (the catalog row was missing)"]

    def _mark_cleaned(self, unfinished: Sequence[UnfinishedBackup], done: list[str]) -> None:
        if not unfinished:
            return
        now = self.clock()
        with self.uow() as uow:
            for u in unfinished:
                uow.jobs.record_step(u.job_id, BackupStep.CLEANED_UP, {"actions": done}, now)
            uow.commit()

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
            if store.has_manifest(point_id):
                continue
            with self.uow() as uow:
                if uow.points.get(point_id) is not None:
                    continue
            if any(w.name == point_id for w in store.writers.live()):
                continue
            if store.has_manifest(point_id) or not still_ours():
                continue
            store.delete_point(point_id)
            done.append(f"removed the half-written point {point_id} (indexes without manifest)")
        return done

    def prune_checkpoints(self, vm: VmItem, keep: str | None, ctx: JobContext) -> None:
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
