"""Soft delete of recovery points (docs/soft-delete.md): the one way a point leaves a vault.

A point is held per vault (its own vault and the vaults holding a copy: docs/copies.md), and
soft delete is per holding.  Every deletion path — ``points delete``, a policy's retention
(prune), a copy vault's retention, ``protection stop --delete-data`` — calls
:func:`remove_holding`, which reads the vault's setting in the same transaction:

* soft delete ``on`` or ``always``: the holding is marked soft-deleted (``deleted_at``,
  ``purge_after`` = ``deleted_at`` + the vault's days); its manifest and indexes stay in the
  vault, so GC (which marks from every manifest, docs/vault-format.md §8) keeps its chunks;
* ``off``: :func:`purge` at once (today's delete: manifest, indexes, then the catalog).

A soft-deleted holding is invisible to listing, restore, verify, copy and retention
(:mod:`vmvault.services.holdings`) until :meth:`SoftDeleteService.undelete`; once its period
ends it can no longer be undeleted, and the vault's next GC purges it (:func:`purge_expired`,
before its sweep, each purge a ``purged`` step in the GC job's journal).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vmvault.dataplane.vault import VaultStore
from vmvault.domain.approval import Kind, Requester
from vmvault.domain.errors import (
    InvalidInput,
    PointNotInVault,
    PointNotSoftDeleted,
    VaultNotFound,
)
from vmvault.domain.immutability import check_soft_delete_change, enabled
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.soft_delete import Deletion, change, check_undelete, deletion, parse_mode
from vmvault.domain.vault import Vault
from vmvault.services import holdings, immutability
from vmvault.services.context import Service, ServiceContext
from vmvault.services.jobs import JobContext
from vmvault.services.ports import UnitOfWork
from vmvault.services.vm_refs import resolve_vm

#: The GC job's journal step for each purged holding: ``{"point", "vault", "deleted_at",
#: "purge_after"}`` (ISO times).
PURGED = "purged"


@dataclass(frozen=True)
class Removed:
    """What :func:`remove_holding` did to the point's holding in ``vault``."""

    point: str
    vault: str
    #: the soft deletion made; None: deleted at once (the vault's soft delete is off)
    deleted: Deletion | None
    #: deleted at once from its own vault while a copy exists: that copy's vault, now its own
    heir: str | None = None

    def describe(self) -> str:
        if self.deleted is not None:
            until = self.deleted.purge_after.isoformat(timespec="seconds")
            return f"soft-deleted {self.point} in '{self.vault}' (purged after {until})"
        moved = f"; its own vault is now '{self.heir}'" if self.heir else ""
        return f"deleted {self.point} from '{self.vault}'{moved}"


@dataclass(frozen=True)
class DeletedHolding:
    """A point soft-deleted in one vault."""

    point: RecoveryPoint
    vault: str
    deleted: Deletion


def remove_holding(
    ctx: ServiceContext, store: VaultStore, vault: str, point_id: str
) -> Removed | None:
    """Remove the point from ``vault`` (``store`` is that vault's): soft when the vault's
    setting is on, at once when off.  None when the vault no longer holds it normally (deleted
    or soft-deleted since the caller looked): nothing is done."""
    with ctx.uow() as uow:
        where = uow.vaults.get(vault)
        point = uow.points.get(point_id)
        if where is None or point is None or vault not in holdings.holders(uow, point):
            return None
        immutability.check_removal(where, point, ctx.clock())
        if where.soft_delete.enabled:
            gone = deletion(where.soft_delete, ctx.clock())
            if vault == point.vault:
                uow.points.set_deleted(point.id, gone)
            else:
                uow.copies.set_deleted(point.id, vault, gone)
            uow.commit()
            return Removed(point.id, vault, gone)
    return purge(ctx, store, vault, point_id)


def purge(ctx: ServiceContext, store: VaultStore, vault: str, point_id: str) -> Removed | None:
    """Delete the point from ``vault`` for good: manifest first (it stops existing there),
    then its indexes, then the catalog (:func:`holdings.forget`).  Its chunks that no other
    point references go at the vault's next GC.  A crash in between leaves a catalog row whose
    manifest is gone: the same purge, run again, finishes it (deleting is idempotent)."""
    store.delete_point(point_id)
    with ctx.uow() as uow:
        current = uow.points.get(point_id)
        if current is None:
            return None
        heir = holdings.forget(uow, current, vault)
        uow.commit()
    return Removed(point_id, vault, None, heir)


def purge_expired(
    ctx: ServiceContext, vault: Vault, store: VaultStore, job: JobContext, dry_run: bool
) -> list[str]:
    """Purge the holdings soft-deleted in ``vault`` whose period has ended (a GC's first
    step); with ``dry_run`` only name them.  Returns the point ids purged (or due)."""
    now = ctx.clock()
    with ctx.uow() as uow:
        due = [(p, d) for p, d in holdings.deleted_in(uow, vault.name) if d.expired(now)]
    done: list[str] = []
    for point, gone in reversed(due):  # oldest first
        when = gone.purge_after.isoformat(timespec="seconds")
        if dry_run:
            job.log(f"would purge {point.id} of {point.vm_name} (soft-deleted, due {when})")
            done.append(point.id)
            continue
        with ctx.uow() as uow:  # undeleted meanwhile? (refused once due: belt and braces)
            current = uow.points.get(point.id)
            still = current is not None and holdings.deletion_in(uow, current, vault.name)
        if not still:
            continue
        if current is not None and not immutability.purge_allowed(vault, current, now):
            until = (
                current.retain_until.isoformat(timespec="seconds") if current.retain_until else ""
            )
            job.log(f"kept {point.id}: retained until {until} (immutable vault)")
            continue
        removed = purge(ctx, store, vault.name, point.id)
        job.record(
            PURGED,
            point=point.id,
            vault=vault.name,
            deleted_at=gone.deleted_at.isoformat(),
            purge_after=gone.purge_after.isoformat(),
        )
        moved = f"; its own vault is now '{removed.heir}'" if removed and removed.heir else ""
        job.log(f"purged {point.id} of {point.vm_name} (soft-deleted, due {when}){moved}")
        done.append(point.id)
    if due:
        job.log(f"{len(done)} soft-deleted point(s) {'due' if dry_run else 'purged'}")
    return done


