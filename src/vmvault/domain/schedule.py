"""Schedules: when a policy's backups are due.

A schedule names *wall-clock* times in one IANA time zone:

* :class:`DailySchedule` – every day at ``at``;
* :class:`WeeklySchedule` – on the chosen weekdays at ``at``;
* :class:`EveryNHours` – every 4, 6, 8 or 12 hours inside a daily *window*: slots at
  ``window_start``, ``window_start + N h``, … as long as they are not past ``window_end``
  (both ends included).  When ``window_end`` is earlier than ``window_start`` the window
  crosses midnight and ends on the next day (``every:6h@22:00-06:00`` runs 22:00 and 04:00);
  a window belongs to the day it starts on.  ``00:00-23:59`` is the whole day.

Each wall-clock slot becomes one instant (a *slot*, an aware UTC datetime):

* a wall time that does not exist (spring forward; 02:30 in Europe/Berlin on the last Sunday
  of March) runs once, at the first instant after the gap (03:00 local, the transition);
* a wall time that occurs twice (fall back) runs once, at its first occurrence (``fold=0``);
* should two wall times fall on the same instant (only when a zone skips a whole day), that
  instant is one slot, identified by the earlier wall time.

A slot's identity (:func:`slot_key`) is its *nominal* wall time and zone,
``2026-03-29T02:30 Europe/Berlin``: it names the same slot before and after a restart and
even after a tzdata update moves the instant.

Slots are walked in the schedule's zone; nothing here reads a clock.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vmvault.domain.errors import InvalidSchedule, UnknownTimeZone

#: The N of "every N hours": divisors of 24, so the slots repeat every day.
ALLOWED_HOURS = (4, 6, 8, 12)
UTC_ZONE = ZoneInfo("UTC")
_DAY = timedelta(days=1)
#: Every schedule has a slot within this span of any instant (a week plus DST slack).
_HORIZON = timedelta(days=15)


class Weekday(IntEnum):
    """Days as ``date.weekday()`` numbers them; written ``mon`` … ``sun``."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @property
    def short(self) -> str:
        return self.name.lower()

    @property
    def long(self) -> str:
        return ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[
            self.value
        ]


def parse_timezone(name: str | ZoneInfo) -> ZoneInfo:
    """An IANA zone (``Europe/Berlin``, ``UTC``); host-relative pseudo-zones are refused."""
    key = name.key if isinstance(name, ZoneInfo) else name
    if (
        not key
        or key in ("localtime", "posixrules", "Factory")
        or key.startswith(("posix/", "right/"))
    ):
        raise UnknownTimeZone(tz=key)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(tz=key) from None


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}" + (f":{t.second:02d}" if t.second else "")


def _check_time(t: time, text: str, what: str) -> None:
    if t.tzinfo is not None or t.second or t.microsecond:
        raise InvalidSchedule(f"{what} must be a whole minute without a zone", text=text)


@dataclass(frozen=True)
class DailySchedule:
    at: time
    tz: ZoneInfo = UTC_ZONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", parse_timezone(self.tz))
        _check_time(self.at, f"daily@{_hhmm(self.at)}", "the time")


@dataclass(frozen=True)
class WeeklySchedule:
    days: frozenset[Weekday]
    at: time
    tz: ZoneInfo = UTC_ZONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", parse_timezone(self.tz))
        object.__setattr__(self, "days", frozenset(Weekday(d) for d in self.days))
        text = "weekly:" + ",".join(d.short for d in sorted(self.days)) + f"@{_hhmm(self.at)}"
        if not self.days:
            raise InvalidSchedule("no days given", text=text)
        _check_time(self.at, text, "the time")


