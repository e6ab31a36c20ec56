"""What a vault holds, read in aggregate: counts, byte sums and each VM's newest point, computed
by the database, so that the dashboard and the protection list never load a fleet's points.

A vault *holds* a point (services/holdings.py) when it is the point's own vault and the point
is not soft-deleted there, or when it has a copy of it (``point_copies``) not soft-deleted
there: :func:`held_by`, one ``WHERE`` on ``recovery_points`` (a point is never both, so no
point counts twice).  A point's logical bytes (its disks' sizes, excluded disks left out) and
new bytes live in its ``disks`` JSON: they are summed by the engine's JSON table function
(SQLite's ``json_each``, PostgreSQL's ``json_array_elements``) in a subquery per point, so
what comes back is a few rows whatever the number of points.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    func,
    literal_column,
    or_,
    select,
)

from vmvault.domain.recovery_point import BinnedTotals, HeldTotals
from vmvault.persistence import tables as t
from vmvault.persistence.times import per_day, req, utc

#: Per dialect: a point's logical bytes and new bytes, from its ``disks`` JSON (a correlated
#: subquery over the row of ``recovery_points`` being read).
_DISK_SUMS = {
    "sqlite": (
        "(SELECT coalesce(sum(CASE WHEN json_extract(d.value, '$.excluded') THEN 0"
        " ELSE json_extract(d.value, '$.size') END), 0)"
        " FROM json_each(recovery_points.disks) AS d)",
        "(SELECT coalesce(sum(coalesce(json_extract(d.value, '$.bytes_new'), 0)), 0)"
        " FROM json_each(recovery_points.disks) AS d)",
    ),
    "postgresql": (
        "(SELECT coalesce(sum(CASE WHEN coalesce((d.value->>'excluded')::boolean, false)"
        " THEN 0 ELSE (d.value->>'size')::bigint END), 0)"
        " FROM json_array_elements(recovery_points.disks) AS d(value))",
        "(SELECT coalesce(sum(coalesce((d.value->>'bytes_new')::bigint, 0)), 0)"
        " FROM json_array_elements(recovery_points.disks) AS d(value))",
    ),
}


def held_by(vault: str, *, deleted: bool = False) -> ColumnElement[bool]:
    """The ``WHERE`` of the points ``vault`` holds (``deleted``: those soft-deleted in it)."""
    p, c = t.recovery_points.c, t.point_copies.c
    own = p.deleted_at.is_not(None) if deleted else p.deleted_at.is_(None)
    copy = c.deleted_at.is_not(None) if deleted else c.deleted_at.is_(None)
    copied = exists().where(c.point_id == p.id, c.vault == vault, copy)
    return or_(and_(p.vault == vault, own), copied)


class SqlHeld:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _bytes(self) -> tuple[ColumnElement[int], ColumnElement[int]]:
        logical, new = _DISK_SUMS[self.conn.dialect.name]
        return literal_column(logical), literal_column(new)

    def by_vm(
        self, vault: str, vm_uuids: Sequence[str] | None = None
    ) -> dict[str, tuple[int, datetime]]:
        """Per VM with points held in ``vault`` (of ``vm_uuids`` only, when given): how many
        and the newest one's time."""
        p = t.recovery_points.c
        q = select(p.vm_uuid, func.count(), func.max(p.created_at)).where(held_by(vault))
        if vm_uuids is not None:
            q = q.where(p.vm_uuid.in_(list(vm_uuids)))
        rows = self.conn.execute(q.group_by(p.vm_uuid))
        return {uuid: (int(n), req(newest)) for uuid, n, newest in rows}

    def totals(self, vault: str) -> HeldTotals:
        """The points ``vault`` holds: how many, their logical bytes, how many per level."""
        p = t.recovery_points.c
        logical, _ = self._bytes()
        q = select(p.consistency, func.count(), func.sum(logical)).where(held_by(vault))
        totals = HeldTotals()
        for level, n, size in self.conn.execute(q.group_by(p.consistency)):
            totals.points += int(n)
            totals.logical_bytes += int(size or 0)
            totals.by_consistency[level] = int(n)
        return totals

    def new_bytes_by_day(self, vault: str, start: datetime, days: int) -> list[int]:
        """The bytes that ``vault``'s own points (held there) added on each of ``days`` days
        from ``start`` (a UTC midnight): one row of ``days`` sums."""
        p = t.recovery_points.c
        _, new = self._bytes()
        rows = (
            select(p.created_at, new.label("new"))
            .where(p.vault == vault, p.deleted_at.is_(None), p.created_at >= start)
            .subquery()
        )
        q = select(*per_day(rows.c.created_at, start, days, rows.c.new))  # each JSON read once
        row = self.conn.execute(q).one()
        return [int(v) for v in row]

    def binned(self, vault: str) -> BinnedTotals:
        """The points soft-deleted in ``vault`` (own and copies): how many, their logical
        bytes, the earliest purge due."""
        p, c = t.recovery_points.c, t.point_copies.c
        logical, _ = self._bytes()
        own = select(func.count(), func.sum(logical), func.min(p.purge_after)).where(
            p.vault == vault, p.deleted_at.is_not(None)
        )
        copies = (
            select(func.count(), func.sum(logical), func.min(c.purge_after))
            .select_from(t.point_copies.join(t.recovery_points, p.id == c.point_id))
            .where(c.vault == vault, c.deleted_at.is_not(None))
        )
        totals = BinnedTotals()
        for q in (own, copies):
            n, size, first = self.conn.execute(q).one()
            totals.points += int(n)
            totals.logical_bytes += int(size or 0)
            due = utc(first)
            if due is not None and (totals.next_purge_at is None or due < totals.next_purge_at):
                totals.next_purge_at = due
        return totals