class SoftDeleteService(Service):
    """Listing and undeleting soft-deleted points; a vault's soft-delete setting."""

    def deleted(
        self, vault_name: str | None, vm_ref: str | None = None
    ) -> tuple[str, list[DeletedHolding]]:
        """The vault listed and its soft-deleted points (own and copies), newest first."""
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            vm = resolve_vm(uow, vm_ref) if vm_ref is not None else None
            found = holdings.deleted_in(uow, vault.name, vm.uuid if vm else None)
        return vault.name, [DeletedHolding(p, vault.name, d) for p, d in found]

    def undelete(self, point_id: str, vault_name: str | None = None) -> list[DeletedHolding]:
        """Restore the point's soft-deleted holding in ``vault_name`` (None: in every vault
        where it is soft-deleted) to normal; returns what was undeleted.  Refused, nothing
        changed: unknown point (``POINT_NOT_FOUND``, also once purged everywhere), a vault not
        holding it (``POINT_NOT_IN_VAULT``, also once purged there), not soft-deleted
        (``POINT_NOT_SOFT_DELETED``), its period ended (``SOFT_DELETE_EXPIRED``)."""
        with self.uow() as uow:
            point = holdings.known(uow, point_id)
        if vault_name is not None:
            self.vaults.resolve(vault_name)
        now = self.clock()
        with self.uow() as uow:
            point = uow.points.get(point_id) or point
            gone = self._deleted_holdings(uow, point, vault_name)
            for holding in gone:
                check_undelete(point.id, holding.vault, holding.deleted, now)
            for holding in gone:
                if holding.vault == point.vault:
                    uow.points.set_deleted(point.id, None)
                else:
                    uow.copies.set_deleted(point.id, holding.vault, None)
            uow.commit()
        return gone

    def _deleted_holdings(
        self, uow: UnitOfWork, point: RecoveryPoint, vault: str | None
    ) -> list[DeletedHolding]:
        if vault is None:
            own = [(point.vault, point.deleted)] if point.deleted else []
            copies = [(c.vault, c.deleted) for c in uow.copies.of_point(point.id, deleted=True)]
            found = [DeletedHolding(point, v, d) for v, d in [*own, *copies] if d is not None]
            if not found:
                raise PointNotSoftDeleted(point=point.id, vault=point.vault)
            return found
        held = vault == point.vault or uow.copies.get(point.id, vault) is not None
        if not held:
            names = ", ".join(holdings.holders(uow, point)) or "none"
            raise PointNotInVault(point=point.id, vault=vault, holders=names)
        gone = holdings.deletion_in(uow, point, vault)
        if gone is None:
            raise PointNotSoftDeleted(point=point.id, vault=vault)
        return [DeletedHolding(point, vault, gone)]

    def purge_point(
        self, point_id: str, vault_name: str | None = None, *, by: Requester = None
    ) -> list[Removed]:
        """``points purge POINT [--vault V]``: purge the point's soft-deleted holding in
        ``vault_name`` (None: in every vault where it is soft-deleted) now, before its period
        ends — held for approval where the vault's approvals are on.  Refused as undelete is:
        ``POINT_NOT_FOUND``, ``POINT_NOT_IN_VAULT``, ``POINT_NOT_SOFT_DELETED``."""
        self.guard(Kind.POINT_PURGE, {"point": point_id, "vault": vault_name}, by)
        with self.uow() as uow:
            point = holdings.known(uow, point_id)
        if vault_name is not None:
            self.vaults.resolve(vault_name)
        with self.uow() as uow:
            gone = self._deleted_holdings(uow, point, vault_name)
        removed = []
        for holding in gone:
            store = self.vaults.open_store(self.vaults.resolve(holding.vault))
            done = purge(self.ctx, store, holding.vault, point.id)
            if done is not None:
                removed.append(done)
        return removed

    def update_vault(
        self, name: str, mode: str | None = None, days: int | None = None, *, by: Requester = None
    ) -> Vault:
        """``vault update NAME --soft-delete on|off|always --soft-delete-days N``: refused
        before anything changes when nothing is asked, the days are out of range or the vault
        is always-on and another mode is asked (``SOFT_DELETE_ALWAYS_ON``).  Holdings already
        soft-deleted keep their ``purge_after``.  Turning it off or shortening the days is
        held for approval where the vault's approvals are on (docs/approvals.md)."""
        self.guard(Kind.SOFT_DELETE_SETTING, {"vault": name, "mode": mode, "days": days}, by)
        if mode is None and days is None:
            raise InvalidInput(
                "give --soft-delete on|off|always and/or --soft-delete-days N",
                what=f"vault update {name}",
            )
        wanted = parse_mode(mode) if mode is not None else None
        with self.uow() as uow:
            vault = uow.vaults.get(name)
            if vault is None:
                raise VaultNotFound(name=name)
            setting = change(vault.name, vault.soft_delete, wanted, days)
            if enabled(vault.immutable):
                check_soft_delete_change(vault.name, vault.soft_delete, setting)
            uow.vaults.set_soft_delete(vault.name, setting)
            uow.commit()
        return replace(vault, soft_delete=setting)
