"""Protection: a registered VM with a policy, and retention (docs/architecture.md,
"Protection and retention").

States and jobs:

* ``protect VM --policy P`` (a ``configure-protection`` job per VM): ``registered``,
  ``protected`` (re-protect: moves to P) or ``protection-stopped`` → ``protected``.  Until the
  VM's first recovery point exists it is shown as *pending initial backup*
  (:func:`protection_detail`); ``--backup-now`` runs that backup at once.
* ``protection stop --retain-data`` (a ``stop-protection`` job): ``protection-stopped``; the
  policy is remembered, the points stay restorable and are never pruned.
  ``--delete-data``: the VM's points are removed from the vault — soft-deleted when its soft
  delete is on (docs/soft-delete.md), else deleted (manifests and indexes now, their chunks at
  the next GC) and it is ``registered`` again, without a policy.
* ``protection resume [--policy P]``: ``protection-stopped`` → ``protected``.
* ``unregister`` (an ``unregister`` job): refused while protected (``VM_PROTECTED``); the
  VM is ``discovered`` again, retained points stay in the vault.

Retention: after each successful backup of a protected VM a ``prune`` job applies
:func:`~vmvault.domain.retention.apply_retention` with the VM's policy (to the points held
normally: soft-deleted ones are not seen again) and removes what it removes (soft-deleted or
deleted, as above), logging every decision with its reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from vmvault.dataplane.vault import VaultStore
from vmvault.domain.approval import Kind, Requester
from vmvault.domain.cluster import pause_needed, refuse_pause
from vmvault.domain.disk_selection import select_disks
from vmvault.domain.errors import (
    InvalidInput,
    PointNotFound,
    PolicyNotFound,
    VmNotRegistered,
    VmProtected,
    WrongProtectionState,
)
from vmvault.domain.inputs import DEFAULT_PAGE, check_page
from vmvault.domain.job import JobType
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.retention import Decision
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmItem, VmState
from vmvault.services import immutability, soft_delete
from vmvault.services.backups import BackupOutcome, BackupService
from vmvault.services.context import Service, ServiceContext
from vmvault.services.dashboard import vault_health
from vmvault.services.jobs import JobContext, JobOutcome
from vmvault.services.vm_refs import MustBe, resolve_vms

PENDING = "protection-configured (pending initial backup)"


def protection_detail(vm: VmItem, has_points: bool) -> str:
    """The VM's protection state in words, with *pending* made explicit."""
    if vm.state is VmState.PROTECTED:
        return "protected" if has_points else PENDING
    if vm.state is VmState.PROTECTION_STOPPED:
        return "protection-stopped (data retained)"
    return vm.state.value


@dataclass
class ProtectResult:
    configured: list[JobOutcome[VmItem]]
    backups: list[BackupOutcome]  # each with the prune job retention ran after it


@dataclass
class PruneResult:
    decisions: list[Decision]
    removed: list[str]