@dataclass(frozen=True)
class EveryNHours:
    hours: int
    window_start: time = time(0, 0)
    window_end: time = time(23, 59)
    tz: ZoneInfo = UTC_ZONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", parse_timezone(self.tz))
        text = f"every:{self.hours}h@{_hhmm(self.window_start)}-{_hhmm(self.window_end)}"
        if self.hours not in ALLOWED_HOURS or isinstance(self.hours, bool):
            raise InvalidSchedule("N must be 4, 6, 8 or 12 hours", text=text)
        _check_time(self.window_start, text, "the window start")
        _check_time(self.window_end, text, "the window end")
        if self.window_start == self.window_end:
            raise InvalidSchedule(
                "the window is empty (write every:Nh or every:Nh@00:00-23:59 for the whole day)",
                text=text,
            )
        if len(self.offsets) < 2:
            raise InvalidSchedule(
                f"the window holds a single run ({_hhmm(self.window_start)}): widen it "
                f"or use daily@{_hhmm(self.window_start)}",
                text=text,
            )

    @property
    def window(self) -> timedelta:
        """Length of the window; it ends on the next day when ``window_end < window_start``."""
        start = timedelta(hours=self.window_start.hour, minutes=self.window_start.minute)
        end = timedelta(hours=self.window_end.hour, minutes=self.window_end.minute)
        return (end - start) % _DAY

    @property
    def offsets(self) -> list[timedelta]:
        """Wall-clock offsets of the day's slots from ``window_start``."""
        step = timedelta(hours=self.hours)
        return [step * k for k in range(self.window // step + 1)]


Schedule = DailySchedule | WeeklySchedule | EveryNHours


# --- text form ---------------------------------------------------------------------------------


def format_schedule(s: Schedule) -> str:
    """The canonical text form, which :func:`parse_schedule` reads back."""
    if isinstance(s, DailySchedule):
        return f"daily@{_hhmm(s.at)}"
    if isinstance(s, WeeklySchedule):
        return "weekly:" + ",".join(d.short for d in sorted(s.days)) + f"@{_hhmm(s.at)}"
    return f"every:{s.hours}h@{_hhmm(s.window_start)}-{_hhmm(s.window_end)}"


_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DAYS = {d.short: d for d in Weekday} | {d.long.lower(): d for d in Weekday}


def _parse_time(value: str, text: str) -> time:
    m = _TIME.fullmatch(value)
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise InvalidSchedule(f"'{value}' is not a time of day (use HH:MM, 00:00-23:59)", text=text)
    return time(int(m[1]), int(m[2]))


def _parse_day(value: str, text: str) -> Weekday:
    if value not in _DAYS:
        raise InvalidSchedule(
            f"'{value}' is not a day (use mon, tue, wed, thu, fri, sat, sun)", text=text
        )
    return _DAYS[value]


def _parse_days(value: str, text: str) -> frozenset[Weekday]:
    days: set[Weekday] = set()
    for item in value.split(","):
        if not item:
            raise InvalidSchedule("no days given" if not value else "empty day in list", text=text)
        first, sep, last = item.partition("-")
        a = _parse_day(first, text)
        b = _parse_day(last, text) if sep else a
        days.update(Weekday((a + k) % 7) for k in range((b - a) % 7 + 1))  # ranges may wrap
    return frozenset(days)


def parse_schedule(text: str, tz: str | ZoneInfo) -> Schedule:
    """Read ``daily@02:30``, ``weekly:mon,wed,fri@23:00`` (or ``mon-fri``), ``every:4h``
    (whole day) or ``every:4h@08:00-20:00``; ``tz`` is the IANA zone of the wall times.

    Case and spaces do not matter.  Every mistake raises :class:`InvalidSchedule` naming it.
    """
    zone = parse_timezone(tz)
    t = re.sub(r"\s+", "", text).lower()
    try:
        if t.startswith("daily"):
            if not t.startswith("daily@"):
                raise InvalidSchedule("expected daily@HH:MM", text=text)
            return DailySchedule(_parse_time(t[6:], text), zone)
        if t.startswith("weekly"):
            days, at_sep, at = t[7:].partition("@")
            if not t.startswith("weekly:") or not at_sep:
                raise InvalidSchedule("expected weekly:DAYS@HH:MM", text=text)
            if not days:
                raise InvalidSchedule("no days given", text=text)
            return WeeklySchedule(_parse_days(days, text), _parse_time(at, text), zone)
        if t.startswith("every"):
            n, at_sep, window = t[6:].partition("@")
            if not t.startswith("every:"):
                raise InvalidSchedule("expected every:Nh or every:Nh@HH:MM-HH:MM", text=text)
            if not re.fullmatch(r"[0-9]{1,3}h?", n):
                raise InvalidSchedule(
                    f"'{n}' is not a number of hours (4h, 6h, 8h or 12h)", text=text
                )
            if not at_sep:
                return EveryNHours(int(n.rstrip("h")), tz=zone)
            start, dash, end = window.partition("-")
            if not dash:
                raise InvalidSchedule("expected a window HH:MM-HH:MM after '@'", text=text)
            return EveryNHours(
                int(n.rstrip("h")), _parse_time(start, text), _parse_time(end, text), zone
            )
    except InvalidSchedule as e:
        raise InvalidSchedule(e.detail, text=text) from None
    raise InvalidSchedule(
        "expected daily@HH:MM, weekly:DAYS@HH:MM or every:Nh@HH:MM-HH:MM", text=text
    )


def describe_schedule(s: Schedule) -> str:
    """For humans: ``every 4 hours from 08:00 to 20:00 (08:00, 12:00, 16:00, 20:00), Europe/Berlin``."""
    zone = s.tz.key
    if isinstance(s, DailySchedule):
        return f"every day at {_hhmm(s.at)}, {zone}"
    if isinstance(s, WeeklySchedule):
        names = [d.long for d in sorted(s.days)]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"every {listed} at {_hhmm(s.at)}, {zone}"
    start = datetime.combine(date(2000, 1, 1), s.window_start)
    runs = ", ".join(_hhmm((start + o).time()) for o in s.offsets)
    next_day = " the next day" if s.window_end < s.window_start else ""
    return (
        f"every {s.hours} hours from {_hhmm(s.window_start)} to {_hhmm(s.window_end)}"
        f"{next_day} ({runs}), {zone}"
    )


def longest_gap(s: Schedule) -> timedelta:
    """The longest wall-clock time between two consecutive slots (DST can add an hour)."""
    if isinstance(s, DailySchedule):
        return _DAY
    if isinstance(s, WeeklySchedule):
        days = sorted(s.days)
        return _DAY * max((b - a) % 7 or 7 for a, b in zip(days, days[1:] + days[:1], strict=True))
    return max(timedelta(hours=s.hours), _DAY - s.offsets[-1])


# --- slots -------------------------------------------------------------------------------------


def _wall_slots(s: Schedule, day: date) -> list[datetime]:
    """The nominal (naive, local) slots of the window or day that starts on ``day``."""
    if isinstance(s, DailySchedule):
        return [datetime.combine(day, s.at)]
    if isinstance(s, WeeklySchedule):
        return [datetime.combine(day, s.at)] if Weekday(day.weekday()) in s.days else []
    start = datetime.combine(day, s.window_start)
    return [start + o for o in s.offsets]  # naive arithmetic: wall-clock hours


def _offset(ts: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).utcoffset()


def to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a nominal wall time runs at (see the module doc for gaps and folds)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the first occurrence of a repeated time
    # In a gap: fold=0 and fold=1 land on either side of the transition; find it to the second.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = sorted((int(first.timestamp()), int(other.timestamp())))
    before = _offset(lo, tz)
    if _offset(hi, tz) == before:
        return datetime.fromtimestamp(hi, UTC)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _offset(mid, tz) == before else (lo, mid)
    return datetime.fromtimestamp(hi, UTC)


@lru_cache(maxsize=512)
def _slots(s: Schedule, first_day: date, last_day: date) -> tuple[tuple[datetime, datetime], ...]:
    """(instant, nominal wall time) of the days ``first_day``..``last_day``, one per instant.

    Cached (schedules are frozen, the answer depends on nothing else): the dashboard asks
    :func:`next_slot` for each protected VM of a fleet, and their last points fall on a few
    days, so the same days' slots are computed once, not once per VM."""
    out: list[tuple[datetime, datetime]] = []
    day = first_day
    while day <= last_day:
        out.extend((to_instant(w, s.tz), w) for w in _wall_slots(s, day))
        day += _DAY
    out.sort()
    return tuple(slot for i, slot in enumerate(out) if i == 0 or slot[0] != out[i - 1][0])


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {value!r}")


def slots_between(s: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in ``(start, end]``, ascending, as aware UTC datetimes."""
    _aware(start, "start")
    _aware(end, "end")
    if end <= start:
        return []
    # A day's slots can land up to ~2 days after it (windows past midnight, a skipped day).
    first = start.astimezone(s.tz).date() - 3 * _DAY
    last = end.astimezone(s.tz).date() + _DAY
    instants = _instants(s, first, last)
    return list(instants[bisect_right(instants, start) : bisect_right(instants, end)])


@lru_cache(maxsize=512)
def _instants(s: Schedule, first_day: date, last_day: date) -> tuple[datetime, ...]:
    """The instants of :func:`_slots`, ascending: :func:`slots_between` bisects them (the
    attention rule asks for one VM's next slot after its last point, per protected VM)."""
    return tuple(i for i, _ in _slots(s, first_day, last_day))


def next_slot(s: Schedule, after: datetime) -> datetime:
    """The first slot strictly after ``after``."""
    return slots_between(s, after, after + _HORIZON)[0]


def previous_slot(s: Schedule, at: datetime) -> datetime:
    """The last slot at or before ``at``."""
    return slots_between(s, at - _HORIZON, at)[-1]


def slot_key(s: Schedule, slot: datetime) -> str:
    """The stable identity of a slot: ``2026-03-29T02:30 Europe/Berlin`` (nominal wall time).

    Raises ``ValueError`` when ``slot`` is not one of the schedule's slots.
    """
    _aware(slot, "slot")
    day = slot.astimezone(s.tz).date()
    for instant, wall in _slots(s, day - 3 * _DAY, day + _DAY):
        if instant == slot:
            return f"{wall:%Y-%m-%dT%H:%M} {s.tz.key}"
    raise ValueError(f"{slot.isoformat()} is not a slot of {format_schedule(s)} ({s.tz.key})")


def catch_up(s: Schedule, last_run: datetime | None, now: datetime) -> datetime | None:
    """The one slot to run for everything missed in ``(last_run, now]``: the latest, or None.

    ``last_run`` is the last slot the scheduler handled (not a manual backup).  ``None`` means
    the schedule never ran: nothing is caught up, the first run is the next slot.  However
    many slots passed while the server was down, one is returned, so they are caught up once.
    A slot due exactly at ``now`` counts, so this is also the scheduler's regular tick.
    """
    _aware(now, "now")
    if last_run is None:
        return None
    _aware(last_run, "last_run")
    due = previous_slot(s, now)
    return due if due > last_run else None
