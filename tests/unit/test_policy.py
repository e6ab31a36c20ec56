"""Policies: validation (errors vs warnings), text for humans, the catalog's JSON, max age."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.domain.errors import (
    InvalidInput,
    InvalidRetention,
    InvalidSchedule,
    RetentionTooShort,
    UnknownTimeZone,
)
from vmvault.domain.policy import Policy, max_age, overdue_at
from vmvault.domain.retention import Retention
from vmvault.domain.schedule import DailySchedule, format_schedule

BERLIN = ZoneInfo("Europe/Berlin")
GFS = Retention(daily=7, weekly=4, monthly=12, yearly=2)


def test_create_from_words() -> None:
    p = Policy.create("gold", "daily@02:30", "Europe/Berlin", GFS)
    assert p == Policy("gold", DailySchedule(time(2, 30), BERLIN), GFS, BERLIN)
    assert p.warnings() == []


@pytest.mark.parametrize(
    ("name", "schedule", "tz", "retention", "error", "detail"),
    [
        ("-bad", "daily@02:30", "UTC", GFS, InvalidInput, "policy name '-bad'"),
        ("gold", "daily@26:00", "UTC", GFS, InvalidSchedule, "'26:00' is not a time"),
        ("gold", "daily@02:30", "Moon/Base", GFS, UnknownTimeZone, "'Moon/Base'"),
        ("gold", "daily@02:30", "UTC", Retention(daily=1), RetentionTooShort, "daily=1"),
        (
            "gold",
            "every:4h",
            "UTC",
            Retention(daily=1, weekly=1, monthly=1, yearly=1),
            RetentionTooShort,
            "keeps only the newest point",
        ),
    ],
)
def test_invalid_policies(
    name: str, schedule: str, tz: str, retention: Retention, error: type[Exception], detail: str
) -> None:
    with pytest.raises(error) as e:
        Policy.create(name, schedule, tz, retention)
    assert detail in str(e.value)
    assert isinstance(e.value, InvalidInput)


def test_retention_too_short_names_both_sides() -> None:
    with pytest.raises(RetentionTooShort) as e:
        Policy.create("p", "weekly:sun@01:00", "UTC", Retention(daily=1, weekly=1))
    assert e.value.text == (
        "retention daily=1 weekly=1 is shorter than the schedule's interval: it keeps only the "
        "newest point, so every backup of 'weekly:sun@01:00' deletes the one before"
    )
    assert e.value.code == "RETENTION_TOO_SHORT" and "at least 2" in e.value.remedy_text


def test_schedule_zone_must_be_the_policy_zone() -> None:
    with pytest.raises(InvalidInput, match="schedule is in UTC, the policy in Europe/Berlin"):
        Policy("p", DailySchedule(time(1)), GFS, BERLIN)


@pytest.mark.parametrize(
    ("schedule", "retention", "warning"),
    [
        ("weekly:sun@01:00", Retention(daily=7), "daily=7 keeps the last 7 weekly backups"),
        ("daily@01:00", Retention(weekly=4, monthly=6), "backups run every day but no daily"),
        ("every:4h", Retention(weekly=4), "several times a day but no daily points"),
        ("weekly:mon-fri@22:00", Retention(monthly=3), "newest of its month"),
        ("weekly:sun@01:00", Retention(monthly=12), "once a week but no weekly points"),
    ],
)
def test_warnings(schedule: str, retention: Retention, warning: str) -> None:
    p = Policy.create("p", schedule, "UTC", retention)
    assert any(warning in w for w in p.warnings()), p.warnings()
    assert warning in p.describe()


@pytest.mark.parametrize(
    ("schedule", "retention"),
    [
        ("weekly:sun@01:00", Retention(weekly=8)),
        ("weekly:mon,thu@01:00", Retention(daily=7)),
        ("every:6h@06:00-18:00", Retention(daily=14, monthly=3)),
    ],
)
def test_no_warnings(schedule: str, retention: Retention) -> None:
    assert Policy.create("p", schedule, "UTC", retention).warnings() == []


def test_describe() -> None:
    p = Policy.create("silver", "every:4h@08:00-20:00", "Europe/Berlin", Retention(daily=14))
    assert p.describe() == (
        "policy silver\n"
        "  schedule:  every 4 hours from 08:00 to 20:00 (08:00, 12:00, 16:00, 20:00), "
        "Europe/Berlin\n"
        "  retention: 14 daily points (calendar buckets in Europe/Berlin), plus the newest "
        "point; of the 4 runs a day the newest is kept, the others until the next backup\n"
        "             protected points and points kept until a date are kept as well\n"
        "  overdue:   a VM whose last backup is older than 15 h"
    )


def test_json_round_trip_and_form() -> None:
    p = Policy.create("gold", "weekly:mon,fri@23:00", "America/New_York", GFS)
    data = p.to_json()
    assert data == {
        "version": 1,
        "name": "gold",
        "schedule": "weekly:mon,fri@23:00",
        "timezone": "America/New_York",
        "retention": {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 2},
    }
    assert Policy.from_json(data) == p


@pytest.mark.parametrize(
    ("change", "error", "detail"),
    [
        ({"version": 2}, InvalidInput, "unknown version 2"),
        ({"schedule": None}, InvalidInput, "missing"),
        ({"retention": [7]}, InvalidInput, "missing"),
        ({"retention": {"hourly": 24}}, InvalidInput, "unknown retention levels ['hourly']"),
        ({"retention": {"daily": "7"}}, InvalidInput, "whole numbers"),
        ({"retention": {"daily": 0}}, InvalidRetention, "no point at all"),
        ({"schedule": "daily@99:00"}, InvalidSchedule, "'99:00'"),
        ({"timezone": "Nowhere"}, UnknownTimeZone, "Nowhere"),
    ],
)
def test_from_json_refuses_damaged_data(
    change: dict[str, Any], error: type[Exception], detail: str
) -> None:
    data = {**Policy.create("gold", "daily@02:30", "UTC", GFS).to_json(), **change}
    with pytest.raises(error) as e:
        Policy.from_json(data)
    assert detail in str(e.value)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("daily@02:30", timedelta(hours=30)),
        ("every:4h", timedelta(hours=7)),
        ("every:4h@08:00-20:00", timedelta(hours=15)),
        ("every:12h@06:00-18:00", timedelta(hours=15)),
        ("weekly:sun@01:00", timedelta(days=8, hours=18)),
        ("weekly:mon-fri@22:00", timedelta(days=3, hours=18)),
    ],
)
def test_max_age(schedule: str, expected: timedelta) -> None:
    assert max_age(Policy.create("p", schedule, "Europe/Berlin", GFS)) == expected


def test_overdue_at_is_the_missed_slot_plus_grace() -> None:
    p = Policy.create("p", "weekly:mon-fri@22:00", "UTC", GFS)
    monday = datetime(2026, 11, 16, 22, tzinfo=UTC)
    # Tuesday's slot missed: flagged its grace (a quarter of the 3-day gap) later
    assert overdue_at(p, monday) == datetime(2026, 11, 17, 22, tzinfo=UTC) + timedelta(hours=18)
    daily = Policy.create("p", "daily@02:30", "Europe/Berlin", GFS)
    assert overdue_at(daily, datetime(2026, 11, 20, 1, 30, tzinfo=UTC)) == datetime(
        2026, 11, 21, 7, 30, tzinfo=UTC
    )


counts = st.tuples(*[st.integers(0, 40)] * 4).filter(lambda c: max(c) >= 2)
texts = st.sampled_from(
    ["daily@02:30", "weekly:sun@01:00", "weekly:mon-fri@22:00", "every:4h", "every:6h@22:00-06:00"]
)
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])


@settings(max_examples=60, deadline=None)
@given(texts, zones, counts)
def test_every_valid_policy_round_trips(text: str, tz: str, c: tuple[int, int, int, int]) -> None:
    p = Policy.create("p", text, tz, Retention(*c))
    assert Policy.from_json(p.to_json()) == p
    assert p.to_json()["schedule"] == format_schedule(p.schedule)
    assert max_age(p) > timedelta(0) and p.describe().startswith("policy p\n")
