"""Recovery points and the checkpoint records that keep incremental chains repairable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, true, update

from vmvault.domain.consistency import HookOutcome
from vmvault.domain.recovery_point import (
    CheckpointRecord,
    Consistency,
    DamagedDisk,
    Method,
    PointCopy,
    PointDisk,
    RecoveryPoint,
)
from vmvault.domain.soft_delete import Deletion
from vmvault.persistence import tables as t
from vmvault.persistence.held import held_by
from vmvault.persistence.times import req, utc
from vmvault.persistence.upsert import insert_new


def _damage(doc: Any) -> tuple[DamagedDisk, ...] | None:
    return None if doc is None else tuple(DamagedDisk.from_json(d) for d in doc)


def _deletion(r: Any) -> Deletion | None:
    if r.deleted_at is None:
        return None
    return Deletion(req(r.deleted_at), req(r.purge_after))


def _deleted(column: Any, deleted: bool | None) -> Any:
    """The ``where`` of a listing: held normally (False), soft-deleted (True), both (None)."""
    if deleted is None:
        return true()
    return column.is_not(None) if deleted else column.is_(None)


def _damage_json(damage: Sequence[DamagedDisk] | None) -> Any:
    return None if damage is None else [d.to_json() for d in damage]


class SqlPoints:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> RecoveryPoint:
        return RecoveryPoint(
            id=r.id,
            vault=r.vault,
            vm_uuid=r.vm_uuid,
            vm_name=r.vm_name,
            created_at=req(r.created_at),
            consistency=Consistency(r.consistency),
            method=Method(r.method),
            frozen_ms=r.frozen_ms,
            method_reason=r.method_reason,
            paused_ms=r.paused_ms or 0,
            hooks=HookOutcome.from_json(r.hooks) if r.hooks else None,
            checkpoint=r.checkpoint,
            disks=[PointDisk(**d) for d in r.disks],
            set_id=r.set_id,
            job_id=r.job_id,
            warnings=list(r.warnings),
            keep_until=utc(r.keep_until),
            protected=bool(r.protected),
            damaged=_damage(r.damaged),
            deleted=_deletion(r),
            retain_until=utc(r.retain_until),
        )

    def add(self, point: RecoveryPoint) -> None:
        self.add_many([point])

    def add_many(self, points: Sequence[RecoveryPoint]) -> None:
        if points:
            self.conn.execute(insert(t.recovery_points), [_values(p) for p in points])

    def add_if_new(self, point: RecoveryPoint) -> bool:
        # one statement (persistence/upsert.py): two attaches of vaults holding the same
        # point (one's copies of the other's) both found no row, and the second insert failed
        return insert_new(self.conn, t.recovery_points, "id", **_values(point)) is not None

    def get(self, point_id: str) -> RecoveryPoint | None:
        q = select(t.recovery_points).where(t.recovery_points.c.id == point_id)
        r = self.conn.execute(q).first()
        return self._row(r) if r else None

    def for_vm(
        self, vm_uuid: str, vault: str | None = None, *, deleted: bool | None = False
    ) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(
            t.recovery_points.c.vm_uuid == vm_uuid,
            _deleted(t.recovery_points.c.deleted_at, deleted),
        )
        if vault is not None:
            q = q.where(t.recovery_points.c.vault == vault)
        q = q.order_by(t.recovery_points.c.created_at.desc(), t.recovery_points.c.id.desc())
        return [self._row(r) for r in self.conn.execute(q)]

    def in_vault(self, vault: str, *, deleted: bool | None = False) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(
            t.recovery_points.c.vault == vault, _deleted(t.recovery_points.c.deleted_at, deleted)
        )
        return [self._row(r) for r in self.conn.execute(q.order_by(t.recovery_points.c.id))]

    def held(
        self, vault: str, vm_uuid: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[RecoveryPoint]:
        p = t.recovery_points.c
        q = select(t.recovery_points).where(held_by(vault))
        if vm_uuid is not None:
            q = q.where(p.vm_uuid == vm_uuid)
        q = q.order_by(p.created_at.desc(), p.id.desc())
        if limit is not None or offset:
            q = q.limit(limit).offset(offset)
        return [self._row(r) for r in self.conn.execute(q)]

    def count_held(self, vault: str, vm_uuid: str | None = None) -> int:
        q = select(func.count()).select_from(t.recovery_points).where(held_by(vault))
        if vm_uuid is not None:
            q = q.where(t.recovery_points.c.vm_uuid == vm_uuid)
        return int(self.conn.execute(q).scalar_one())

    def in_set(self, set_id: str) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(t.recovery_points.c.set_id == set_id)
        rows = self.conn.execute(q.order_by(t.recovery_points.c.vm_name, t.recovery_points.c.id))
        return [self._row(r) for r in rows]

    def delete(self, point_id: str) -> None:
        self.conn.execute(delete(t.recovery_points).where(t.recovery_points.c.id == point_id))

    def set_pinned(self, point_id: str, protected: bool, keep_until: datetime | None) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(protected=protected, keep_until=keep_until)
        )

    def set_retain_until(self, point_id: str, until: datetime | None) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(retain_until=until)
        )

    def record_restore_test(self, point_id: str, result: dict[str, Any]) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(restore_test=result)
        )

    def restore_test(self, point_id: str) -> dict[str, Any] | None:
        q = select(t.recovery_points.c.restore_test).where(t.recovery_points.c.id == point_id)
        value = self.conn.execute(q).scalar_one_or_none()
        return dict(value) if value else None

    def move(
        self,
        point_id: str,
        vault: str,
        damaged: Sequence[DamagedDisk] | None,
        deleted: Deletion | None = None,
    ) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(vault=vault, damaged=_damage_json(damaged), **_deletion_values(deleted))
        )

    def set_deleted(self, point_id: str, deleted: Deletion | None) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(**_deletion_values(deleted))
        )


def _values(point: RecoveryPoint) -> dict[str, Any]:
    """A point's row (the catalog columns it sets at its commit)."""
    return dict(
        id=point.id,
        vault=point.vault,
        vm_uuid=point.vm_uuid,
        vm_name=point.vm_name,
        created_at=point.created_at,
        consistency=point.consistency.value,
        method=point.method.value,
        frozen_ms=point.frozen_ms,
        method_reason=point.method_reason,
        paused_ms=point.paused_ms,
        hooks=point.hooks.to_json() if point.hooks is not None else None,
        checkpoint=point.checkpoint,
        set_id=point.set_id,
        job_id=point.job_id,
        disks=[asdict(d) for d in point.disks],
        bytes_logical=point.bytes_logical,  # the domain's sums, for held.py's aggregates
        bytes_new=point.bytes_new,
        warnings=list(point.warnings),
        keep_until=point.keep_until,
        protected=point.protected,
        retain_until=point.retain_until,
    )


