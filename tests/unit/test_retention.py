"""Retention (GFS): golden cases, validation and Hypothesis properties.

Golden cases live in ``golden/retention/*.json``: points, retention, ``now`` and zone in,
the expected decision for every point out.  After a deliberate change of the rules, rewrite
the expected parts with ``VMVAULT_UPDATE_GOLDEN=1 pytest tests/unit/test_retention.py`` and
review the diff line by line: it is the specification.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.domain.errors import InvalidInput, InvalidRetention
from vmvault.domain.retention import (
    NOT_SELECTED,
    Decision,
    PointRef,
    Retention,
    apply_retention,
    bucket,
)

GOLDEN = Path(__file__).parent / "golden" / "retention"
CASES = sorted(GOLDEN.glob("*.json"))
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _points(case: dict[str, Any]) -> list[PointRef]:
    return [
        PointRef(
            p["id"], datetime.fromisoformat(p["created_at"]), p["protected"], _dt(p["keep_until"])
        )
        for p in case["points"]
    ]


def _dump(case: dict[str, Any]) -> str:
    """One point and one decision per line, so a diff of a golden file reads like a table."""
    out = ["{"]
    out += [f" {json.dumps(k)}: {json.dumps(case[k])}," for k in ("description", "tz", "now")]
    out.append(f' "retention": {json.dumps(case["retention"])},')
    for key in ("points", "expected"):
        if not case[key]:
            out.append(f' "{key}": [],')
            continue
        out.append(f' "{key}": [')
        out += [f"  {json.dumps(item)}," for item in case[key]]
        out[-1] = out[-1].rstrip(",")
        out.append(" ],")
    out[-1] = out[-1].rstrip(",")
    return "\n".join([*out, "}"]) + "\n"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    decisions = apply_retention(
        _points(case),
        Retention(**case["retention"]),
        datetime.fromisoformat(case["now"]),
        ZoneInfo(case["tz"]),
    )
    got = [{"id": d.point_id, "keep": d.keep, "reasons": list(d.reasons)} for d in decisions]
    if os.environ.get("VMVAULT_UPDATE_GOLDEN"):  # rewriting is not passing: review the diff
        path.write_text(_dump(case | {"expected": got}))
        pytest.skip(f"{path.name} rewritten from the code (VMVAULT_UPDATE_GOLDEN)")
    assert got == case["expected"]


def test_golden_files_are_in_canonical_form() -> None:
    assert len(CASES) >= 8
    for path in CASES:
        assert path.read_text() == _dump(json.loads(path.read_text())), path.name


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "detail"),
    [
        ({}, "it would keep no point at all"),
        ({"daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}, "no point at all"),
        ({"daily": -1, "weekly": 4}, "daily cannot be negative"),
        ({"yearly": 10_000}, "yearly is above 9999"),
        ({"monthly": True}, "monthly must be a whole number"),
        ({"weekly": 2.5}, "weekly must be a whole number"),
    ],
)
def test_bad_retention_is_refused(counts: dict[str, Any], detail: str) -> None:
    with pytest.raises(InvalidRetention) as e:
        Retention(**counts)
    assert detail in e.value.text and e.value.kind == "usage"
    assert isinstance(e.value, InvalidInput)


def test_retention_text() -> None:
    r = Retention(daily=7, weekly=4, monthly=12)
    assert str(r) == "daily=7 weekly=4 monthly=12" and r.total == 23
    assert r.describe() == "7 daily, 4 weekly and 12 monthly points"
    assert Retention(yearly=1).describe() == "1 yearly point"


def test_buckets_are_local_and_iso() -> None:
    tz = ZoneInfo("America/New_York")
    t = datetime(2027, 1, 1, 3, tzinfo=UTC)  # 2026-12-31 22:00 in New York
    assert [bucket(lv, t, tz) for lv in ("daily", "weekly", "monthly", "yearly")] == [
        "2026-12-31",
        "2026-W53",
        "2026-12",
        "2026",
    ]
    assert bucket("weekly", t, ZoneInfo("UTC")) == "2026-W53"  # Friday 2027-01-01


def test_naive_datetimes_and_duplicate_ids_are_programming_errors() -> None:
    r = Retention(daily=1)
    with pytest.raises(ValueError, match="aware"):
        apply_retention([PointRef("a", datetime(2026, 1, 1))], r, NOW, ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="aware"):
        apply_retention([], r, datetime(2026, 1, 1), ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="unique"):
        apply_retention([PointRef("a", NOW), PointRef("a", NOW)], r, NOW, ZoneInfo("UTC"))


def test_decisions_follow_input_order_and_removed_points_say_why() -> None:
    pts = [PointRef("old", NOW - timedelta(days=3)), PointRef("new", NOW)]
    assert apply_retention(pts, Retention(daily=1), NOW, ZoneInfo("UTC")) == [
        Decision("old", False, (NOT_SELECTED,)),
        Decision("new", True, ("newest point", "daily 2026-11-20")),
    ]


# --- properties -------------------------------------------------------------------------------

ZONES = [ZoneInfo(z) for z in ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")]
START = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def point_sets(draw: st.DrawFn) -> list[PointRef]:
    # Offsets in minutes over ~3 years, clustered enough to share days and weeks.
    offsets = draw(st.lists(st.integers(0, 3 * 366 * 24 * 60), max_size=40, unique=True))
    points = []
    for i, minutes in enumerate(offsets):
        created = START + timedelta(minutes=minutes)
        until = draw(st.none() | st.integers(-400, 400).map(lambda d: NOW + timedelta(days=d)))
        points.append(PointRef(f"p{i:03d}", created, draw(st.booleans()), until))
    return points


# Retention refuses all-zero counts at construction; builds() would raise, so draw counts first.
retentions = (
    st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 4), st.integers(0, 3))
    .filter(any)
    .map(lambda c: Retention(*c))
)
zones = st.sampled_from(ZONES)


def _pinned(p: PointRef) -> bool:
    return p.protected or (p.keep_until is not None and p.keep_until > NOW)


def _kept(points: list[PointRef], r: Retention, tz: ZoneInfo) -> list[PointRef]:
    keep = {d.point_id for d in apply_retention(points, r, NOW, tz) if d.keep}
    return [p for p in points if p.id in keep]


@settings(max_examples=150, deadline=None)
@given(point_sets(), retentions, zones)
def test_retention_properties(points: list[PointRef], r: Retention, tz: ZoneInfo) -> None:
    decisions = apply_retention(points, r, NOW, tz)
    assert [d.point_id for d in decisions] == [p.id for p in points]
    by_id = {d.point_id: d for d in decisions}
    kept = _kept(points, r, tz)
    # pinned points are never removed
    assert all(by_id[p.id].keep for p in points if _pinned(p))
    # the newest point is always kept
    if points:
        newest = max(points, key=lambda p: (p.created_at, p.id))
        assert by_id[newest.id].keep and "newest point" in by_id[newest.id].reasons
    # at most daily+weekly+monthly+yearly unpinned points
    assert sum(1 for p in kept if not _pinned(p)) <= r.total
    # every decision says why
    assert all(d.reasons for d in decisions)
    assert all((d.reasons == (NOT_SELECTED,)) == (not d.keep) for d in decisions)
    # idempotent: retention applied to what it kept keeps it all
    assert all(d.keep for d in apply_retention(kept, r, NOW, tz))
    # the input order does not matter
    again = apply_retention(list(reversed(points)), r, NOW, tz)
    assert {d.point_id: d for d in again} == by_id


@settings(max_examples=100, deadline=None)
@given(point_sets(), retentions, zones, st.data())
def test_pinning_a_point_never_costs_another_its_place(
    points: list[PointRef], r: Retention, tz: ZoneInfo, data: st.DataObject
) -> None:
    if not points:
        return
    i = data.draw(st.integers(0, len(points) - 1))
    pinned = [*points[:i], PointRef(points[i].id, points[i].created_at, True), *points[i + 1 :]]
    before = {p.id for p in _kept(points, r, tz)}
    after = {p.id for p in _kept(pinned, r, tz)}
    assert before <= after


@settings(max_examples=100, deadline=None)
@given(point_sets(), retentions, zones)
def test_more_retention_never_keeps_less(
    points: list[PointRef], r: Retention, tz: ZoneInfo
) -> None:
    more = Retention(r.daily + 1, r.weekly, r.monthly + 1, r.yearly)
    assert {p.id for p in _kept(points, r, tz)} <= {p.id for p in _kept(points, more, tz)}
