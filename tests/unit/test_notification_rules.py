"""The pure rules of notifications (domain/notification.py) and of the metrics' histogram
(domain/metrics.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmvault.domain.errors import InvalidInput
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.metrics import (
    WINDOW_BUCKETS,
    WINDOW_BUCKETS_MS,
    WindowTally,
    histogram,
    histogram_of,
)
from vmvault.domain.notification import (
    MAX_ATTEMPTS,
    SUBSCRIBABLE,
    Channel,
    Delivery,
    Event,
    Lateness,
    Target,
    after_failure,
    approval_message,
    check_address,
    job_events,
    job_message,
    overdue_key,
    overdue_message,
    parse_events,
    retry_delay,
    sample_message,
    shown_address,
    split_credentials,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def job(job_type: JobType, state: JobState, **kw: object) -> Job:
    return Job(
        id=7, type=job_type, vault="main", vm_uuid="u-1", vm_name="h/web", state=state,
        created_at=T0, started_at=T0, ended_at=T0 + timedelta(minutes=2), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@given(st.sampled_from(JobType), st.sampled_from(JobState))
def test_which_job_ends_notify(job_type: JobType, state: JobState) -> None:
    events = job_events(job(job_type, state))
    expected = {
        (JobType.BACKUP, JobState.FAILED): [Event.FAILED],
        (JobType.BACKUP, JobState.COMPLETED_WITH_WARNINGS): [Event.WARNINGS],
        (JobType.VERIFY, JobState.FAILED): [Event.VERIFY_FAILED],
    }.get((job_type, state), [])
    assert events == expected
    if state.active or state in (JobState.CANCELLED, JobState.COMPLETED):
        assert events == []  # a running, cancelled or clean job says nothing


def test_a_failed_backup_message_names_the_error_and_the_remedy() -> None:
    failed = job(
        JobType.BACKUP, JobState.FAILED, error_code="HOST_UNREACHABLE",
        message="cannot connect", remedy="Start libvirtd.",
    )  # fmt: skip
    m = job_message(Event.FAILED, failed)
    assert m.subject == "[vmvault] h/web: backup failed (job 7)"
    assert "error: HOST_UNREACHABLE: cannot connect" in m.text
    assert "remedy: Start libvirtd." in m.text
    assert m.doc["job"]["error"] == {
        "code": "HOST_UNREACHABLE", "message": "cannot connect", "remedy": "Start libvirtd."
    }  # fmt: skip
    assert m.key == "job:7:failed" and m.vault == "main" and m.event is Event.FAILED


def test_a_warnings_message_lists_the_warnings() -> None:
    warned = job(JobType.BACKUP, JobState.COMPLETED_WITH_WARNINGS, warnings=["a", "b"])
    m = job_message(Event.WARNINGS, warned)
    assert "warning: a\nwarning: b" in m.text and m.doc["job"]["warnings"] == ["a", "b"]
    assert m.doc["job"]["error"] is None


@given(st.integers(1, 200))
def test_retry_delays_grow_and_are_capped(attempts: int) -> None:
    d = retry_delay(attempts)
    assert timedelta(seconds=30) <= d <= timedelta(hours=1)
    assert retry_delay(attempts + 1) >= d
    if attempts < 7:
        assert d == timedelta(seconds=30 * 2 ** (attempts - 1))


def test_retry_delay_counts_failures() -> None:
    with pytest.raises(ValueError):
        retry_delay(0)


@given(st.integers(1, MAX_ATTEMPTS + 5), times)
def test_a_message_fails_for_good_after_max_attempts(attempts: int, now: datetime) -> None:
    state, nxt = after_failure(attempts, now, timedelta(seconds=30))
    if attempts >= MAX_ATTEMPTS:
        assert state is Delivery.FAILED
    else:
        assert state is Delivery.PENDING and nxt == now + retry_delay(attempts)


def late(since: datetime, vm: str = "u-1") -> Lateness:
    return Lateness("main", vm, "h/web", "nightly", since, "overdue since …")


@given(times, times, st.sampled_from(["u-1", "u-2"]), st.sampled_from(["u-1", "u-2"]))
def test_an_overdue_episode_is_the_vm_and_where_its_lateness_counts_from(
    a: datetime, b: datetime, vm_a: str, vm_b: str
) -> None:
    """Rechecking an episode finds its key again; a new last point (or another VM) is a new
    episode — whatever the detail text (which changes as time passes) says."""
    first, again = late(a, vm_a), late(a, vm_a)
    again = Lateness(
        again.vault, again.vm_uuid, again.vm_name, again.policy, again.since, "later text"
    )
    assert overdue_key(first) == overdue_key(again)
    same = a.replace(microsecond=0) == b.replace(microsecond=0) and vm_a == vm_b
    assert (overdue_key(late(a, vm_a)) == overdue_key(late(b, vm_b))) == same
    assert overdue_message(first).key == overdue_key(first)


def test_overdue_and_approval_messages() -> None:
    m = overdue_message(late(T0))
    assert m.event is Event.OVERDUE and m.doc["since"] == "2026-12-01T12:00:00+00:00"
    assert "backup overdue: h/web" in m.text
    a = approval_message("main", "r-1", "delete point p1", "carol")
    assert a.event is Event.APPROVAL and a.key == "approval:r-1" and "carol" in a.text


@given(st.sets(st.sampled_from(SUBSCRIBABLE), min_size=1))
def test_parse_events_round_trips_in_the_documented_order(events: set[Event]) -> None:
    text = ", ".join(e.value.upper() for e in events)
    parsed = parse_events(text)
    assert set(parsed) == events
    assert list(parsed) == [e for e in SUBSCRIBABLE if e in events]


@pytest.mark.parametrize("text", ["", ",", "failed,bogus", "test"])
def test_parse_events_refuses_unknown_events(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_events(text)


def test_all_events() -> None:
    assert parse_events("all") == SUBSCRIBABLE


@pytest.mark.parametrize(
    "channel, address, ok",
    [
        (Channel.WEBHOOK, "https://hooks.example.com/x?y=1", True),
        (Channel.WEBHOOK, "http://127.0.0.1:8080/", True),
        (Channel.WEBHOOK, "ftp://x", False),
        (Channel.WEBHOOK, "hooks.example.com", False),
        (Channel.WEBHOOK, "http://", False),
        (Channel.EMAIL, "ops@example.com", True),
        (Channel.EMAIL, "ops@example", False),
        (Channel.EMAIL, "a@b.example.com, c@d.example.com", False),
        (Channel.EMAIL, "ops@example.com\nBcc: x@y.example", False),
    ],
)
def test_check_address(channel: Channel, address: str, ok: bool) -> None:
    if ok:
        assert check_address(channel, f" {address} ") == address
    else:
        with pytest.raises(InvalidInput):
            check_address(channel, address)


def test_shown_address_hides_a_urls_credentials_path_and_query() -> None:
    assert shown_address("https://u:secret@h.example/p?q") == "https://h.example/…"
    assert shown_address("https://h.example/a@b") == "https://h.example/…"
    assert shown_address("https://hooks.slack.example/services/T0/B0/XYZ") == (
        "https://hooks.slack.example/…"
    )
    assert shown_address("http://h.example:8080?token=s") == "http://h.example:8080/…"
    assert shown_address("http://u:p@h.example:8080/") == "http://h.example:8080/"
    assert shown_address("ops@example.com") == "ops@example.com"


def test_split_credentials_takes_the_userinfo_out_of_a_url() -> None:
    assert split_credentials("http://u:p%40ss@h.example:81/a@b?x") == (
        "http://h.example:81/a@b?x",
        "u:p%40ss",
    )
    assert split_credentials("https://h.example/a@b") == ("https://h.example/a@b", None)
    assert split_credentials("ops@example.com") == ("ops@example.com", None)


def test_a_refused_webhook_url_is_not_echoed() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_address(Channel.WEBHOOK, "ftp://u:secret@h.example/token")
    assert "secret" not in str(refused.value) and "token" not in str(refused.value)


def test_a_target_wants_its_events_and_tests() -> None:
    t = Target(1, "main", Channel.EMAIL, "a@b.example", (Event.FAILED,), T0)
    assert t.wants(Event.FAILED) and t.wants(Event.TEST) and not t.wants(Event.OVERDUE)
    assert sample_message(t, T0).event is Event.TEST


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=50))
def test_histogram_is_cumulative_and_counts_every_value(values: list[float]) -> None:
    h = histogram(values)
    assert [b for b, _ in h.buckets] == [*WINDOW_BUCKETS, math.inf]
    counts = [n for _, n in h.buckets]
    assert counts == sorted(counts) and counts[-1] == h.count == len(values)
    for bound, n in h.buckets:
        assert n == sum(1 for v in values if v <= bound)
    assert h.total == pytest.approx(sum(values))


near_bounds = st.sampled_from([b + d for b in WINDOW_BUCKETS_MS for d in (-1, 0, 1)])


@given(st.lists(st.one_of(near_bounds, st.integers(0, 100_000)), max_size=50))
def test_a_tally_in_milliseconds_is_the_histogram_of_the_windows(windows_ms: list[int]) -> None:
    """What the database tallies (persistence/held.py: windows in ms against the bounds in
    ms, ``ms <= bound``) is the histogram of the same windows in seconds."""
    some = [ms for ms in windows_ms if ms > 0]
    at_most = tuple(sum(1 for ms in some if ms <= bound) for bound in WINDOW_BUCKETS_MS)
    tallied = histogram_of(WindowTally(at_most, len(some), sum(some)))
    whole = histogram(ms / 1000 for ms in some)
    assert (tallied.buckets, tallied.count) == (whole.buckets, whole.count)
    assert tallied.total == pytest.approx(whole.total)
