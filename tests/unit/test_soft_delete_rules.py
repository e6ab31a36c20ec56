"""The pure rules of soft delete (domain/soft_delete.py): when a soft-deleted holding may be
purged, when its period has ended, which setting changes are allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmvault.domain.errors import InvalidInput, SoftDeleteAlwaysOn, SoftDeleteExpired
from vmvault.domain.soft_delete import (
    DEFAULT_DAYS,
    MAX_DAYS,
    MIN_DAYS,
    SoftDelete,
    SoftDeleteMode,
    change,
    check_undelete,
    deletion,
    parse_mode,
    validate_days,
)

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
days = st.integers(MIN_DAYS, MAX_DAYS)
modes = st.sampled_from(SoftDeleteMode)


def test_defaults_are_on_for_fourteen_days() -> None:
    assert SoftDelete() == SoftDelete(SoftDeleteMode.ON, DEFAULT_DAYS) and DEFAULT_DAYS == 14
    assert SoftDelete().enabled and SoftDelete(SoftDeleteMode.ALWAYS).enabled
    assert not SoftDelete(SoftDeleteMode.OFF).enabled


@given(times, days)
def test_purge_after_is_the_period_after_the_deletion(now: datetime, n: int) -> None:
    gone = deletion(SoftDelete(SoftDeleteMode.ON, n), now)
    assert gone.deleted_at == now and gone.purge_after - now == timedelta(days=n)
    assert not gone.expired(now)
    assert not gone.expired(gone.purge_after - timedelta(microseconds=1))
    assert gone.expired(gone.purge_after) and gone.expired(gone.purge_after + timedelta(days=1))


@given(times, days, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9000)))
def test_undelete_is_allowed_exactly_until_the_period_ends(
    now: datetime, n: int, later: timedelta
) -> None:
    gone = deletion(SoftDelete(days=n), now)
    at = now + later
    if at < gone.purge_after:
        check_undelete("p", "main", gone, at)
    else:
        with pytest.raises(SoftDeleteExpired) as err:
            check_undelete("p", "main", gone, at)
        assert err.value.code == "SOFT_DELETE_EXPIRED"


@given(st.integers(-10_000, 10_000))
def test_days_between_the_minimum_and_the_maximum(n: int) -> None:
    if MIN_DAYS <= n <= MAX_DAYS:
        assert validate_days(n) == n
    else:
        with pytest.raises(InvalidInput):
            validate_days(n)


@given(modes, days, st.none() | modes, st.none() | days)
def test_always_is_a_one_way_door(
    mode: SoftDeleteMode, n: int, new_mode: SoftDeleteMode | None, new_days: int | None
) -> None:
    current = SoftDelete(mode, n)
    if mode is SoftDeleteMode.ALWAYS and new_mode not in (None, SoftDeleteMode.ALWAYS):
        with pytest.raises(SoftDeleteAlwaysOn) as err:
            change("main", current, new_mode, new_days)
        assert err.value.code == "SOFT_DELETE_ALWAYS_ON"
        return
    after = change("main", current, new_mode, new_days)
    assert after.mode is (new_mode or mode)
    assert after.days == (n if new_days is None else new_days)


def test_out_of_range_days_are_refused_before_the_mode_changes() -> None:
    with pytest.raises(InvalidInput):
        change("main", SoftDelete(), SoftDeleteMode.OFF, 0)
    with pytest.raises(InvalidInput):
        change("main", SoftDelete(), None, MAX_DAYS + 1)


@pytest.mark.parametrize("text", ["on", "OFF", " always "])
def test_modes_parse(text: str) -> None:
    assert parse_mode(text).value == text.strip().lower()


@pytest.mark.parametrize("text", ["", "yes", "true", "always-on"])
def test_unknown_modes_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_mode(text)
