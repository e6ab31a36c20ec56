"""The pure rules of immutable vaults (domain/immutability.py): the setting's one-way door,
the date a GFS policy guarantees a new point (golden cases, and a Hypothesis property against
retention itself: the point is kept at every instant before it, and a schedule exists that
removes it at that instant), the removal check, prune's hold, what may only lengthen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.domain.errors import ImmutableLocked, InvalidInput, PointRetained, RetentionShortened
from vmvault.domain.immutability import (
    EXTENSION_MARGIN,
    ImmutableMode,
    LockMode,
    change,
    check_removal,
    check_retention_change,
    check_soft_delete_change,
    default_lock_mode,
    extension,
    hold_retained,
    lengthen,
    policy_guarantee,
    retain_until,
)
from vmvault.domain.retention import Decision, PointRef, Retention, apply_retention, bucket
from vmvault.domain.soft_delete import SoftDelete, SoftDeleteMode

OFF, ON, LOCKED = ImmutableMode.OFF, ImmutableMode.ON, ImmutableMode.LOCKED
UTCZ = ZoneInfo("UTC")
ROME = ZoneInfo("Europe/Rome")


def test_the_setting_is_a_one_way_door_once_locked() -> None:
    assert change("v", OFF, True, False) is ON
    assert change("v", ON, False, False) is OFF
    assert change("v", OFF, True, True) is LOCKED
    assert change("v", ON, None, True) is LOCKED  # --lock alone locks what is on
    assert change("v", LOCKED, True, False) is LOCKED
    with pytest.raises(ImmutableLocked) as err:
        change("v", LOCKED, False, False)
    assert err.value.code == "IMMUTABLE_LOCKED" and "permanent" in err.value.remedy_text
    with pytest.raises(InvalidInput):
        change("v", ON, False, True)
    with pytest.raises(InvalidInput):
        change("v", ON, None, False)


def test_compliance_once_locked_governance_before() -> None:
    assert default_lock_mode(LOCKED) is LockMode.COMPLIANCE
    assert default_lock_mode(ON) is LockMode.GOVERNANCE


@pytest.mark.parametrize(
    ("counts", "created", "tz", "until"),
    [
        # daily=7: the start of the 7th day after the point's day
        ({"daily": 7}, "2026-12-02T02:30:00+00:00", UTCZ, "2026-12-09T00:00:00+00:00"),
        ({"daily": 7}, "2026-12-02T23:59:59+00:00", UTCZ, "2026-12-09T00:00:00+00:00"),
        # the finest level with a count decides (weekly and monthly may keep it longer)
        (
            {"daily": 2, "monthly": 12},
            "2026-12-02T02:30:00+00:00",
            UTCZ,
            "2026-12-04T00:00:00+00:00",
        ),
        # weekly=4, a Wednesday: the Monday 4 ISO weeks after its week's Monday
        ({"weekly": 4}, "2026-12-02T02:30:00+00:00", UTCZ, "2026-12-28T00:00:00+00:00"),
        ({"monthly": 3}, "2026-11-30T10:00:00+00:00", UTCZ, "2027-02-01T00:00:00+00:00"),
        ({"monthly": 14}, "2026-12-15T10:00:00+00:00", UTCZ, "2028-02-01T00:00:00+00:00"),
        ({"yearly": 2}, "2026-12-31T23:00:00+00:00", UTCZ, "2028-01-01T00:00:00+00:00"),
        # the policy's zone: 23:30 UTC on 2026-03-28 is already the 29th in Rome; the day
        # 2 days later starts at 00:00 Rome summer time (UTC+2)
        ({"daily": 2}, "2026-03-28T23:30:00+00:00", ROME, "2026-03-30T22:00:00+00:00"),
    ],
)
def test_policy_guarantee_golden(
    counts: dict[str, int], created: str, tz: ZoneInfo, until: str
) -> None:
    got = policy_guarantee(Retention(**counts), datetime.fromisoformat(created), tz)
    assert got == datetime.fromisoformat(until)


@settings(max_examples=150, deadline=None)
@given(
    level=st.sampled_from(["daily", "weekly", "monthly"]),
    n=st.integers(1, 5),
    start=st.datetimes(datetime(2025, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
    gaps=st.lists(st.integers(1, 40 * 24), min_size=0, max_size=30),
    probe=st.floats(0, 1),
    tz=st.sampled_from([UTCZ, ROME, ZoneInfo("America/New_York")]),
)
def test_retention_keeps_the_point_until_its_guarantee(
    level: str,
    n: int,
    start: datetime,
    gaps: list[int],
    probe: float,
    tz: ZoneInfo,
) -> None:
    """Whatever later points arrive (never in the point's own bucket, so it stays the newest
    of it), retention keeps it at every instant before its guarantee."""
    retention = Retention(**{level: n})
    until = policy_guarantee(retention, start, tz)
    assert until > start
    points = [PointRef("p0", start)]
    # later points start when the point's day ends (it stays the newest of its day)
    t = datetime.combine(
        start.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tzinfo=tz
    )
    for i, hours in enumerate(gaps, 1):
        points.append(PointRef(f"p{i:03d}", t))
        t += timedelta(hours=hours)
    now = start + (until - start) * probe
    if now >= until:
        return
    visible = [p for p in points if p.created_at <= now]
    if level != "daily":  # keep later points out of the point's week/month as well
        mine = bucket(level, start, tz)
        visible = [p for p in visible if p.id == "p0" or bucket(level, p.created_at, tz) != mine]
    [decision] = [d for d in apply_retention(visible, retention, now, tz) if d.point_id == "p0"]
    assert decision.keep, (decision, now, until)


def test_the_guarantee_is_tight_for_daily_points() -> None:
    """A point at the start of each of the next N days removes it at the guarantee."""
    start = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    retention = Retention(daily=3)
    until = policy_guarantee(retention, start, UTCZ)
    later = [PointRef(f"p{i}", until - timedelta(days=3 - i)) for i in (1, 2, 3)]
    refs = [PointRef("p0", start), *later]
    kept = {d.point_id: d.keep for d in apply_retention(refs, retention, until, UTCZ)}
    assert kept["p0"] is False
    before = {d.point_id: d.keep for d in apply_retention(refs[:3], retention, until, UTCZ)}
    assert before["p0"] is True


def test_retain_until_is_the_later_date_and_only_lengthens() -> None:
    a = datetime(2026, 12, 9, tzinfo=UTC)
    b = datetime(2027, 1, 1, tzinfo=UTC)
    assert (
        retain_until(a, b) == b and retain_until(b, None) == b and retain_until(None, None) is None
    )
    assert lengthen("v", "p", a, b) == b and lengthen("v", "p", None, a) == a
    with pytest.raises(RetentionShortened) as err:
        lengthen("v", "p", b, a)
    assert err.value.code == "RETENTION_SHORTENED"


def test_removal_is_refused_only_in_an_immutable_vault_before_the_date() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    later = now + timedelta(seconds=1)
    check_removal("v", OFF, "p", later, now)  # not immutable: anything goes
    check_removal("v", ON, "p", now, now)  # the date has come
    check_removal("v", ON, "p", None, now)  # no date
    for mode in (ON, LOCKED):
        with pytest.raises(PointRetained) as err:
            check_removal("v", mode, "p", later, now)
        assert err.value.code == "POINT_RETAINED"


def test_prune_keeps_retained_points_and_says_why() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    decisions = [
        Decision("a", False, ("not selected by any rule",)),
        Decision("b", False, ("not selected by any rule",)),
        Decision("c", True, ("newest point",)),
    ]
    until = {"a": now + timedelta(days=1), "b": now, "c": None}
    held = hold_retained(decisions, until, ON, now)
    assert [d.keep for d in held] == [True, False, True]
    assert held[0].reasons[0].startswith("retained until 2026-12-03")
    assert hold_retained(decisions, until, OFF, now) == decisions


@given(
    old=st.tuples(*[st.integers(0, 30)] * 4).filter(any),
    new=st.tuples(*[st.integers(0, 30)] * 4).filter(any),
)
def test_a_policy_of_an_immutable_vault_only_lengthens(
    old: tuple[int, ...], new: tuple[int, ...]
) -> None:
    levels = ("daily", "weekly", "monthly", "yearly")
    a, b = (
        Retention(**dict(zip(levels, old, strict=True))),
        Retention(**dict(zip(levels, new, strict=True))),
    )
    shorter = any(y < x for x, y in zip(old, new, strict=True))
    if shorter:
        with pytest.raises(RetentionShortened):
            check_retention_change("v", "gold", a, b)
    else:
        check_retention_change("v", "gold", a, b)


def test_soft_delete_neither_turns_off_nor_shortens() -> None:
    on14 = SoftDelete(SoftDeleteMode.ON, 14)
    check_soft_delete_change("v", on14, SoftDelete(SoftDeleteMode.ALWAYS, 30))
    with pytest.raises(RetentionShortened):
        check_soft_delete_change("v", on14, SoftDelete(SoftDeleteMode.ON, 13))
    with pytest.raises(RetentionShortened):
        check_soft_delete_change("v", on14, SoftDelete(SoftDeleteMode.OFF, 14))


def test_an_object_is_extended_once_per_margin() -> None:
    """Daily points sharing a chunk: the chunk's retention is extended on the first point and
    then only when a point's date passes the extended one — once per margin."""
    day = timedelta(days=1)
    first = datetime(2026, 12, 9, tzinfo=UTC)
    current = None
    extensions = 0
    for i in range(70):
        wanted = first + i * day
        new = extension(current, wanted)
        if new is not None:
            extensions += 1
            current = new
        assert current is not None and current >= wanted
    assert extensions == 70 // (EXTENSION_MARGIN // day + 1) + 1
