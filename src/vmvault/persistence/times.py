"""Times in the catalog are UTC; SQLite drops the zone, so every read re-attaches it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, case, func


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def req(value: datetime | None) -> datetime:
    out = utc(value)
    assert out is not None
    return out


def per_day(column: Any, start: datetime, days: int, value: Any) -> list[Any]:
    """``days`` sums of ``value`` over the rows whose ``column`` falls on each day from
    ``start`` (a UTC midnight): a chart's columns in one row, whatever the number of rows."""
    edges = [start + timedelta(days=i) for i in range(days + 1)]
    return [
        func.coalesce(func.sum(case((and_(column >= lo, column < hi), value), else_=0)), 0)
        for lo, hi in pairwise(edges)
    ]