class ProtectionService(Service):
    def __init__(self, ctx: ServiceContext, backups: Callable[[], BackupService]) -> None:
        super().__init__(ctx)
        self._backups = backups
        self._stores: dict[str, VaultStore] = {}
        #: Queues the copy of a protected VM's new points when its policy copies to a second
        #: vault (bootstrap sets it: ``QueueService.queue_policy_copy``; docs/copies.md).
        self.copy_after_backup: Callable[[str, VmItem, Policy], object] | None = None

    # --- choosing VMs --------------------------------------------------------------------------

    def _choose(self, vault: Vault, refs: Sequence[str]) -> list[VmItem]:
        """Every reference resolved and checked before any job starts (one bad: none runs)."""
        with self.uow() as uow:
            return resolve_vms(uow, refs, vault=vault, must_be=MustBe.REGISTERED)

    def _policy(self, vault: Vault, name: str) -> Policy:
        with self.uow() as uow:
            record = uow.policies.get(name)
        if record is None:
            raise PolicyNotFound(name=name)
        if record.vault != vault.name:
            raise InvalidInput(
                f"it belongs to vault '{record.vault}'",
                what=f"policy '{name}' for vault '{vault.name}'",
            )
        return record.policy

    def _run(
        self,
        job_type: JobType,
        vault: Vault,
        vm: VmItem,
        work: Callable[[VmItem, JobContext], VmItem],
    ) -> JobOutcome[VmItem]:
        return self.runner.run(job_type, vault.name, vm.uuid, vm.label, partial(work, vm))

    def _current(self, vm: VmItem) -> VmItem:
        """The VM as the catalog has it now (inside its job: no one else may change it)."""
        with self.uow() as uow:
            current = uow.vms.get(vm.uuid)
        assert current is not None
        return current

    # --- protect / resume ---------------------------------------------------------------------

    def protect(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        policy: str,
        backup_now: bool = False,
        exclude_disks: Sequence[str] = (),
    ) -> ProtectResult:
        """``exclude_disks``: targets added to each VM's excluded disks (checked for every VM
        before any job starts)."""
        vault = self.vaults.resolve(vault_name)
        self._policy(vault, policy)
        chosen = self._choose(vault, refs)
        for vm in chosen if exclude_disks else ():
            select_disks(vm, exclude_disks)
        configured = [
            self._run(
                JobType.CONFIGURE_PROTECTION,
                vault,
                vm,
                partial(self._protect, policy, exclude_disks=tuple(exclude_disks)),
            )
            for vm in chosen
        ]
        return ProtectResult(configured, self._backup_now(vault, configured, backup_now))

    def resume(
        self, vault_name: str | None, refs: Sequence[str], policy: str | None = None
    ) -> ProtectResult:
        vault = self.vaults.resolve(vault_name)
        if policy is not None:
            self._policy(vault, policy)
        chosen = self._choose(vault, refs)
        for vm in chosen:
            if vm.state is not VmState.PROTECTION_STOPPED:
                raise WrongProtectionState(vm=vm.label, state=vm.state.value, action="resumed")
            if policy is None and vm.policy is None:
                raise InvalidInput("give --policy", what=f"VM {vm.label} (it has no policy)")
        configured = [
            self._run(
                JobType.CONFIGURE_PROTECTION,
                vault,
                vm,
                partial(self._protect, policy or vm.policy or ""),
            )
            for vm in chosen
        ]
        return ProtectResult(configured, [])

    def _protect(
        self, policy_name: str, vm: VmItem, ctx: JobContext, exclude_disks: Sequence[str] = ()
    ) -> VmItem:
        with self.uow() as uow:
            current = uow.vms.get(vm.uuid)
            assert current is not None
            if uow.policies.get(policy_name) is None:  # deleted since the request was checked
                raise PolicyNotFound(name=policy_name)
            before, old = current.state, current.policy
            if before is VmState.DISCOVERED:
                raise VmNotRegistered(vm=vm.label, vault=vm.vault or "?")
            need = pause_needed(current)
            if need is not None:
                refuse_pause(current, need)
            if exclude_disks:
                current.excluded_targets = select_disks(current, exclude_disks)
                ctx.log(f"disks excluded by user: {', '.join(current.excluded_targets)}")
            current.state = VmState.PROTECTED
            if old != policy_name or before is not VmState.PROTECTED:
                current.protected_since = self.clock()
            current.policy = policy_name
            uow.vms.save(current)
            has_points = bool(uow.points.for_vm(vm.uuid, current.vault))
            uow.commit()
        if before is VmState.PROTECTED and old != policy_name:
            ctx.log(f"moved from policy '{old}' to '{policy_name}'")
        elif before is VmState.PROTECTION_STOPPED:
            ctx.log(f"protection resumed with policy '{policy_name}'")
        else:
            ctx.log(f"protected by policy '{policy_name}'")
        ctx.log(f"state: {protection_detail(current, has_points)}")
        return current

    def _backup_now(
        self, vault: Vault, configured: list[JobOutcome[VmItem]], wanted: bool
    ) -> list[BackupOutcome]:
        ready = [o.result.uuid for o in configured if o.result is not None]
        if not wanted or not ready:
            return []
        return self._backups().backup(vault.name, ready)

    # --- stop / unregister ----------------------------------------------------------------------

    def stop(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        *,
        retain_data: bool,
        by: Requester = None,
    ) -> list[JobOutcome[VmItem]]:
        """``--delete-data`` is held for approval where the vault's approvals are on."""
        self.guard(
            Kind.STOP_DELETE_DATA, {"vault": vault_name, "vms": list(refs),
                                    "retain_data": retain_data}, by
        )  # fmt: skip
        vault = self.vaults.resolve(vault_name)
        chosen = self._choose(vault, refs)
        for vm in chosen:
            if vm.state is not VmState.PROTECTED:
                raise WrongProtectionState(
                    vm=vm.label, state=vm.state.value, action="stopped (it is not protected)"
                )
        if not retain_data:
            with self.uow() as uow:
                doomed = [p for vm in chosen for p in uow.points.for_vm(vm.uuid, vault.name)]
            immutability.check_removals(vault, doomed, self.clock())
        store = None if retain_data else self._store(vault)
        return [
            self._run(JobType.STOP_PROTECTION, vault, vm, partial(self._stop, vault, store))
            for vm in chosen
        ]

    def _stop(self, vault: Vault, store: VaultStore | None, vm: VmItem, ctx: JobContext) -> VmItem:
        current = self._current(vm)
        if current.state is not VmState.PROTECTED:
            raise WrongProtectionState(vm=vm.label, state=current.state.value, action="stopped")
        if store is None:
            current.state = VmState.PROTECTION_STOPPED
            with self.uow() as uow:
                uow.vms.save(current)
                uow.commit()
            ctx.log(f"protection stopped, data retained (policy '{current.policy}' remembered)")
            return current
        with self.uow() as uow:
            points = uow.points.for_vm(vm.uuid, vault.name)
        for i, point in enumerate(points):
            removed = self._delete_point(store, vault, point)
            ctx.log(removed.describe() if removed else f"{point.id}: already gone from the vault")
            ctx.progress(i + 1, len(points))
        current.state, current.policy, current.protected_since = VmState.REGISTERED, None, None
        with self.uow() as uow:
            uow.vms.save(current)
            uow.commit()
        how = (
            f"soft-deleted (purged by 'vmvault gc' after {vault.soft_delete.days} days; "
            "'vmvault points list --deleted')"
            if vault.soft_delete.enabled
            else "deleted; their chunks are reclaimed by the next 'vmvault gc'"
        )
        ctx.log(f"protection stopped, {len(points)} point(s) {how}")
        return current

    def unregister(self, vault_name: str | None, refs: Sequence[str]) -> list[JobOutcome[VmItem]]:
        vault = self.vaults.resolve(vault_name)
        chosen = self._choose(vault, refs)
        for vm in chosen:
            if vm.state is VmState.PROTECTED:
                raise VmProtected(vm=vm.label, policy=vm.policy or "?")
        return [self._run(JobType.UNREGISTER, vault, vm, self._unregister) for vm in chosen]

    def _unregister(self, vm: VmItem, ctx: JobContext) -> VmItem:
        current = self._current(vm)
        if current.state is VmState.PROTECTED:
            raise VmProtected(vm=vm.label, policy=current.policy or "?")
        with self.uow() as uow:
            kept = len(uow.points.for_vm(vm.uuid, current.vault))
            current.state, current.vault, current.registered_at = VmState.DISCOVERED, None, None
            current.policy, current.protected_since = None, None
            uow.vms.save(current)
            uow.commit()
        ctx.log(f"unregistered; {kept} retained point(s) stay in the vault")
        return current

    # --- retention --------------------------------------------------------------------------------

    def after_backup(
        self, vault: Vault, vm: VmItem, point: RecoveryPoint
    ) -> JobOutcome[PruneResult] | None:
        """BackupService's hook: prune a protected VM's points with its policy (the prune
        job's outcome comes back with the backup's, as ``BackupOutcome.prune``)."""
        current = self._current(vm)
        if current.state is not VmState.PROTECTED or current.policy is None:
            return None
        outcome = self.prune(vault, current)
        policy = self._policy(vault, current.policy)
        if policy.copy is not None and self.copy_after_backup is not None:
            self.copy_after_backup(vault.name, current, policy)
        return outcome

    def prune(self, vault: Vault, vm: VmItem) -> JobOutcome[PruneResult]:
        """One ``prune`` job: apply the VM's policy's retention, delete what it removes."""
        return self.runner.run(
            JobType.PRUNE, vault.name, vm.uuid, vm.label, partial(self._prune, vault, vm)
        )

    def _prune(self, vault: Vault, vm: VmItem, ctx: JobContext) -> PruneResult:
        store = self._store(vault)  # in the job: a locked vault fails the prune, not the backup
        current = self._current(vm)
        if current.state is not VmState.PROTECTED or current.policy is None:
            ctx.log(f"VM is {current.state.value}: its points are not pruned")
            return PruneResult([], [])
        policy = self._policy(vault, current.policy)
        with self.uow() as uow:
            points = uow.points.for_vm(vm.uuid, vault.name)
        decisions = immutability.retention_decisions(
            vault, points, policy.retention, self.clock(), policy.timezone
        )
        ctx.log(f"policy '{policy.name}': {policy.retention}, {len(points)} point(s)")
        removed = []
        by_id = {p.id: p for p in points}
        for d in decisions:
            ctx.log(f"{'keep' if d.keep else 'remove'} {d.point_id}: {', '.join(d.reasons)}")
            if not d.keep:
                gone = self._delete_point(store, vault, by_id[d.point_id])
                removed.append(d.point_id)
                if gone is not None:
                    ctx.log(gone.describe())
        ctx.log(f"{len(removed)} point(s) removed (docs/soft-delete.md)")
        return PruneResult(decisions, removed)

    def _delete_point(
        self, store: VaultStore, vault: Vault, point: RecoveryPoint
    ) -> soft_delete.Removed | None:
        """The point leaves the vault through the one deletion helper: soft-deleted when the
        vault's soft delete is on, else deleted at once (:func:`soft_delete.remove_holding`)."""
        return soft_delete.remove_holding(self.ctx, store, vault.name, point.id)

    def _store(self, vault: Vault) -> VaultStore:
        if vault.name not in self._stores:
            self._stores[vault.name] = self.vaults.open_store(vault)
        return self._stores[vault.name]

    # --- pins -------------------------------------------------------------------------------------

    def pin(self, point_id: str, protected: bool) -> RecoveryPoint:
        """``points protect`` / ``unprotect``: a protected point is never pruned."""
        with self.uow() as uow:
            point = uow.points.get(point_id)
            if point is None:
                raise PointNotFound(point=point_id, path="the catalog")
            uow.points.set_pinned(point_id, protected, point.keep_until)
            uow.commit()
        point.protected = protected
        return point

    # --- listing --------------------------------------------------------------------------------

    def items(
        self, vault_name: str | None, limit: int = DEFAULT_PAGE, offset: int = 0
    ) -> tuple[list[ProtectedItem], int]:
        """A page of the VMs registered with the vault (``limit`` after ``offset``, by name),
        with their protection, the points it holds of each (own and copies) and their health
        (:func:`~vmvault.services.dashboard.vault_health`: the dashboard's rule and inputs;
        ``ok``, the reason, or ``-`` when not protected); and how many there are in all.  Its
        number of queries does not grow with the number of VMs."""
        check_page(limit, offset)
        vault = self.vaults.resolve(vault_name)
        now = self.clock()
        uris = [h.uri for h in self.vaults.list_hosts(vault.location)]
        with self.uow() as uow:
            vms = uow.vms.all(vault=vault.name, limit=limit, offset=offset)
            total = uow.vms.count(vault=vault.name)
            health = vault_health(uow, vault.name, uris, now, only=vms)
        items = []
        for vm in vms:
            points, newest = health.held.get(vm.uuid, (0, None))
            detail = protection_detail(vm, bool(points))
            items.append(ProtectedItem(vm, detail, points, newest, health.health(vm)))
        return items, total


@dataclass
class ProtectedItem:
    vm: VmItem
    protection: str
    points: int
    last_point_at: datetime | None
    #: ok | last-backup-failed | overdue | never-backed-up | vm-deleted; ``-``: not protected
    health: str = "-"
