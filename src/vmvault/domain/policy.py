"""Policies: a schedule and a retention in one time zone (docs/policies.md).

The policy's zone is the zone of the schedule's wall times *and* of retention's calendar
buckets, so "daily at 02:30" and "one point per day" mean the same day.

Validation refuses what cannot be meant (errors) and reports what is legal but probably not
what the user expects (warnings, collected by :meth:`Policy.warnings`, shown on create/show):

* error ``INVALID_RETENTION``: a count negative, above 9999, or all counts zero;
* error ``RETENTION_TOO_SHORT``: every count is at most 1.  Such a retention keeps only the
  newest point (the newest of today, of this week, … are all the same point), so the
  retention is shorter than one schedule interval: each backup deletes the one before and
  there is never a point to go back to.  With any count ≥ 2 the oldest kept point is at
  least one interval old, whatever the schedule;
* error ``INVALID_INPUT``: the schedule's zone differs from the policy's; a bad name;
* warning, *finer than the schedule*: a once-a-week schedule with ``daily > 0``.  Each day
  holds at most one point, so ``daily=7`` keeps the last 7 weekly backups (about 7 weeks),
  exactly what ``weekly=7`` says; legal, but rarely what was meant;
* warning, *coarser than the schedule*: a schedule that runs every day (daily, every N hours,
  weekly on several days) with ``daily=0``, or a once-a-week schedule with ``weekly=0`` too:
  most backups then only live until the next one.

Schedules that run several times a day are not warned about: retention's finest level is a
day, so of each day's runs the newest point is kept and the others live until the next
backup (:meth:`Policy.describe` says so).  Their point is a short RPO, not more history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from vmvault.domain.consistency import Consistency, parse_required
from vmvault.domain.errors import InvalidInput, RetentionTooShort
from vmvault.domain.retention import LEVELS, Retention
from vmvault.domain.schedule import (
    DailySchedule,
    EveryNHours,
    Schedule,
    WeeklySchedule,
    describe_schedule,
    format_schedule,
    longest_gap,
    next_slot,
    parse_schedule,
    parse_timezone,
)
from vmvault.domain.vault import validate_name

JSON_VERSION = 1
#: The least grace a late backup gets before the dashboard flags it (a fall-back night's extra
#: hour plus a queue of backups that start late).
MIN_GRACE = timedelta(hours=3)


@dataclass(frozen=True)
class CopyOption:
    """ "Copy every new point to vault ``vault``" (docs/copies.md): after each backup of the
    policy commits a point, a ``copy`` job sends it to ``vault``, whose own retention
    (``retention``; None: the policy's) then prunes the copies held there."""

    vault: str
    retention: Retention | None = None

    def __post_init__(self) -> None:
        validate_name(self.vault, "--copy-to vault name")
        if self.retention is not None:
            self.retention.validate()
            if max(self.retention.counts.values()) < 2:
                raise RetentionTooShort(retention=str(self.retention), schedule="copies")

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"vault": self.vault}
        if self.retention is not None:
            doc["retention"] = self.retention.counts
        return doc

    @classmethod
    def from_json(cls, data: object, what: str) -> CopyOption:
        if not isinstance(data, Mapping) or not isinstance(data.get("vault"), str):
            raise InvalidInput("its copy option names no vault", what=what)
        counts = data.get("retention")
        if counts is None:
            return cls(str(data["vault"]))
        return cls(str(data["vault"]), _retention(counts, what))


