"""The bound on anonymous refusals in the audit log (domain/audit.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vmvault.domain.audit import AnonymousRefusals

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_a_window_counts_its_repeats_and_ends_after_a_minute() -> None:
    w = AnonymousRefusals()
    assert w.admit("10.0.0.1", 401, "POST /x", T0)
    assert not w.admit("10.0.0.1", 401, "POST /y", T0 + timedelta(seconds=59))
    assert w.admit("10.0.0.1", 404, "POST /y", T0)  # another status: its own window
    assert w.ended(T0 + timedelta(seconds=59)) == []
    [r] = w.ended(T0 + timedelta(seconds=60))
    assert (r.remote, r.status, r.action, r.more) == ("10.0.0.1", 401, "POST /x", 1)
    assert w.ended(T0 + timedelta(seconds=60)) == []  # reported once
    assert w.admit("10.0.0.1", 401, "POST /x", T0 + timedelta(seconds=61))


def test_the_open_windows_are_bounded() -> None:
    w = AnonymousRefusals(max_windows=2)
    admitted = [w.admit(f"10.0.0.{i}", 401, "POST /x", T0) for i in range(5)]
    assert admitted == [True, True, True, False, False]
    [shared] = w.ended(T0 + timedelta(minutes=1))
    assert shared.remote == "(many addresses)" and shared.more == 2
