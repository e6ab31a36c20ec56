"""Times in the catalog are UTC; SQLite drops the zone, so every read re-attaches it."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def req(value: datetime | None) -> datetime:
    out = utc(value)
    assert out is not None
    return out
