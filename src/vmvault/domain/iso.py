"""How a time is written wherever vmvault writes one as text: documents (JSON, the API),
notification messages and their keys — ISO 8601 to the second, with its UTC offset."""

from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """``2026-12-02T02:00:01+00:00``; None for None."""
    return value.isoformat(timespec="seconds") if value else None
