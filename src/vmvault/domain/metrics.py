"""What ``/metrics`` reports, as plain data (docs/metrics.md); the API writes it out in the
Prometheus text format."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

#: Upper bounds (seconds) of the frozen / paused window histogram's buckets: a freeze is
#: expected to take well under a second, a pause (saved-state point) a few seconds.
WINDOW_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The same bounds in milliseconds, the unit points record their windows in: a window of
#: ``ms`` milliseconds is at most bound ``b`` seconds exactly when ``ms`` is at most
#: ``round(b * 1000)`` (every bound is a whole number of milliseconds).
WINDOW_BUCKETS_MS = tuple(round(b * 1000) for b in WINDOW_BUCKETS)


@dataclass(frozen=True)
class LastBackup:
    """A VM's newest ended backup job, and when its newest good one ended."""

    vm_uuid: str
    vm_name: str
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    bytes_done: int
    last_success_at: datetime | None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass
class Histogram:
    """Cumulative bucket counts (``le`` → count, ``+Inf`` last), count and sum, in seconds."""

    buckets: list[tuple[float, int]]
    count: int
    total: float


def histogram(values: Iterable[float], bounds: tuple[float, ...] = WINDOW_BUCKETS) -> Histogram:
    """The cumulative histogram of ``values`` (seconds) over ``bounds``, then ``+Inf``: the
    definition :func:`histogram_of` (what ``/metrics`` uses, from the database's counts) is
    tested against."""
    seen = sorted(values)
    buckets, i = [], 0
    for bound in (*bounds, math.inf):
        while i < len(seen) and seen[i] <= bound:
            i += 1
        buckets.append((bound, i))
    return Histogram(buckets, len(seen), float(sum(seen)))


@dataclass(frozen=True)
class WindowTally:
    """Windows in milliseconds, tallied by the database for a histogram: per bound of
    :data:`WINDOW_BUCKETS_MS`, how many are at most that long; how many in all; their sum."""

    at_most: tuple[int, ...]
    count: int
    total_ms: int


def histogram_of(tally: WindowTally) -> Histogram:
    """The cumulative histogram (seconds) of the windows ``tally`` counted: what
    :func:`histogram` gives for the same windows in seconds."""
    buckets = [*zip(WINDOW_BUCKETS, tally.at_most, strict=True), (math.inf, tally.count)]
    return Histogram(buckets, tally.count, tally.total_ms / 1000)


@dataclass
class VaultFigures:
    vault: str
    stored_bytes: int | None
    logical_bytes: int
    points: int
    #: protected VMs by health: ``ok`` or the dashboard's attention reason
    health: dict[str, int] = field(default_factory=dict)


@dataclass
class MetricsSnapshot:
    at: datetime
    #: ``(type, state)`` → jobs in the catalog
    jobs: dict[tuple[str, str], int]
    last_backups: list[LastBackup]
    vaults: list[VaultFigures]
    frozen: Histogram
    paused: Histogram
