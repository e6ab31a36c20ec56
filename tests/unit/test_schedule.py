"""Schedules: parsing, slots across daylight-saving changes, slot keys and catch-up."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.domain.errors import InvalidInput, InvalidSchedule, UnknownTimeZone
from vmvault.domain.schedule import (
    DailySchedule,
    EveryNHours,
    Schedule,
    Weekday,
    WeeklySchedule,
    catch_up,
    describe_schedule,
    format_schedule,
    longest_gap,
    next_slot,
    parse_schedule,
    parse_timezone,
    previous_slot,
    slot_key,
    slots_between,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC_Z = ZoneInfo("UTC")
# 2026 transitions: Berlin 03-29 02:00→03:00 and 10-25 03:00→02:00;
# New York 03-08 02:00→03:00 and 11-01 02:00→01:00.
TRANSITIONS = [
    (BERLIN, date(2026, 3, 29)),
    (BERLIN, date(2026, 10, 25)),
    (NEW_YORK, date(2026, 3, 8)),
    (NEW_YORK, date(2026, 11, 1)),
]


def utc(y: int, m: int, d: int, h: int = 0, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=UTC)


def local_day(tz: ZoneInfo, d: date) -> tuple[datetime, datetime]:
    """The instants bounding local day ``d``: (start-exclusive, end-inclusive) for slots_between."""
    start = datetime.combine(d, time(0), tz) - timedelta(microseconds=1)
    end = datetime.combine(d + timedelta(days=1), time(0), tz) - timedelta(microseconds=1)
    return start, end


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily@02:30", DailySchedule(time(2, 30), BERLIN)),
        ("  Daily @ 2:30 ", DailySchedule(time(2, 30), BERLIN)),
        (
            "weekly:mon,wed,fri@23:00",
            WeeklySchedule(frozenset({Weekday.MON, Weekday.WED, Weekday.FRI}), time(23), BERLIN),
        ),
        (
            "weekly:mon-fri@22:00",
            WeeklySchedule(frozenset(Weekday) - {Weekday.SAT, Weekday.SUN}, time(22), BERLIN),
        ),
        (
            "weekly:sat-mon@06:00",
            WeeklySchedule(frozenset({Weekday.SAT, Weekday.SUN, Weekday.MON}), time(6), BERLIN),
        ),
        ("weekly:Sunday@06:00", WeeklySchedule(frozenset({Weekday.SUN}), time(6), BERLIN)),
        ("every:4h@08:00-20:00", EveryNHours(4, time(8), time(20), BERLIN)),
        ("every:6@22:00-06:00", EveryNHours(6, time(22), time(6), BERLIN)),
        ("every:12h", EveryNHours(12, time(0), time(23, 59), BERLIN)),
    ],
)
def test_parse(text: str, expected: Schedule) -> None:
    s = parse_schedule(text, "Europe/Berlin")
    assert s == expected
    assert parse_schedule(format_schedule(s), BERLIN) == s


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("daily@25:00", "'25:00' is not a time of day"),
        ("daily@12:60", "'12:60' is not a time of day"),
        ("daily@24:00", "'24:00' is not a time of day"),
        ("daily@noon", "'noon' is not a time of day"),
        ("daily 02:30", "expected daily@HH:MM"),
        ("daily", "expected daily@HH:MM"),
        ("weekly:@10:00", "no days given"),
        ("weekly:mon,,fri@10:00", "empty day in list"),
        ("weekly:mo@10:00", "'mo' is not a day"),
        ("weekly@10:00", "expected weekly:DAYS@HH:MM"),
        ("weekly:mon", "expected weekly:DAYS@HH:MM"),
        ("every:5h@08:00-20:00", "N must be 4, 6, 8 or 12"),
        ("every:24h", "N must be 4, 6, 8 or 12"),
        ("every:0h", "N must be 4, 6, 8 or 12"),
        ("every:xh", "'xh' is not a number of hours"),
        ("every:4h@08:00", "expected a window HH:MM-HH:MM"),
        ("every:4h@08:00-08:00", "the window is empty"),
        ("every:4h@08:00-11:59", "the window holds a single run (08:00)"),
        ("every:12h@20:00-07:00", "the window holds a single run (20:00)"),
        ("every4h", "expected every:Nh"),
        ("hourly", "expected daily@HH:MM, weekly:DAYS@HH:MM or every:Nh@HH:MM-HH:MM"),
        ("", "expected daily@HH:MM"),
    ],
)
def test_parse_refuses_with_a_clear_reason(text: str, detail: str) -> None:
    with pytest.raises(InvalidSchedule) as e:
        parse_schedule(text, "UTC")
    assert e.value.text.startswith(f"schedule '{text}' is not valid: ")
    assert detail in e.value.text
    assert isinstance(e.value, InvalidInput) and e.value.kind == "usage"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "europe/berlin", "../etc", "localtime"])
def test_unknown_time_zones(name: str) -> None:
    with pytest.raises(UnknownTimeZone):
        parse_schedule("daily@02:30", name)


def test_constructors_validate_too() -> None:
    with pytest.raises(InvalidSchedule, match="whole minute"):
        DailySchedule(time(2, 30, 15))
    with pytest.raises(InvalidSchedule, match="whole minute"):
        DailySchedule(time(2, 30, tzinfo=UTC))
    with pytest.raises(InvalidSchedule, match="no days"):
        WeeklySchedule(frozenset(), time(1))
    with pytest.raises(InvalidSchedule, match="4, 6, 8 or 12"):
        EveryNHours(3)
    assert parse_timezone(BERLIN) is BERLIN
    uncached = ZoneInfo.no_cache("Europe/Berlin")
    assert DailySchedule(time(1), uncached) == DailySchedule(time(1), BERLIN)


def test_describe_and_gaps() -> None:
    assert describe_schedule(parse_schedule("daily@02:30", BERLIN)) == (
        "every day at 02:30, Europe/Berlin"
    )
    assert describe_schedule(parse_schedule("weekly:fri,mon@23:00", "UTC")) == (
        "every Monday and Friday at 23:00, UTC"
    )
    assert describe_schedule(parse_schedule("every:6h@22:00-06:00", "UTC")) == (
        "every 6 hours from 22:00 to 06:00 the next day (22:00, 04:00), UTC"
    )
    gaps = {
        "daily@02:30": timedelta(days=1),
        "weekly:sun@01:00": timedelta(days=7),
        "weekly:mon,wed,fri@01:00": timedelta(days=3),
        "every:4h": timedelta(hours=4),
        "every:4h@08:00-20:00": timedelta(hours=12),
        "every:6h@22:00-06:00": timedelta(hours=18),
    }
    assert {t: longest_gap(parse_schedule(t, "UTC")) for t in gaps} == gaps


# --- daylight saving ----------------------------------------------------------------------------


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK], ids=["Berlin", "New_York"])
def test_daily_0230_runs_once_on_every_day_of_2026(tz: ZoneInfo) -> None:
    s = DailySchedule(time(2, 30), tz)
    slots = slots_between(s, utc(2025, 12, 31, 12), utc(2026, 12, 31, 12))
    days = [x.astimezone(tz).date() for x in slots]
    assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert all(x.tzinfo is UTC for x in slots)


@pytest.mark.parametrize(
    ("tz", "at", "day", "expected"),
    [
        # spring forward: 02:30 does not exist, the run is at the end of the gap (03:00 local)
        (BERLIN, time(2, 30), date(2026, 3, 29), utc(2026, 3, 29, 1, 0)),
        (NEW_YORK, time(2, 30), date(2026, 3, 8), utc(2026, 3, 8, 7, 0)),
        # fall back: a repeated wall time runs at its first occurrence (summer time)
        (BERLIN, time(2, 30), date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),
        (NEW_YORK, time(1, 30), date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),
        # 02:30 in New York on 11-01 exists once (after the repeated hour)
        (NEW_YORK, time(2, 30), date(2026, 11, 1), utc(2026, 11, 1, 7, 30)),
    ],
)
def test_daily_slot_on_transition_days(
    tz: ZoneInfo, at: time, day: date, expected: datetime
) -> None:
    s = DailySchedule(at, tz)
    assert slots_between(s, *local_day(tz, day)) == [expected]
    assert slot_key(s, expected) == f"{day}T{at:%H:%M} {tz.key}"


@pytest.mark.parametrize(
    ("tz", "day", "expected_local"),
    [
        # 02:00 falls into the gap and runs at 03:00; the rest keep their wall times
        (
            BERLIN,
            date(2026, 3, 29),
            ["03:00+02", "06:00+02", "10:00+02", "14:00+02", "18:00+02", "22:00+02"],
        ),
        # 02:00 is repeated: the first one (summer time) runs, the second does not
        (
            BERLIN,
            date(2026, 10, 25),
            ["02:00+02", "06:00+01", "10:00+01", "14:00+01", "18:00+01", "22:00+01"],
        ),
        (
            NEW_YORK,
            date(2026, 3, 8),
            ["03:00-04", "06:00-04", "10:00-04", "14:00-04", "18:00-04", "22:00-04"],
        ),
        (
            NEW_YORK,
            date(2026, 11, 1),
            ["02:00-05", "06:00-05", "10:00-05", "14:00-05", "18:00-05", "22:00-05"],
        ),
    ],
)
def test_every_4h_over_a_transition_day(tz: ZoneInfo, day: date, expected_local: list[str]) -> None:
    s = parse_schedule("every:4h@02:00-22:00", tz)
    slots = slots_between(s, *local_day(tz, day))
    assert [x.astimezone(tz).strftime("%H:%M%z")[:-2] for x in slots] == expected_local
    keys = [slot_key(s, x) for x in slots]
    assert keys == [f"{day}T{h:02d}:00 {tz.key}" for h in (2, 6, 10, 14, 18, 22)]


def test_every_4h_simulated_day_in_utc_hours() -> None:
    s = parse_schedule("every:4h@08:00-20:00", BERLIN)
    assert slots_between(s, utc(2026, 3, 28, 23), utc(2026, 3, 29, 23)) == [
        utc(2026, 3, 29, h) for h in (6, 10, 14, 18)
    ]
    # a normal winter day: one hour behind UTC
    assert slots_between(s, utc(2026, 1, 15), utc(2026, 1, 16)) == [
        utc(2026, 1, 15, h) for h in (7, 11, 15, 19)
    ]


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    s = parse_schedule("every:4h@22:00-06:00", UTC_Z)
    assert slots_between(s, utc(2026, 5, 1, 12), utc(2026, 5, 2, 12)) == [
        utc(2026, 5, 1, 22),
        utc(2026, 5, 2, 2),
        utc(2026, 5, 2, 6),
    ]


def test_weekly_picks_its_days_only() -> None:
    s = parse_schedule("weekly:mon,fri@23:00", BERLIN)
    slots = slots_between(s, utc(2026, 11, 1), utc(2026, 11, 15))
    assert [x.astimezone(BERLIN).strftime("%a %d %H:%M") for x in slots] == [
        "Mon 02 23:00",
        "Fri 06 23:00",
        "Mon 09 23:00",
        "Fri 13 23:00",
    ]


# --- next, previous, keys, catch-up --------------------------------------------------------------


def test_next_and_previous_slot() -> None:
    s = parse_schedule("daily@02:30", BERLIN)
    slot = utc(2026, 11, 20, 1, 30)
    assert next_slot(s, slot - timedelta(seconds=1)) == slot
    assert next_slot(s, slot) == slot + timedelta(days=1)  # strictly after
    assert previous_slot(s, slot) == slot  # at or before
    assert previous_slot(s, slot - timedelta(seconds=1)) == slot - timedelta(days=1)
    weekly = parse_schedule("weekly:sun@03:00", UTC_Z)
    assert next_slot(weekly, utc(2026, 11, 16)) == utc(2026, 11, 22, 3)


def test_slot_key_refuses_instants_that_are_not_slots() -> None:
    s = parse_schedule("daily@02:30", BERLIN)
    with pytest.raises(ValueError, match="not a slot"):
        slot_key(s, utc(2026, 11, 20, 2, 30))
    with pytest.raises(ValueError, match="aware"):
        slot_key(s, datetime(2026, 11, 20, 1, 30))
    # the second 02:30 of the fall-back night is not a slot
    with pytest.raises(ValueError, match="not a slot"):
        slot_key(s, utc(2026, 10, 25, 1, 30))


def test_catch_up_runs_a_long_outage_once() -> None:
    s = parse_schedule("every:4h@08:00-20:00", UTC_Z)
    last = utc(2026, 11, 10, 20)
    now = utc(2026, 11, 20, 13, 5)
    assert len(slots_between(s, last, now)) > 30
    assert catch_up(s, last, now) == utc(2026, 11, 20, 12)
    assert catch_up(s, utc(2026, 11, 20, 12), now) is None  # nothing missed since
    assert catch_up(s, None, now) is None  # a new policy waits for its next slot
    assert catch_up(s, last, utc(2026, 11, 20, 12)) == utc(2026, 11, 20, 12)  # due exactly now
    assert catch_up(s, now, last) is None  # clock went backwards


# --- properties ---------------------------------------------------------------------------------

ZONES = [UTC_Z, BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Pacific/Apia")]
minutes = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
zones = st.sampled_from(ZONES)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    tz = draw(zones)
    kind = draw(st.sampled_from(["daily", "weekly", "every"]))
    if kind == "daily":
        return DailySchedule(draw(minutes), tz)
    if kind == "weekly":
        days = draw(st.frozensets(st.sampled_from(list(Weekday)), min_size=1))
        return WeeklySchedule(days, draw(minutes), tz)
    hours = draw(st.sampled_from([4, 6, 8, 12]))
    start = draw(minutes)
    length = draw(st.integers(hours * 60, 24 * 60 - 1))
    end_minute = (start.hour * 60 + start.minute + length) % (24 * 60)
    return EveryNHours(hours, start, time(end_minute // 60, end_minute % 60), tz)


instants = st.integers(0, 2 * 366 * 24 * 60).map(lambda m: utc(2025, 6, 1) + timedelta(minutes=m))


@settings(max_examples=120, deadline=None)
@given(schedules(), instants, st.integers(1, 10 * 24 * 60))
def test_slot_properties(s: Schedule, start: datetime, span: int) -> None:
    end = start + timedelta(minutes=span)
    slots = slots_between(s, start, end)
    assert all(start < x <= end for x in slots)
    assert all(a < b for a, b in pairwise(slots))  # strictly increasing
    keys = [slot_key(s, x) for x in slots]
    assert len(set(keys)) == len(keys)
    # next_slot walks the same slots, and the text form reads back
    if slots:
        assert next_slot(s, start) == slots[0]
        assert all(next_slot(s, a) == b for a, b in pairwise(slots))
    assert parse_schedule(format_schedule(s), s.tz) == s


@settings(max_examples=120, deadline=None)
@given(schedules(), instants, st.integers(0, 30 * 24 * 60))
def test_catch_up_returns_at_most_the_latest_missed_slot(
    s: Schedule, last_run: datetime, outage: int
) -> None:
    now = last_run + timedelta(minutes=outage)
    missed = slots_between(s, last_run, now)
    got = catch_up(s, last_run, now)
    assert got == (missed[-1] if missed else None)
    # after catching up, nothing is due again until the next slot
    assert catch_up(s, got or last_run, now) is None


@settings(max_examples=60, deadline=None)
@given(minutes, st.sampled_from(TRANSITIONS))
def test_any_daily_time_runs_once_per_day_around_transitions(
    at: time, case: tuple[ZoneInfo, date]
) -> None:
    tz, day = case
    s = DailySchedule(at, tz)
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        (slot,) = slots_between(s, *local_day(tz, d))
        wall = slot.astimezone(tz)
        # the nominal time, or the end of the gap it fell into (never more than an hour late)
        nominal = datetime.combine(d, at)
        assert timedelta(0) <= wall.replace(tzinfo=None) - nominal <= timedelta(hours=1)
