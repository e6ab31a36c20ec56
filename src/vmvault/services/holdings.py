"""Which vaults hold a recovery point: its own vault and the vaults holding a copy.

A point keeps its id in every vault.  ``recovery_points.vault`` is its *own* vault (the one
it was taken into); ``point_copies`` lists the other vaults that hold it (docs/copies.md).
These helpers read and change that, inside the caller's transaction:

* :func:`holders` — own vault first, then the copies, by name (``exclude``: one left out);
* :func:`damage_in` — the damage verify or a restore recorded for the point in one vault;
* :func:`holding` — both, for showing a point: every holder and the damage in each;
* :func:`held_in` — the points a vault holds (its own and its copies), newest first;
* :func:`vault_holding` — the vault a restore reads from (``--from-vault``), or the refusal;
* :func:`forget` — the catalog side of removing the point from one vault: a copy's row goes;
  the own vault's row goes too unless a copy exists, in which case the oldest copy's vault
  becomes the point's own vault (its data is there, whole; nothing else refers to the old
  one).  The caller has already deleted the point's manifest and indexes in that vault.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmvault.domain.errors import PointNotInVault
from vmvault.domain.recovery_point import DamagedDisk, RecoveryPoint
from vmvault.services.ports import UnitOfWork


@dataclass(frozen=True)
class Holding:
    """Where a point is held: ``vaults`` (own first), ``damaged`` (vault → its damage
    there, only the vaults where the point is marked damaged)."""

    vaults: list[str]
    damaged: dict[str, tuple[DamagedDisk, ...]]


def holders(uow: UnitOfWork, point: RecoveryPoint, exclude: str | None = None) -> list[str]:
    """The vaults holding ``point``: its own first, then its copies by name; ``exclude``
    left out (the vault a repair is for)."""
    copies = [c.vault for c in uow.copies.of_point(point.id)]  # by vault name
    return [v for v in [point.vault, *copies] if v != exclude]


def damage_in(uow: UnitOfWork, point: RecoveryPoint, vault: str) -> tuple[DamagedDisk, ...] | None:
    """The damage recorded for ``point`` in ``vault`` (None: intact, as far as verify knows)."""
    if vault == point.vault:
        return point.damaged
    copy = uow.copies.get(point.id, vault)
    return copy.damaged if copy is not None else None


def damage_recorded(uow: UnitOfWork, vault: str) -> bool:
    """Whether verify recorded damage on any point ``vault`` holds (own points and copies)."""
    return any(p.damaged for p in uow.points.in_vault(vault)) or any(
        c.damaged for c in uow.copies.in_vault(vault)
    )


def holding(uow: UnitOfWork, point: RecoveryPoint) -> Holding:
    damaged = {point.vault: point.damaged} if point.damaged else {}
    damaged |= {c.vault: c.damaged for c in uow.copies.of_point(point.id) if c.damaged}
    return Holding(holders(uow, point), damaged)


def held_in(uow: UnitOfWork, vault: str, vm_uuid: str | None = None) -> list[RecoveryPoint]:
    """The points ``vault`` holds (own and copies), of one VM or all, newest first."""
    own = uow.points.for_vm(vm_uuid, vault) if vm_uuid else uow.points.in_vault(vault)
    copied = [uow.points.get(c.point_id) for c in uow.copies.in_vault(vault)]
    points = {p.id: p for p in own}
    for p in copied:
        if p is not None and (vm_uuid is None or p.vm_uuid == vm_uuid):
            points[p.id] = p
    return sorted(points.values(), key=lambda p: (p.created_at, p.id), reverse=True)


def vault_holding(uow: UnitOfWork, point: RecoveryPoint, vault: str | None) -> str:
    """``vault`` if it holds the point (None: the point's own vault), else the refusal."""
    if vault is None or vault == point.vault:
        return point.vault
    if uow.copies.get(point.id, vault) is None:
        names = ", ".join(holders(uow, point))
        raise PointNotInVault(point=point.id, vault=vault, holders=names)
    return vault


def forget(uow: UnitOfWork, point: RecoveryPoint, vault: str) -> str | None:
    """Forget that ``vault`` holds the point; returns the point's new own vault when the own
    vault was forgotten and a copy took its place."""
    if vault != point.vault:
        uow.copies.remove(point.id, vault)
        return None
    copies = sorted(uow.copies.of_point(point.id), key=lambda c: (c.created_at, c.vault))
    if not copies:
        uow.points.delete(point.id)
        return None
    heir = copies[0]
    uow.points.move(point.id, heir.vault, heir.damaged)
    uow.copies.remove(point.id, heir.vault)
    return heir.vault
