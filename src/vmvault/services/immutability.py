"""Immutable vaults and retained points (docs/immutability.md): the one service check and
the use cases of the setting.

The rules are :mod:`vmvault.domain.immutability`'s; here they meet the catalog.  Every path
that removes a point asks :func:`check_removal` first — ``points delete``, ``protection stop
--delete-data``, and :func:`~vmvault.services.soft_delete.remove_holding` itself (the one way
a point leaves a vault, so a path that forgot to ask is still refused) — and retention's prune
keeps retained points (:func:`~vmvault.domain.immutability.hold_retained`); a soft-deleted
point still retained is not purged (:func:`purge_allowed`).  Below vmvault the storage holds
the point's objects (:func:`hold_point`): the immutable attribute on a directory, Object Lock
on S3 (:class:`~vmvault.storage.backend.ObjectHold`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from vmvault.dataplane import holds
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import PointNotFound, VaultNotFound
from vmvault.domain.immutability import (
    change,
    enabled,
    hold_retained,
    lengthen,
    lock_mode,
    policy_guarantee,
    retain_until,
    retained,
)
from vmvault.domain.immutability import (
    check_removal as _check_removal,
)
from vmvault.domain.inputs import check_until
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.retention import Decision, Retention, apply_retention, point_refs
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmItem
from vmvault.services.context import Service
from vmvault.services.ports import UnitOfWork

#: The backup job's journal step after its point's objects were held by the storage:
#: ``{"point", "objects", "until"}`` — ``objects``: how many got a hold or a longer one (on S3,
#: the PutObjectRetention requests: the extension cost, docs/immutability.md).
HELD = "held"


def check_removal(vault: Vault, point: RecoveryPoint, now: datetime) -> None:
    """Refuse (``POINT_RETAINED``) to remove ``point`` from ``vault`` before its
    retain-until when the vault is immutable."""
    _check_removal(vault.name, vault.immutable, point.id, point.retain_until, now)


def check_removals(vault: Vault, points: Iterable[RecoveryPoint], now: datetime) -> None:
    """:func:`check_removal` of each point, before anything changes."""
    for point in points:
        check_removal(vault, point, now)


def retention_decisions(
    vault: Vault, points: Sequence[RecoveryPoint], retention: Retention, now: datetime, tz: ZoneInfo
) -> list[Decision]:
    """Retention's decisions over ``points`` held in ``vault``
    (:func:`~vmvault.domain.retention.apply_retention`), a retained point's removal turned
    into a keep in an immutable vault (:func:`~vmvault.domain.immutability.hold_retained`):
    what every prune (a policy's, a copy vault's) acts on."""
    decisions = apply_retention(point_refs(points), retention, now, tz)
    return hold_retained(decisions, {p.id: p.retain_until for p in points}, vault.immutable, now)


def purge_allowed(vault: Vault, point: RecoveryPoint, now: datetime) -> bool:
    """Whether a soft-deleted holding whose period ended may be purged now (a point
    soft-deleted before its vault became immutable, or before a ``points lock``, waits)."""
    return not (enabled(vault.immutable) and retained(point.retain_until, now))


def new_point_retain_until(
    uow: UnitOfWork, vm: VmItem, created_at: datetime, keep_until: datetime | None
) -> datetime | None:
    """The retain-until of a point of ``vm`` created at ``created_at``: its policy's
    guarantee (:func:`~vmvault.domain.immutability.policy_guarantee`) or its ``--keep-until``,
    the later; None for an ad-hoc point without ``--keep-until``."""
    row = uow.policies.get(vm.policy) if vm.policy is not None else None
    guarantee = None
    if row is not None:
        policy = row.policy
        guarantee = policy_guarantee(policy.retention, created_at, policy.timezone)
    return retain_until(guarantee, keep_until)


def hold_point(store: VaultStore, vault: Vault, point: RecoveryPoint) -> int:
    """In an immutable vault, make the point's objects undeletable in the storage until its
    retain-until, where the storage can (:class:`~vmvault.storage.backend.ObjectHold`);
    returns how many objects got a hold or a longer one (0: none could, or none needed)."""
    if point.retain_until is None or not enabled(vault.immutable):
        return 0
    return holds.hold_point(store, point.id, point.retain_until, lock_mode(vault))


def copied(uow: UnitOfWork, vault: str) -> list[RecoveryPoint | None]:
    """The points of which ``vault`` holds a copy (normally)."""
    return [uow.points.get(c.point_id) for c in uow.copies.in_vault(vault)]


class ImmutabilityService(Service):
    """A vault's immutability and a point's retain-until."""

    def update_vault(self, name: str, immutable: bool | None, lock: bool = False) -> Vault:
        """``vault update NAME --immutable [--lock]`` / ``--no-immutable``: refused before
        anything changes once locked (``IMMUTABLE_LOCKED``), or when the vault's storage
        cannot hold objects (``IMMUTABLE_UNSUPPORTED``: a directory on a file system without
        the immutable attribute, an S3 bucket without Object Lock).  Turned on, the points
        (own and copies) it now retains get the storage's hold."""
        vault = self.vaults.resolve(name)
        mode = change(vault.name, vault.immutable, immutable, lock)
        store = None
        if enabled(mode) and not enabled(vault.immutable):
            store = self.vaults.open_store(vault)
            holds.check_hold(store, vault.name)
        with self.uow() as uow:
            current = uow.vaults.get(vault.name)
            if current is None:
                raise VaultNotFound(name=name)
            mode = change(vault.name, current.immutable, immutable, lock)
            uow.vaults.set_immutable(vault.name, mode)
            uow.commit()
            now = self.clock()
            retained = [
                p
                for p in [*uow.points.in_vault(vault.name), *copied(uow, vault.name)]
                if p is not None and p.retain_until and p.retain_until > now
            ]
        updated = replace(current, immutable=mode)
        if store is not None:  # turned on: the points it now retains get the storage's hold
            for point in retained:
                hold_point(store, updated, point)
        return updated

    def lock_point(self, point_id: str, until: datetime) -> tuple[RecoveryPoint, int]:
        """``points lock POINT --keep-until DATE``: the point's retain-until moves to
        ``until`` — never earlier (``RETENTION_SHORTENED``), never in the past
        (``INVALID_INPUT``).  Retention keeps it until then too (its ``keep_until``).  The
        storage's hold is lengthened at once; returns the point and the objects held."""
        until = check_until(until, self.clock())
        with self.uow() as uow:
            point = uow.points.get(point_id)
            if point is None:
                raise PointNotFound(point=point_id, path="the catalog")
            new = lengthen(point.vault, point.id, point.retain_until, until)
            keep = max(point.keep_until, new) if point.keep_until else new
            uow.points.set_retain_until(point.id, new)
            uow.points.set_pinned(point.id, point.protected, keep)
            uow.commit()
        point = replace(point, retain_until=new, keep_until=keep)
        vault = self.vaults.resolve(point.vault)
        held = hold_point(self.vaults.open_store(vault), vault, point)
        return point, held
