"""Times in the catalog are UTC; SQLite drops the zone, so every read re-attaches it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, bindparam, case, func


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def req(value: datetime | None) -> datetime:
    out = utc(value)
    assert out is not None
    return out


def per_day(column: Any, days: int, value: Any) -> list[Any]:
    """``days`` sums of ``value`` over the rows whose ``column`` falls on each day from the
    parameter ``day_0`` (a UTC midnight; :func:`day_edges` gives the parameters): a chart's
    columns in one row, whatever the number of rows.  The days are bound parameters, so a
    statement built of these is built once (their callers cache it: building 28 ``CASE``
    expressions took longer than the query) and compiled once."""
    edges = [bindparam(f"day_{i}", type_=column.type) for i in range(days + 1)]
    return [
        func.coalesce(func.sum(case((and_(column >= lo, column < hi), value), else_=0)), 0)
        for lo, hi in pairwise(edges)
    ]


def day_edges(start: datetime, days: int) -> dict[str, datetime]:
    """The parameters of :func:`per_day`'s columns: the ``days + 1`` midnights from
    ``start``."""
    return {f"day_{i}": start + timedelta(days=i) for i in range(days + 1)}
