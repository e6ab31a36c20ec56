"""Migration 0018 (a point's bytes as columns) on a catalog of points taken before it, on
SQLite and on PostgreSQL: the backfill from each point's ``disks`` JSON gives the domain's
``RecoveryPoint.bytes_logical`` and ``bytes_new`` (the sums the dashboard's JSON
expressions gave before 0018), for points with excluded disks, disks written before
``excluded`` or ``bytes_new`` existed, sizes past 2**31 and no disks at all; points written
after it carry the domain's values; and the migration goes down again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, insert, inspect, select

from tests.pglab import empty_database
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.persistence import tables as t
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import alembic_config, open_catalog

GiB = 1 << 30
#: Points as catalogs before 0018 hold them: id → their ``disks`` JSON, and the sums the
#: dashboard's JSON expressions gave (logical: sizes of the disks not excluded; new).
OLD_POINTS: dict[str, tuple[list[dict[str, Any]], int, int]] = {
    "two-disks": (
        [
            {"target": "vda", "size": 40 * GiB, "format": "qcow2", "excluded": False,
             "bytes_read": GiB, "bytes_new": 3 * GiB},
            {"target": "vdb", "size": 8 * GiB, "format": "qcow2", "excluded": False,
             "bytes_read": 0, "bytes_new": 5},
        ],
        48 * GiB, 3 * GiB + 5,
    ),
    "one-excluded": (
        [
            {"target": "vda", "size": 10 * GiB, "format": "raw", "excluded": False,
             "bytes_new": 7},
            {"target": "vdb", "size": 500 * GiB, "format": "qcow2", "excluded": True,
             "reason": "excluded by the operator", "bytes_new": 0},
        ],
        10 * GiB, 7,
    ),
    "before-0010": (  # no ``excluded``, no ``bytes_new``: every disk counts, nothing new
        [{"target": "vda", "size": 3 * GiB, "format": "qcow2"},
         {"target": "vdb", "size": 5 * GiB, "format": "qcow2", "bytes_new": 11}],
        8 * GiB, 11,
    ),
    "no-disks": ([], 0, 0),
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A catalog with no schema yet, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with empty_database(request.getfixturevalue("postgres")) as url:
        yield url


def test_the_backfill_gives_the_domains_sums(empty_url: str) -> None:
    command.upgrade(alembic_config(empty_url), "0017")
    before = create_engine(empty_url)
    try:
        with before.begin() as conn:
            for n, (point_id, (disks, _, _)) in enumerate(OLD_POINTS.items()):
                conn.execute(
                    insert(t.recovery_points).values(
                        id=point_id, vault="main", vm_uuid=f"uuid-{n}", vm_name=f"vm{n}",
                        created_at=datetime(2026, 1, 1 + n, tzinfo=UTC),
                        consistency="crash-consistent", method="offline", frozen_ms=0,
                        disks=disks, warnings=[],
                    )
                )  # fmt: skip
    finally:
        before.dispose()
    engine = open_catalog(empty_url)  # 0018 runs here
    try:
        p = t.recovery_points.c
        with SqlUnitOfWork(engine) as uow:
            rows = uow.conn.execute(select(p.id, p.bytes_logical, p.bytes_new)).all()
            columns = {r.id: (r.bytes_logical, r.bytes_new) for r in rows}
            domain = {}
            for point_id in OLD_POINTS:
                point = uow.points.get(point_id)
                assert point is not None
                domain[point_id] = (point.bytes_logical, point.bytes_new)
        assert columns == {k: (logical, new) for k, (_, logical, new) in OLD_POINTS.items()}
        assert columns == domain

        # a point written now: its columns are the domain's values
        disks = [PointDisk("vda", 9 * GiB, "qcow2", bytes_new=13),
                 PointDisk("vdb", 2 * GiB, "qcow2", excluded=True, bytes_new=0)]  # fmt: skip
        new = RecoveryPoint(
            id="taken-now", vault="main", vm_uuid="uuid-9", vm_name="vm9",
            created_at=datetime(2026, 2, 1, tzinfo=UTC), consistency=Consistency.CRASH,
            method=Method.OFFLINE, frozen_ms=0, checkpoint=None, disks=disks,
        )  # fmt: skip
        with SqlUnitOfWork(engine) as uow:
            uow.points.add(new)
            uow.commit()
        with SqlUnitOfWork(engine) as uow:
            q = select(p.bytes_logical, p.bytes_new).where(p.id == "taken-now")
            assert tuple(uow.conn.execute(q).one()) == (9 * GiB, 13)
            assert (new.bytes_logical, new.bytes_new) == (9 * GiB, 13)
    finally:
        engine.dispose()
    command.downgrade(alembic_config(empty_url), "0017")
    after = create_engine(empty_url)
    try:
        names = {c["name"] for c in inspect(after).get_columns("recovery_points")}
        assert not names & {"bytes_logical", "bytes_new"} and "disks" in names
    finally:
        after.dispose()
