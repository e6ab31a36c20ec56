"""What a vault holds, read in aggregate: counts, byte sums, each VM's newest point and the
points' frozen and paused windows, computed by the database, so that the dashboard, the
protection list and ``/metrics`` never load a fleet's points.

A vault *holds* a point (services/holdings.py) when it is the point's own vault and the point
is not soft-deleted there, or when it has a copy of it (``point_copies``) not soft-deleted
there: :func:`held_by`, one ``WHERE`` on ``recovery_points`` (a point is never both, so no
point counts twice).  A point's logical bytes and new bytes are columns of its row
(``bytes_logical``, ``bytes_new``, migration 0018), written with the point from the domain's
values (``RecoveryPoint.bytes_logical``: its disks' sizes, excluded disks left out;
``RecoveryPoint.bytes_new``): the sums here add columns, with no second copy of that rule,
and what comes back is a few rows whatever the number of points.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
)

from vmvault.domain.metrics import WINDOW_BUCKETS_MS, WindowTally
from vmvault.domain.recovery_point import BinnedTotals, HeldTotals
from vmvault.persistence import tables as t
from vmvault.persistence.times import day_edges, per_day, req, utc


def held_by(vault: str | Sequence[str], *, deleted: bool = False) -> ColumnElement[bool]:
    """The ``WHERE`` of the points ``vault`` holds (``deleted``: those soft-deleted in it);
    of several vaults, the points any of them holds (each once)."""
    p, c = t.recovery_points.c, t.point_copies.c
    names = [vault] if isinstance(vault, str) else list(vault)
    own = p.deleted_at.is_not(None) if deleted else p.deleted_at.is_(None)
    copy = c.deleted_at.is_not(None) if deleted else c.deleted_at.is_(None)
    copied = exists().where(c.point_id == p.id, c.vault.in_(names), copy)
    return or_(and_(p.vault.in_(names), own), copied)


class SqlHeld:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

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
        q = select(p.consistency, func.count(), func.sum(p.bytes_logical)).where(held_by(vault))
        totals = HeldTotals()
        for level, n, size in self.conn.execute(q.group_by(p.consistency)):
            totals.points += int(n)
            totals.logical_bytes += int(size or 0)
            totals.by_consistency[level] = int(n)
        return totals

    def new_bytes_by_day(self, vault: str, start: datetime, days: int) -> list[int]:
        """The bytes that ``vault``'s own points (held there) added on each of ``days`` days
        from ``start`` (a UTC midnight): one row of ``days`` sums."""
        row = self.conn.execute(_new_bytes_by_day(days), {"vault": vault} | day_edges(start, days))
        return [int(v) for v in row.one()]

    def binned(self, vault: str) -> BinnedTotals:
        """The points soft-deleted in ``vault`` (own and copies): how many, their logical
        bytes, the earliest purge due."""
        p, c = t.recovery_points.c, t.point_copies.c
        logical = p.bytes_logical
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

    def windows(self, vaults: Sequence[str]) -> tuple[WindowTally, WindowTally]:
        """The frozen and the paused windows of the points any of ``vaults`` holds (a point
        held in two vaults counts once; points with no such window not at all), tallied
        for the histogram of ``/metrics``: one row, whatever the number of points."""
        p = t.recovery_points.c
        columns: list[ColumnElement[int]] = []
        for ms in (p.frozen_ms, p.paused_ms):
            some = ms > 0
            columns += [_count(and_(some, ms <= bound)) for bound in WINDOW_BUCKETS_MS]
            columns += [_count(some), func.coalesce(func.sum(case((some, ms), else_=0)), 0)]
        row = [int(v) for v in self.conn.execute(select(*columns).where(held_by(vaults))).one()]
        n = len(WINDOW_BUCKETS_MS)
        frozen, paused = row[: n + 2], row[n + 2 :]
        return (
            WindowTally(tuple(frozen[:n]), frozen[n], frozen[n + 1]),
            WindowTally(tuple(paused[:n]), paused[n], paused[n + 1]),
        )


def _count(where: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows match ``where`` (0 when none does), as one column of an aggregate."""
    return func.coalesce(func.sum(case((where, 1), else_=0)), 0)


@cache
def _new_bytes_by_day(days: int) -> Select[Any]:
    """:meth:`SqlHeld.new_bytes_by_day`'s statement (parameters ``vault`` and
    :func:`~vmvault.persistence.times.day_edges`), built once per number of days."""
    p = t.recovery_points.c
    own = (
        p.vault == bindparam("vault"),
        p.deleted_at.is_(None),
        p.created_at >= bindparam("day_0"),
    )
    return select(*per_day(p.created_at, days, p.bytes_new)).where(*own)
