"""Undoing a backup set that did not complete (docs/sets.md, "Failure" and "Journal").

:meth:`SetUndo.roll_back`: the set job's own process removes the points a failed set had
published already (``set-rolling-back`` → ``set-rolled-back``).  :meth:`SetUndo.clean_up`:
start-up recovery, after the dead set's children were cleaned up as any dead backup, removes
whatever of a set that never reached ``set-published`` exists — the points its children
planned, in the catalog or only in the vault.  :meth:`SetUndo.remove` takes one point away
entirely: manifest and indexes, catalog row, checkpoint record and libvirt checkpoint (its
chunks go at the next GC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from vmvault.domain.backup_set import SetStep, unfinished_set
from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import Job, JournalStep, last_step
from vmvault.domain.recovery_point import BackupStep, RecoveryPoint
from vmvault.services.jobs import JobContext
from vmvault.services.ports import BackupDriver, UnitOfWorkFactory
from vmvault.services.vaults import VaultService


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

    def roll_back(self, ctx: JobContext, set_id: str, published: list[RecoveryPoint]) -> list[str]:
        with self.uow() as uow:
            points = {p.id: p for p in [*published, *uow.points.in_set(set_id)]}
        if not points:
            return []
        ctx.record(SetStep.ROLLING_BACK, points=sorted(points))
        removed = [line for p in points.values() for line in self.remove(p.id)]
        ctx.record(SetStep.ROLLED_BACK, removed=removed)
        return sorted(points)

    def remove(self, point_id: str) -> list[str]:
        """Remove one point of a set that did not complete: its manifest and indexes, its
        catalog row, its checkpoint (record and libvirt's).  A missing part is no error."""
        done: list[str] = []
        with self.uow() as uow:
            point = uow.points.get(point_id)
            vm = uow.vms.get(point.vm_uuid) if point else None
        if point is None:
            return done
        store = self.vaults.open_store(self.vaults.resolve(point.vault))
        if store.has_manifest(point_id) or point_id in store.list_index_dirs():
            store.delete_point(point_id)
            done.append(f"removed point {point_id} of {point.vm_name} from vault {point.vault}")
        with self.uow() as uow:
            mine = [r.name for r in uow.checkpoints.for_vm(point.vm_uuid) if r.point_id == point_id]
            for name in mine:
                uow.checkpoints.delete(name)
            uow.points.delete(point_id)
            uow.commit()
        done.append(f"removed point {point_id} from the catalog")
        if vm is not None:
            driver = self.driver
            for name in mine:
                try:
                    if name in driver.checkpoints(vm.host_uri, vm.uuid):
                        driver.delete_checkpoint(vm.host_uri, vm.uuid, name)
                        done.append(f"deleted checkpoint {name} of {vm.label}")
                except VmvaultError as exc:
                    done.append(f"could not delete checkpoint {name}: {exc.text}")
        return done

    def clean_up(self, job: Job, steps: Sequence[JournalStep]) -> list[str]:
        """A set job whose process died (start-up recovery, after its children's VMs were
        cleaned up): remove whatever of the set exists unless it was fully published."""
        left = unfinished_set(job.id, steps)
        if left is None or not left.needs_rollback:
            return []
        ids = set(left.points)
        with self.uow() as uow:
            ids |= {p.id for p in uow.points.in_set(left.set_id)}
            for child in left.children:
                planned = last_step(uow.jobs.steps(child.job_id), BackupStep.PLANNED)
                if planned is not None:
                    ids.add(str(planned.data["point"]))
        done: list[str] = []
        for point_id in sorted(ids):
            done += self.remove(point_id) or self._remove_unlisted(job.vault, point_id)
        now = self.clock()
        with self.uow() as uow:
            uow.jobs.record_step(job.id, SetStep.ROLLED_BACK, {"removed": done}, now)
            uow.commit()
        return done or [f"nothing of set {left.set_id} was published"]

    def _remove_unlisted(self, vault_name: str, point_id: str) -> list[str]:
        """A point of the set in the vault (manifest written) but in no catalog row."""
        try:
            store = self.vaults.open_store(self.vaults.resolve(vault_name))
            if not store.has_manifest(point_id):
                return []
            store.delete_point(point_id)
        except VmvaultError as exc:
            return [f"could not remove point {point_id} from vault {vault_name}: {exc.text}"]
        return [f"removed point {point_id} from vault {vault_name} (the set was not published)"]
