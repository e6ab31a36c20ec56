"""The catalog's copies of points in other vaults, and damage recorded by verify."""

from __future__ import annotations

from datetime import UTC, datetime

from vmvault.domain.recovery_point import (
    Consistency,
    DamagedDisk,
    Method,
    PointCopy,
    PointDisk,
    RecoveryPoint,
)
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def _point(point_id: str) -> RecoveryPoint:
    return RecoveryPoint(
        point_id, "a", "u-1", "vm", T0, Consistency.CRASH, Method.OFFLINE, 0, None,
        [PointDisk("vda", 1 << 20)],
    )  # fmt: skip


def test_copies_are_listed_per_point_and_per_vault_and_damage_is_kept_per_vault(
    catalog_url: str,
) -> None:
    engine = open_catalog(catalog_url)
    damage = (DamagedDisk("vda", ((0, 4096), (8192, 12288))),)
    with SqlUnitOfWork(engine) as uow:
        uow.points.add(_point("p1"))
        uow.copies.add(PointCopy("p1", "b", T0, 7))
        uow.copies.add(PointCopy("p1", "c", T0))
        uow.copies.set_damaged("p1", "b", damage)
        uow.copies.set_damaged("p1", "a", damage)
        uow.commit()
    with SqlUnitOfWork(engine) as uow:
        assert [c.vault for c in uow.copies.of_point("p1")] == ["b", "c"]
        assert uow.copies.get("p1", "b") == PointCopy("p1", "b", T0, 7, damage)
        assert uow.copies.get("p1", "c") == PointCopy("p1", "c", T0)
        assert [c.point_id for c in uow.copies.in_vault("c")] == ["p1"]
        point = uow.points.get("p1")
        assert point is not None and point.damaged == damage
        uow.copies.set_damaged("p1", "a", None)
        uow.copies.remove("p1", "c")
        uow.commit()
    with SqlUnitOfWork(engine) as uow:
        point = uow.points.get("p1")
        assert point is not None and point.damaged is None
        assert [c.vault for c in uow.copies.of_point("p1")] == ["b"]
        uow.copies.remove("p1", "b")
        assert uow.copies.of_point("p1") == []
