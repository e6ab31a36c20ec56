"""Which vaults hold a recovery point: its own vault and the vaults holding a copy.

A point keeps its id in every vault.  ``recovery_points.vault`` is its *own* vault (the one
it was taken into); ``point_copies`` lists the other vaults that hold it (docs/copies.md).
These helpers read and change that, inside the caller's transaction:

* :func:`holders` — own vault first, then the copies, by name (``exclude``: one left out);
* :func:`damage_in` — the damage verify or a restore recorded for the point in one vault;
* :func:`holding` — both, for showing a point: every holder and the damage in each;
* :func:`held_in` — the points a vault holds (its own and its copies), newest first;
* :func:`holdings_of` — :func:`holding` of many points at once (a page of a listing);
* :func:`vault_holding` — the vault a restore reads from (``--from-vault``), or the refusal;
* :func:`deletion_in`, :func:`deleted_in` — soft-deleted holdings (docs/soft-delete.md): a
  point soft-deleted in a vault is not held there for anything above (listing, restore,
  verify, copy, retention) until it is undeleted; only :func:`forget` (its purge) sees it;
* :func:`forget` — the catalog side of removing the point from one vault: a copy's row goes;
  the own vault's row goes too unless a copy exists, in which case the oldest copy's vault
  becomes the point's own vault (its data is there, whole; nothing else refers to the old
  one).  The caller has already deleted the point's manifest and indexes in that vault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vmvault.domain.errors import PointNotFound, PointNotInVault, PointSoftDeleted
from vmvault.domain.recovery_point import DamagedDisk, PointCopy, RecoveryPoint
from vmvault.domain.soft_delete import Deletion
from vmvault.services.ports import UnitOfWork


@dataclass(frozen=True)
class Holding:
    """Where a point is held: ``vaults`` (own first; held normally), ``damaged`` (vault →
    its damage there, only the vaults where the point is marked damaged), ``deleted``
    (vault → its soft deletion there)."""

    vaults: list[str]
    damaged: dict[str, tuple[DamagedDisk, ...]]
    deleted: dict[str, Deletion] = field(default_factory=dict)


def known(uow: UnitOfWork, point_id: str) -> RecoveryPoint:
    """The catalog's point ``point_id``, or ``POINT_NOT_FOUND``."""
    point = uow.points.get(point_id)
    if point is None:
        raise PointNotFound(point=point_id, path="the catalog")
    return point


def holders(uow: UnitOfWork, point: RecoveryPoint, exclude: str | None = None) -> list[str]:
    """The vaults holding ``point`` normally (not soft-deleted): its own first, then its
    copies by name; ``exclude`` left out (the vault a repair is for)."""
    copies = [c.vault for c in uow.copies.of_point(point.id)]  # by vault name
    own = [point.vault] if point.deleted is None else []
    return [v for v in [*own, *copies] if v != exclude]


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
    return holdings_of(uow, [point])[point.id]


def held_in(uow: UnitOfWork, vault: str, vm_uuid: str | None = None) -> list[RecoveryPoint]:
    """The points ``vault`` holds (own and copies), of one VM or all, newest first (one
    query; a page of them: ``uow.points.held``)."""
    return uow.points.held(vault, vm_uuid)


def holdings_of(uow: UnitOfWork, points: Sequence[RecoveryPoint]) -> dict[str, Holding]:
    """:func:`holding` of each of ``points`` (a page of a listing), with one query for all
    their copies."""
    copies: dict[str, list[PointCopy]] = {}
    for c in uow.copies.of_points([p.id for p in points]) if points else []:
        copies.setdefault(c.point_id, []).append(c)
    out = {}
    for p in points:
        mine = copies.get(p.id, [])
        live = [c for c in mine if c.deleted is None]
        damaged = {p.vault: p.damaged} if p.damaged else {}
        damaged |= {c.vault: c.damaged for c in live if c.damaged}
        deleted = {p.vault: p.deleted} if p.deleted else {}
        deleted |= {c.vault: c.deleted for c in mine if c.deleted}
        own = [p.vault] if p.deleted is None else []
        out[p.id] = Holding([*own, *(c.vault for c in live)], damaged, deleted)
    return out


def vault_holding(uow: UnitOfWork, point: RecoveryPoint, vault: str | None) -> str:
    """``vault`` if it holds the point normally (None: the point's own vault, or when it is
    soft-deleted there the first vault holding a copy normally), else the refusal:
    ``POINT_SOFT_DELETED`` when soft-deleted there, ``POINT_NOT_IN_VAULT`` when not held."""
    if vault is None:
        live = holders(uow, point)
        if live:
            return live[0]
        vault = point.vault
    gone = deletion_in(uow, point, vault)
    if gone is not None:
        raise PointSoftDeleted(
            point=point.id, vault=vault, purge_after=gone.purge_after.isoformat(timespec="seconds")
        )
    if vault != point.vault and uow.copies.get(point.id, vault) is None:
        names = ", ".join(holders(uow, point)) or "none (soft-deleted everywhere)"
        raise PointNotInVault(point=point.id, vault=vault, holders=names)
    return vault


def deletion_in(uow: UnitOfWork, point: RecoveryPoint, vault: str) -> Deletion | None:
    """The soft deletion of ``point`` in ``vault`` (None: held normally, or not held)."""
    if vault == point.vault:
        return point.deleted
    copy = uow.copies.get(point.id, vault)
    return copy.deleted if copy is not None else None


def deleted_in(
    uow: UnitOfWork, vault: str, vm_uuid: str | None = None
) -> list[tuple[RecoveryPoint, Deletion]]:
    """The points soft-deleted in ``vault`` (its own and copies), of one VM or all, with
    each one's deletion there; newest first."""
    out: dict[str, tuple[RecoveryPoint, Deletion]] = {}
    for p in uow.points.in_vault(vault, deleted=True):
        if p.deleted is not None:
            out[p.id] = (p, p.deleted)
    for c in uow.copies.in_vault(vault, deleted=True):
        point = uow.points.get(c.point_id)
        if point is not None and c.deleted is not None:
            out[point.id] = (point, c.deleted)
    listed = [x for x in out.values() if vm_uuid is None or x[0].vm_uuid == vm_uuid]
    return sorted(listed, key=lambda x: (x[0].created_at, x[0].id), reverse=True)


def forget(uow: UnitOfWork, point: RecoveryPoint, vault: str) -> str | None:
    """Forget that ``vault`` holds the point (held normally or soft-deleted); returns the
    point's new own vault when the own vault was forgotten and a copy (normal or
    soft-deleted: it keeps its state) took its place."""
    if vault != point.vault:
        uow.copies.remove(point.id, vault)
        return None
    copies = sorted(
        uow.copies.of_point(point.id, deleted=None), key=lambda c: (c.created_at, c.vault)
    )
    if not copies:
        uow.points.delete(point.id)
        return None
    heir = copies[0]
    uow.points.move(point.id, heir.vault, heir.damaged, heir.deleted)
    uow.copies.remove(point.id, heir.vault)
    return heir.vault
