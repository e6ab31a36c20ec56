"""Retention: which recovery points of a VM to keep (GFS), as a pure function.

:func:`apply_retention` takes the VM's points, a :class:`Retention`, ``now`` and the policy's
time zone, and returns one :class:`Decision` per point (keep or remove, with every reason).
Nothing is deleted here; the prune job acts on the decisions.  The rules:

1. **Pinned points are always kept and set aside.**  A point that is ``protected``
   (reason ``protected``) or whose ``keep_until`` is later than ``now`` (``kept until
   2026-12-01``) is kept, and takes no part in the rules below: it neither represents a bucket
   nor uses up one of the N slots.  The GFS series is computed over the other points exactly as
   if the pinned ones did not exist, so pinning a point never costs another point its place.
2. **Buckets** are calendar days (``daily 2026-11-20``), ISO weeks (``weekly 2026-W47``),
   months (``monthly 2026-11``) and years (``yearly 2026``) of ``created_at`` in the policy's
   time zone.  ISO weeks run Monday–Sunday and belong to the ISO year (2027-01-01 is in
   2026-W53).
3. **Within a bucket the newest point represents it; the N most recent buckets that have
   points count** (restic's ``--keep-daily N``): ``daily=7`` keeps the newest point of each of
   the last 7 days that have a point, however far back they are — a VM that was off for a
   month still keeps 7 daily points.  Levels are independent: one point may be kept for
   several reasons.
4. **The newest point is always kept** (``newest point``), so a prune never empties a VM.
5. Everything else is removed: ``not selected by any rule``.

"Newest" orders by ``created_at``, then by ``id`` (point ids sort by time), so the result
never depends on the order of the input.  Consequences, checked by property tests: pinned
points survive; the newest point survives; at most ``daily + weekly + monthly + yearly``
unpinned points are kept; applying the decisions and then retention again removes nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from vmvault.domain.errors import InvalidRetention

#: Upper bound of each count (27 years of daily points); larger values are typos.
MAX_COUNT = 9999
LEVELS = ("daily", "weekly", "monthly", "yearly")
NOT_SELECTED = "not selected by any rule"


@dataclass(frozen=True)
class Retention:
    """How many daily, weekly, monthly and yearly points to keep (GFS)."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse counts that are not whole numbers in 0..9999, and all-zero retention."""
        for level, count in self.counts.items():
            if not isinstance(count, int) or isinstance(count, bool):
                raise InvalidRetention(f"{level} must be a whole number", retention=self)
            if count < 0:
                raise InvalidRetention(f"{level} cannot be negative", retention=self)
            if count > MAX_COUNT:
                raise InvalidRetention(f"{level} is above {MAX_COUNT}", retention=self)
        if not any(self.counts.values()):
            raise InvalidRetention("it would keep no point at all", retention=self)

    @property
    def counts(self) -> dict[str, int]:
        return {level: getattr(self, level) for level in LEVELS}

    @property
    def total(self) -> int:
        """The most unpinned points this retention keeps."""
        return sum(self.counts.values())

    def __str__(self) -> str:
        shown = [f"{lv}={n}" for lv, n in self.counts.items() if n] or [
            f"{lv}={n}" for lv, n in self.counts.items()
        ]
        return " ".join(shown)

    def describe(self) -> str:
        """``7 daily, 4 weekly and 12 monthly points``."""
        parts = [f"{n} {lv}" for lv, n in self.counts.items() if n]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{listed} point{'s' if self.total > 1 else ''}"


@dataclass(frozen=True)
class PointRef:
    """What retention needs to know of a recovery point."""

    id: str
    created_at: datetime
    protected: bool = False
    keep_until: datetime | None = None


class Retainable(Protocol):
    """What retention reads of a recovery point (a catalog's point has all of it)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def protected(self) -> bool: ...
    @property
    def keep_until(self) -> datetime | None: ...


def point_refs(points: Iterable[Retainable]) -> list[PointRef]:
    """The :class:`PointRef` of each point, in order."""
    return [PointRef(p.id, p.created_at, p.protected, p.keep_until) for p in points]


@dataclass(frozen=True)
class Decision:
    point_id: str
    keep: bool
    reasons: tuple[str, ...]


def _day(d: datetime) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _week(d: datetime) -> str:
    year, week, _ = d.isocalendar()
    return f"{year:04d}-W{week:02d}"


_BUCKET: dict[str, Callable[[datetime], str]] = {
    "daily": _day,
    "weekly": _week,
    "monthly": lambda d: f"{d.year:04d}-{d.month:02d}",
    "yearly": lambda d: f"{d.year:04d}",
}


def bucket(level: str, created_at: datetime, tz: ZoneInfo) -> str:
    """The bucket of a point at one level: ``2026-11-20``, ``2026-W47``, ``2026-11``, ``2026``."""
    return _BUCKET[level](created_at.astimezone(tz))


def _until(keep_until: datetime, tz: ZoneInfo) -> str:
    local = keep_until.astimezone(tz)
    return _day(local) if local.time() == datetime.min.time() else f"{local:%Y-%m-%d %H:%M}"


def _check(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {value!r}")


def apply_retention(
    points: Sequence[PointRef], policy: Retention, now: datetime, tz: ZoneInfo
) -> list[Decision]:
    """One decision per point, in the order of ``points`` (rules in the module doc)."""
    _check(now, "now")
    for p in points:
        _check(p.created_at, f"created_at of {p.id}")
        if p.keep_until is not None:
            _check(p.keep_until, f"keep_until of {p.id}")
    if len({p.id for p in points}) != len(points):
        raise ValueError("point ids must be unique")

    newest_first = sorted(points, key=lambda p: (p.created_at, p.id), reverse=True)
    reasons: dict[str, list[str]] = {p.id: [] for p in points}
    pool: list[PointRef] = []
    for p in newest_first:
        if p.protected:
            reasons[p.id].append("protected")
        if p.keep_until is not None and p.keep_until > now:
            reasons[p.id].append(f"kept until {_until(p.keep_until, tz)}")
        if not reasons[p.id]:
            pool.append(p)
    if newest_first:
        reasons[newest_first[0].id].append("newest point")

    for level, count in policy.counts.items():
        seen: set[str] = set()
        for p in pool:
            if len(seen) == count:
                break
            key = bucket(level, p.created_at, tz)
            if key not in seen:  # the first point met in a bucket is its newest
                seen.add(key)
                reasons[p.id].append(f"{level} {key}")

    return [
        Decision(p.id, bool(reasons[p.id]), tuple(reasons[p.id]) or (NOT_SELECTED,)) for p in points
    ]
