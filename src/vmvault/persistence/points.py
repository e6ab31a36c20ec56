"""Recovery points and the checkpoint records that keep incremental chains repairable."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from vmvault.domain.recovery_point import (
    CheckpointRecord,
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
)
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc


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
            checkpoint=r.checkpoint,
            disks=[PointDisk(**d) for d in r.disks],
            set_id=r.set_id,
            job_id=r.job_id,
            warnings=list(r.warnings),
            keep_until=utc(r.keep_until),
            protected=bool(r.protected),
        )

    def add(self, point: RecoveryPoint) -> None:
        self.conn.execute(
            insert(t.recovery_points).values(
                id=point.id,
                vault=point.vault,
                vm_uuid=point.vm_uuid,
                vm_name=point.vm_name,
                created_at=point.created_at,
                consistency=point.consistency.value,
                method=point.method.value,
                frozen_ms=point.frozen_ms,
                checkpoint=point.checkpoint,
                set_id=point.set_id,
                job_id=point.job_id,
                disks=[asdict(d) for d in point.disks],
                warnings=list(point.warnings),
                keep_until=point.keep_until,
                protected=point.protected,
            )
        )

    def get(self, point_id: str) -> RecoveryPoint | None:
        q = select(t.recovery_points).where(t.recovery_points.c.id == point_id)
        r = self.conn.execute(q).first()
        return self._row(r) if r else None

    def for_vm(self, vm_uuid: str, vault: str | None = None) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(t.recovery_points.c.vm_uuid == vm_uuid)
        if vault is not None:
            q = q.where(t.recovery_points.c.vault == vault)
        q = q.order_by(t.recovery_points.c.created_at.desc(), t.recovery_points.c.id.desc())
        return [self._row(r) for r in self.conn.execute(q)]

    def in_vault(self, vault: str) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(t.recovery_points.c.vault == vault)
        return [self._row(r) for r in self.conn.execute(q.order_by(t.recovery_points.c.id))]

    def delete(self, point_id: str) -> None:
        self.conn.execute(delete(t.recovery_points).where(t.recovery_points.c.id == point_id))

    def set_pinned(self, point_id: str, protected: bool, keep_until: datetime | None) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(protected=protected, keep_until=keep_until)
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
