"""The dashboard's numbers for one vault (``vmvault dashboard``; the web page comes later).

* VMs of the vault's location: ``discovered`` (every VM discovery knows there, vanished ones
  included), ``registered`` (with this vault, whatever their protection), ``protected``
  (of which ``pending_initial_backup``), ``protection_stopped``, ``vanished``;
* the vault's jobs created in the last 24 h by final state, and those still in progress;
* the protected VMs that need attention: last backup failed, overdue
  (:func:`~vmvault.domain.policy.overdue_at` after the last point, or after protection was
  configured when there is none yet), or deleted from libvirt;
* storage: bytes of the vault's chunk files, logical bytes of the points it holds (its own
  and the copies of other vaults' points), their ratio;
* soft-deleted points the vault still holds (docs/soft-delete.md): their count and logical
  bytes (the disks' sizes, as for the points above; the chunks they alone keep are not
  counted apart), and the next purge due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from vmvault.domain.consistency import Consistency
from vmvault.domain.job import JobState, JobType
from vmvault.domain.policy import overdue_at
from vmvault.domain.vm import VmState
from vmvault.services import holdings
from vmvault.services.context import Service

WINDOW = timedelta(hours=24)


@dataclass
class Attention:
    vm: str
    name: str
    policy: str | None
    reason: str  # last-backup-failed | overdue | never-backed-up | vm-deleted
    detail: str
    last_backup_at: datetime | None = None


@dataclass
class Dashboard:
    vault: str
    at: datetime
    vms: dict[str, int]
    jobs: dict[str, int]
    attention: list[Attention] = field(default_factory=list)
    storage_bytes: int = 0
    logical_bytes: int = 0
    points: int = 0
    #: the points it holds, by consistency level (docs/backup.md, "Consistency")
    by_consistency: dict[str, int] = field(default_factory=dict)
    #: soft-deleted points held until purged: count, logical bytes, the earliest purge_after
    soft_deleted: int = 0
    soft_deleted_bytes: int = 0
    next_purge_at: datetime | None = None

    @property
    def dedup_ratio(self) -> float | None:
        return round(self.logical_bytes / self.storage_bytes, 2) if self.storage_bytes else None


class DashboardService(Service):
    def summary(self, vault_name: str | None) -> Dashboard:
        vault = self.vaults.resolve(vault_name)
        now = self.clock()
        uris = [h.uri for h in self.vaults.list_hosts(vault.location)]
        with self.uow() as uow:
            vms = uow.vms.all(uris)
            jobs = uow.jobs.find(since=now - WINDOW, limit=100_000)
            points = holdings.held_in(uow, vault.name)  # its own points and its copies
            binned = holdings.deleted_in(uow, vault.name)
            policies = {r.name: r.policy for r in uow.policies.all(vault.name)}
            last_backup_job = {
                vm.uuid: next(iter(uow.jobs.find(JobType.BACKUP, vm_uuid=vm.uuid, limit=1)), None)
                for vm in vms
                if vm.state is VmState.PROTECTED
            }
        jobs = [j for j in jobs if j.vault == vault.name]
        newest: dict[str, datetime] = {}
        for p in points:
            if p.created_at > newest.get(p.vm_uuid, p.created_at - timedelta(1)):
                newest[p.vm_uuid] = p.created_at
        mine = [vm for vm in vms if vm.vault == vault.name and vm.state is not VmState.DISCOVERED]
        protected = [vm for vm in mine if vm.state is VmState.PROTECTED]
        board = Dashboard(
            vault=vault.name,
            at=now,
            vms={
                "discovered": len(vms),
                "registered": len(mine),
                "protected": len(protected),
                "pending_initial_backup": sum(1 for vm in protected if vm.uuid not in newest),
                "protection_stopped": sum(
                    1 for vm in mine if vm.state is VmState.PROTECTION_STOPPED
                ),
                "vanished": sum(1 for vm in vms if vm.vanished_at is not None),
            },
            jobs={
                state.value.replace("-", "_"): sum(1 for j in jobs if j.state is state)
                for state in (
                    JobState.COMPLETED,
                    JobState.COMPLETED_WITH_WARNINGS,
                    JobState.FAILED,
                    JobState.CANCELLED,
                )
            }
            | {"in_progress": sum(1 for j in jobs if j.state.active)},
            storage_bytes=self.vaults.stored_chunk_bytes(vault),
            logical_bytes=sum(p.bytes_logical for p in points),
            points=len(points),
            by_consistency={
                c.value: sum(1 for p in points if p.consistency is c) for c in Consistency
            },
            soft_deleted=len(binned),
            soft_deleted_bytes=sum(p.bytes_logical for p, _ in binned),
            next_purge_at=min((d.purge_after for _, d in binned), default=None),
        )
        for vm in protected:
            last = newest.get(vm.uuid)
            job = last_backup_job.get(vm.uuid)
            policy = policies.get(vm.policy or "")
            flag = partial(Attention, vm.uuid, vm.label, vm.policy, last_backup_at=last)
            if vm.vanished_at is not None or (job is not None and job.error_code == "VM_DELETED"):
                why = "the VM no longer exists in libvirt: stop its protection with --retain-data"
                board.attention.append(flag("vm-deleted", why))
            elif job is not None and job.state is JobState.FAILED:
                why = f"job {job.id}: {job.error_code}: {job.message}"
                board.attention.append(flag("last-backup-failed", why))
            elif policy is not None:
                since = last or vm.protected_since
                if since is not None and overdue_at(policy, since) <= now:
                    what = "last backup" if last else "protection configured"
                    due = overdue_at(policy, since).isoformat(timespec="seconds")
                    why = f"{what} at {since.isoformat(timespec='seconds')}, overdue since {due}"
                    board.attention.append(flag("overdue" if last else "never-backed-up", why))
        return board
