"""Undoing a backup set that did not complete (docs/sets.md, "Failure" and "Journal").

Every way a set ends without ``set-published`` comes here: :meth:`SetUndo.roll_back` in the
set job's own process (a VM failed, the set was cancelled or interrupted), :meth:`SetUndo.
clean_up` at start-up recovery for a set whose process died (after its children were cleaned
up as any dead backup), and :meth:`SetUndo.retry` for a failed set whose rollback could not
remove everything (the vault was unreachable): run by start-up recovery and before each new
set.  Each removes whatever of the set exists — every point its children planned, with a
catalog row or only a manifest (or only indexes) in the vault — journalled as
``set-rolling-back`` {points}; ``set-rolled-back`` {removed} is recorded only once nothing is
left, so a rollback that stopped half way is retried from the journal.

:meth:`SetUndo.remove` takes one point away entirely: the catalog row and its checkpoint
records first (the set is no longer listed), then the manifest and indexes, then the libvirt
checkpoint (its chunks go at the next GC).  One point's failure never keeps the others from
being removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from vmvault.domain.backup_set import SetStep, unfinished_set
from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import Job, JobType, JournalStep, last_step
from vmvault.domain.recovery_point import BackupStep
from vmvault.services.ports import BackupDriver, UnitOfWorkFactory
from vmvault.services.vaults import VaultService

#: How many of the latest set jobs :meth:`SetUndo.retry` looks at.
RECENT_SETS = 50


class SetUndo:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        vaults: VaultService,
        driver: BackupDriver,
        clock: Callable[[], datetime],
    ) -> None:
        self.uow = uow
        self.vaults = vaults
        self.driver = driver
        self.clock = clock

    def roll_back(
        self, job: Job, set_id: str, children: Sequence[int], point_ids: Iterable[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Remove whatever of the set ``set_id`` (run by the set job ``job``, with the child
        jobs ``children``) exists: ``point_ids`` and every point a child planned or that
        has a row in the set.  Returns (what was done, the ids left: retried later)."""
        ids = set(point_ids)
        with self.uow() as uow:
            ids |= {p.id for p in uow.points.in_set(set_id)}
            for child in children:
                planned = last_step(uow.jobs.steps(child), BackupStep.PLANNED)
                if planned is not None:
                    ids.add(str(planned.data["point"]))
            steps = {s.step for s in uow.jobs.steps(job.id)}
        if not ids:
            return [], []
        if SetStep.ROLLING_BACK not in steps:
            self._record(job.id, SetStep.ROLLING_BACK, {"points": sorted(ids)})
        done: list[str] = []
        left: list[str] = []
        for point_id in sorted(ids):
            try:
                done += self.remove(point_id, job.vault)
            except Exception as exc:  # the vault or catalog failed: the others still go
                why = exc.text if isinstance(exc, VmvaultError) else f"{type(exc).__name__}: {exc}"
                done.append(f"could not remove point {point_id} ({why}): left for recovery")
                left.append(point_id)
        if not left:
            self._record(job.id, SetStep.ROLLED_BACK, {"removed": done})
        return done, left

    def remove(self, point_id: str, vault_name: str) -> list[str]:
        """Remove one point of a set that did not complete: its catalog row and checkpoint
        records, its manifest and indexes, its libvirt checkpoint.  A missing part is no
        error; a failing one raises (after what could be done was done)."""
        done: list[str] = []
        with self.uow() as uow:
            point = uow.points.get(point_id)
            vm = uow.vms.get(point.vm_uuid) if point else None
            mine = (
                [r.name for r in uow.checkpoints.for_vm(point.vm_uuid) if r.point_id == point_id]
                if point
                else []
            )
            if point is not None:
                for name in mine:
                    uow.checkpoints.delete(name)
                uow.points.delete(point_id)
                uow.commit()
                done.append(f"removed point {point_id} of {point.vm_name} from the catalog")
        vault = point.vault if point is not None else vault_name
        store = self.vaults.open_store(self.vaults.resolve(vault))
        if store.has_manifest(point_id) or point_id in store.list_index_dirs():
            store.delete_point(point_id)
            done.append(f"removed point {point_id} from vault {vault}")
        if vm is not None:
            for name in mine:
                try:
                    if name in self.driver.checkpoints(vm.host_uri, vm.uuid):
                        self.driver.delete_checkpoint(vm.host_uri, vm.uuid, name)
                        done.append(f"deleted checkpoint {name} of {vm.label}")
                except VmvaultError as exc:  # a stray checkpoint: the VM's next backup
                    done.append(f"could not delete checkpoint {name}: {exc.text}")
        return done

    def clean_up(self, job: Job, steps: Sequence[JournalStep]) -> list[str]:
        """A set job that did not end with ``set-published`` (its process died, or its
        rollback left something): remove whatever of the set exists."""
        left = unfinished_set(job.id, steps)
        if left is None or not left.needs_rollback:
            return []
        done, still = self.roll_back(
            job, left.set_id, [c.job_id for c in left.children], left.points
        )
        if still:
            done.append(f"left for the next recovery: {', '.join(still)}")
        return done or [f"nothing of set {left.set_id} was written"]

    def retry(self) -> list[tuple[Job, list[str]]]:
        """Finish the rollbacks that failed sets left unfinished (``set-rolling-back``
        without ``set-rolled-back``); each job's log says what was done."""
        redone: list[tuple[Job, list[str]]] = []
        with self.uow() as uow:
            jobs = [
                (j, uow.jobs.steps(j.id))
                for j in uow.jobs.find(job_type=JobType.BACKUP_SET, limit=RECENT_SETS)
                if not j.state.active
            ]
        for job, steps in jobs:
            names = {s.step for s in steps}
            if SetStep.ROLLING_BACK not in names or SetStep.ROLLED_BACK in names:
                continue
            done = self.clean_up(job, steps)
            now = self.clock()
            with self.uow() as uow:
                for line in done:
                    uow.jobs.append_log(job.id, f"recovery: {line}", now)
                uow.commit()
            redone.append((job, done))
        return redone

    def _record(self, job_id: int, step: str, data: dict[str, object]) -> None:
        now = self.clock()
        with self.uow() as uow:
            uow.jobs.record_step(job_id, step, data, now)
            uow.commit()