def _deletion_values(deleted: Deletion | None) -> dict[str, datetime | None]:
    if deleted is None:
        return {"deleted_at": None, "purge_after": None}
    return {"deleted_at": deleted.deleted_at, "purge_after": deleted.purge_after}


class SqlCheckpoints:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, record: CheckpointRecord) -> None:
        self.conn.execute(insert(t.checkpoints).values(**asdict(record)))

    def for_vm(self, vm_uuid: str) -> list[CheckpointRecord]:
        q = select(t.checkpoints).where(t.checkpoints.c.vm_uuid == vm_uuid)
        rows = self.conn.execute(q.order_by(t.checkpoints.c.created_at, t.checkpoints.c.name))
        return [
            CheckpointRecord(r.name, r.vm_uuid, r.point_id, req(r.created_at), r.xml) for r in rows
        ]

    def delete(self, name: str) -> None:
        self.conn.execute(delete(t.checkpoints).where(t.checkpoints.c.name == name))


class SqlPointCopies:
    """Copies of points in vaults other than their own (``point_copies``), and the damage
    verify found in any vault's copy of a point (the point's own row for its own vault)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> PointCopy:
        return PointCopy(
            r.point_id, r.vault, req(r.created_at), r.job_id, _damage(r.damaged), _deletion(r)
        )

    def add(self, copy: PointCopy) -> None:
        self.conn.execute(
            insert(t.point_copies).values(
                point_id=copy.point_id,
                vault=copy.vault,
                created_at=copy.created_at,
                job_id=copy.job_id,
                damaged=_damage_json(copy.damaged),
                **_deletion_values(copy.deleted),
            )
        )

    def get(self, point_id: str, vault: str) -> PointCopy | None:
        c = t.point_copies.c
        r = self.conn.execute(
            select(t.point_copies).where(c.point_id == point_id, c.vault == vault)
        ).first()
        return self._row(r) if r else None

    def of_point(self, point_id: str, *, deleted: bool | None = False) -> list[PointCopy]:
        """The point's copies (not its own vault), by vault name."""
        c = t.point_copies.c
        where = (c.point_id == point_id, _deleted(c.deleted_at, deleted))
        q = select(t.point_copies).where(*where).order_by(c.vault)
        return [self._row(r) for r in self.conn.execute(q)]

    def of_points(self, point_ids: Sequence[str]) -> list[PointCopy]:
        c = t.point_copies.c
        q = select(t.point_copies).where(c.point_id.in_(list(point_ids)))
        return [self._row(r) for r in self.conn.execute(q.order_by(c.point_id, c.vault))]

    def in_vault(self, vault: str, *, deleted: bool | None = False) -> list[PointCopy]:
        c = t.point_copies.c
        where = (c.vault == vault, _deleted(c.deleted_at, deleted))
        q = select(t.point_copies).where(*where).order_by(c.point_id)
        return [self._row(r) for r in self.conn.execute(q)]

    def remove(self, point_id: str, vault: str) -> None:
        c = t.point_copies.c
        self.conn.execute(delete(t.point_copies).where(c.point_id == point_id, c.vault == vault))

    def set_deleted(self, point_id: str, vault: str, deleted: Deletion | None) -> None:
        c = t.point_copies.c
        self.conn.execute(
            update(t.point_copies)
            .where(c.point_id == point_id, c.vault == vault)
            .values(**_deletion_values(deleted))
        )

    def set_damaged(self, point_id: str, vault: str, damage: Sequence[DamagedDisk] | None) -> None:
        """Record (or, None, clear) the damage of the point's copy in ``vault``; for the
        point's own vault it is written on the point's row."""
        value = _damage_json(damage)
        p = t.recovery_points.c
        c = t.point_copies.c
        self.conn.execute(
            update(t.recovery_points)
            .where(p.id == point_id, p.vault == vault)
            .values(damaged=value)
        )
        self.conn.execute(
            update(t.point_copies)
            .where(c.point_id == point_id, c.vault == vault)
            .values(damaged=value)
        )