@dataclass(frozen=True)
class Policy:
    name: str
    schedule: Schedule
    retention: Retention
    timezone: ZoneInfo
    #: copy every new point to a second vault (None: no copies)
    copy: CopyOption | None = None
    #: back up all the policy's VMs of a vault as one all-or-nothing set at each slot
    as_set: bool = False
    #: the least consistency of its backups' points (None: any; docs/backup.md)
    require: Consistency | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timezone", parse_timezone(self.timezone))
        self.validate()

    @classmethod
    def create(
        cls,
        name: str,
        schedule: str,
        timezone: str,
        retention: Retention,
        copy: CopyOption | None = None,
        as_set: bool = False,
        require: str | None = None,
    ) -> Policy:
        """From the CLI's words: ``Policy.create("gold", "daily@02:30", "Europe/Berlin", …)``."""
        zone = parse_timezone(timezone)
        level = parse_required(require)
        return cls(name, parse_schedule(schedule, zone), retention, zone, copy, as_set, level)

    @property
    def copy_retention(self) -> Retention | None:
        """The retention of the copies in the copy vault (None: no copies)."""
        if self.copy is None:
            return None
        return self.copy.retention or self.retention

    def validate(self) -> None:
        validate_name(self.name, "policy name")
        parse_timezone(self.timezone)
        if self.schedule.tz.key != self.timezone.key:
            raise InvalidInput(
                f"its schedule is in {self.schedule.tz.key}, the policy in {self.timezone.key}",
                what=f"policy '{self.name}'",
            )
        self.retention.validate()
        if max(self.retention.counts.values()) < 2:
            raise RetentionTooShort(
                retention=str(self.retention), schedule=format_schedule(self.schedule)
            )

    @property
    def once_a_week(self) -> bool:
        return isinstance(self.schedule, WeeklySchedule) and len(self.schedule.days) == 1

    def warnings(self) -> list[str]:
        """Legal but probably unintended combinations (see the module doc)."""
        r, out = self.retention, []
        if self.once_a_week and r.daily:
            out.append(
                f"the schedule runs once a week, so daily={r.daily} keeps the last {r.daily} "
                f"weekly backups (about {r.daily} weeks); weekly={r.daily} says the same"
            )
        cadence = "weekly" if self.once_a_week else "daily"
        finest = next(level for level in LEVELS if r.counts[level])
        if LEVELS.index(finest) > LEVELS.index(cadence):
            runs = _RUNS[type(self.schedule)] if not self.once_a_week else "once a week"
            out.append(
                f"backups run {runs} but no {cadence} points are kept: each backup is removed "
                f"by the next one unless it is the newest of its {_BUCKET_NAME[finest]}"
            )
        return out

    def describe(self) -> str:
        """A few lines for humans (``vmvault policy show``)."""
        s, zone = self.schedule, self.timezone.key
        keeps = f"{self.retention.describe()} (calendar buckets in {zone}), plus the newest point"
        if isinstance(s, EveryNHours):
            keeps += (
                f"; of the {len(s.offsets)} runs a day the newest is kept, the others until "
                "the next backup"
            )
        lines = [
            f"policy {self.name}",
            f"  schedule:  {describe_schedule(s)}",
            f"  retention: {keeps}",
            "             protected points and points kept until a date are kept as well",
            f"  overdue:   a VM whose last backup is older than {_human(max_age(self))}",
        ]
        if self.copy is not None:
            own = "" if self.copy.retention else " (the policy's)"
            retention = self.copy_retention
            assert retention is not None
            lines += [
                f"  copy to:   vault {self.copy.vault}, after each backup",
                f"             retention there: {retention.describe()}{own}",
            ]
        if self.as_set:
            lines.append("  as a set:  all its VMs in one all-or-nothing backup set per slot")
        if self.require is not None:
            lines.append(f"  require:   {self.require.value} points (else the backup fails)")
        lines += [f"  warning:   {w}" for w in self.warnings()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """The catalog's form: plain JSON types, the schedule in its text form."""
        return {
            "version": JSON_VERSION,
            "name": self.name,
            "schedule": format_schedule(self.schedule),
            "timezone": self.timezone.key,
            "retention": self.retention.counts,
            **({"copy": self.copy.to_json()} if self.copy is not None else {}),
            **({"as_set": True} if self.as_set else {}),
            **({"require": self.require.value} if self.require is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Policy:
        """Read :meth:`to_json`'s form back, validating it as if it were typed in."""
        what = f"stored policy {data.get('name')!r}"
        if data.get("version") != JSON_VERSION:
            raise InvalidInput(f"unknown version {data.get('version')!r}", what=what)
        name, schedule, timezone, retention = (
            data.get(k) for k in ("name", "schedule", "timezone", "retention")
        )
        if not (
            isinstance(name, str)
            and isinstance(schedule, str)
            and isinstance(timezone, str)
            and isinstance(retention, Mapping)
        ):
            raise InvalidInput("name, schedule, timezone or retention missing", what=what)
        copy = data.get("copy")
        option = CopyOption.from_json(copy, what) if copy is not None else None
        as_set = data.get("as_set", False)
        if not isinstance(as_set, bool):
            raise InvalidInput("as_set must be true or false", what=what)
        require = data.get("require")
        if require is not None and not isinstance(require, str):
            raise InvalidInput("its require is not a level", what=what)
        return cls.create(
            name, schedule, timezone, _retention(retention, what), option, as_set, require
        )


def _retention(retention: object, what: str) -> Retention:
    if not isinstance(retention, Mapping):
        raise InvalidInput("retention missing", what=what)
    if set(retention) - set(LEVELS):
        raise InvalidInput(
            f"unknown retention levels {sorted(set(retention) - set(LEVELS))}", what=what
        )
    counts = {level: retention.get(level, 0) for level in LEVELS}
    if not all(isinstance(n, int) for n in counts.values()):
        raise InvalidInput("retention counts must be whole numbers", what=what)
    return Retention(**counts)


_BUCKET_NAME = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}
_RUNS = {
    DailySchedule: "every day",
    WeeklySchedule: "on several days a week",
    EveryNHours: "several times a day",
}


def grace(policy: Policy) -> timedelta:
    """How late a slot's backup may be: a quarter of the longest gap, at least 3 hours."""
    return max(MIN_GRACE, longest_gap(policy.schedule) / 4)


def max_age(policy: Policy) -> timedelta:
    """How old a VM's last backup may be before the dashboard flags it as overdue.

    The longest wall-clock gap between two slots plus :func:`grace`: daily → 30 h, every 4 h
    all day → 7 h, every 4 h 08:00-20:00 (longest gap 12 h, overnight) → 15 h, weekly on one
    day → 8 d 18 h.  One number per policy, so a query can use it; it errs late for schedules
    with uneven gaps (mon-fri: 3 d 18 h), where :func:`overdue_at` is exact.
    """
    return longest_gap(policy.schedule) + grace(policy)


def overdue_at(policy: Policy, last_backup: datetime) -> datetime:
    """When a VM whose last backup was taken at ``last_backup`` becomes overdue: the first
    slot after it plus :func:`grace` (a missed slot is flagged once its grace has passed)."""
    return next_slot(policy.schedule, last_backup) + grace(policy)


def _human(d: timedelta) -> str:
    hours, rest = divmod(int(d.total_seconds()), 3600)
    minutes = f" {rest // 60} min" if rest // 60 else ""
    if hours < 48:
        return f"{hours} h{minutes}"
    return f"{hours // 24} d" + (f" {hours % 24} h" if hours % 24 else "") + minutes
