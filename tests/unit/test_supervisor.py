"""The supervisor of the server's threads, with a fake clock: crashes are logged with their
traceback and restarted after a growing back-off; one crash too many within the window gives
up (the server then exits non-zero); a loop that stops beating is reported down."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from vmvault.jobs.supervisor import Component, RestartPolicy, Supervisor


class FakeTime:
    """A monotonic clock that only moves when the supervisor waits (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def crashing(times: int, stop: threading.Event, then: Callable[[], None] | None = None):  # type: ignore[no-untyped-def]
    """A loop that raises ``times`` times, then runs ``then`` and stops the server."""
    calls = {"n": 0}

    def loop() -> None:
        calls["n"] += 1
        if calls["n"] <= times:
            raise RuntimeError(f"tick {calls['n']} failed")
        if then is not None:
            then()
        stop.set()

    return loop, calls


def make(policy: RestartPolicy | None = None) -> tuple[Supervisor, FakeTime, threading.Event]:
    t = FakeTime()
    stop = threading.Event()
    return Supervisor(stop, policy, clock=t, wait=t.wait), t, stop


def test_a_crash_is_logged_with_its_traceback_and_restarted_with_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, t, stop = make(RestartPolicy(backoff=0.5, max_backoff=30, limit=5, window=300))
    seen: list[dict[str, object]] = []
    loop, calls = crashing(3, stop, then=lambda: seen.append(sup.health()["scheduler"]))
    c = sup.add("scheduler", loop)
    given_up: list[Component] = []
    sup.on_give_up = given_up.append
    with caplog.at_level(logging.INFO, "vmvault.serve"):
        sup.run(c)
    assert calls["n"] == 4 and t.waits == [0.5, 1.0, 2.0]  # doubled at each crash
    assert c.restarts == 3 and c.state == "stopped" and not given_up
    # while it ran again it was up, and its history was kept
    assert seen == [
        {"status": "up", "state": "running", "restarts": 3, "last_error": "RuntimeError: tick 3 failed"}
    ]  # fmt: skip
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"scheduler crashed ({n} of 5 allowed within 300 s); restarting in {d} s"
        for n, d in ((1, 0.5), (2, 1.0), (3, 2.0))
    ]
    assert all(r.exc_info and "tick" in str(r.exc_info[1]) for r in errors)  # the traceback
    assert "Traceback" in caplog.text and "RuntimeError: tick 1 failed" in caplog.text


def test_one_crash_too_many_within_the_window_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    sup, t, stop = make(RestartPolicy(backoff=1, max_backoff=5, limit=4, window=60))
    loop, calls = crashing(100, stop)
    c = sup.add("worker-0", loop)
    given_up: list[Component] = []
    sup.on_give_up = given_up.append
    with caplog.at_level(logging.INFO, "vmvault.serve"):
        sup.run(c)  # returns: the supervisor does not loop forever
    assert calls["n"] == 5 and t.waits == [1, 2, 4, 5]  # capped at max_backoff
    assert given_up == [c] and sup.failed is c and c.state == "failed"
    assert c.problem() == "failed after RuntimeError: tick 5 failed"
    assert sup.health()["worker-0"]["status"] == "down"
    [critical] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical.getMessage() == (
        "worker-0 crashed 5 times within 60 s: giving up, the server stops"
    )
    assert critical.exc_info is not None


def test_crashes_spread_wider_than_the_window_never_give_up() -> None:
    sup, t, stop = make(RestartPolicy(backoff=1, limit=2, window=60))
    n = {"calls": 0}

    def loop() -> None:
        n["calls"] += 1
        if n["calls"] > 10:
            stop.set()
            return
        t.now += 100  # ran fine for 100 s, then crashed: older crashes leave the window
        raise OSError("database is locked")

    c = sup.add("scheduler", loop)
    sup.on_give_up = lambda _c: pytest.fail("gave up")
    sup.run(c)
    assert c.restarts == 10 and t.waits == [1] * 10 and len(c.crashes) == 1


def test_a_loop_that_returns_while_the_server_runs_is_a_crash() -> None:
    sup, t, _stop = make(RestartPolicy(backoff=1, limit=1, window=60))
    c = sup.add("worker-1", lambda: None)
    gave_up: list[Component] = []
    sup.on_give_up = gave_up.append
    sup.run(c)
    assert gave_up == [c] and t.waits == [1]
    assert c.last_error == "RuntimeError: its loop returned while the server runs"


def test_a_crash_while_the_server_stops_is_logged_but_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, t, stop = make()

    def loop() -> None:
        stop.set()
        raise RuntimeError("cut off while stopping")

    c = sup.add("worker-0", loop)
    with caplog.at_level(logging.INFO, "vmvault.serve"):
        sup.run(c)
    assert c.state == "stopped" and t.waits == [] and sup.failed is None
    assert "worker-0 crashed while the server was stopping" in caplog.text


def test_a_component_that_stops_beating_is_down_until_it_beats_again() -> None:
    sup, t, _stop = make()
    c = sup.add("scheduler", lambda: None, stale_after=90)
    c.state, c._started = "running", t.now
    assert c.problem() is None and c.report()["last_beat"] is None
    t.now += 91  # no first tick after 91 s
    assert c.problem() == "no sign of life for 91 s (more than 90 s)"
    c.beat()
    assert c.problem() is None and c.report()["last_beat"] is not None
    t.now += 89
    assert c.report()["status"] == "up"
    t.now += 2
    report = c.report()
    assert report["status"] == "down" and report["problem"].startswith("no sign of life")


def test_a_thread_that_ended_is_down() -> None:
    sup, _t, stop = make()
    c = sup.add("worker-0", lambda: stop.wait())
    sup.start()
    assert c.thread is not None and c.thread.is_alive()
    stop.set()
    c.thread.join(5)
    c.state = "running"  # as if it had died without the supervisor seeing it
    assert c.problem() == "its thread has ended"


def test_the_back_off_doubles_up_to_its_cap() -> None:
    p = RestartPolicy(backoff=0.5, max_backoff=30)
    assert [p.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_an_outage_is_waited_out_however_long_and_never_counted() -> None:
    """The catalog away (an exception the server calls an outage): restarted every
    ``outage_wait`` s, reported down meanwhile, and not counted — twenty outage failures in a
    row, far beyond ``limit``, do not give up; the one crash that met it does count."""
    stop, t = threading.Event(), FakeTime()
    waiting: list[str] = []  # the component's status during each wait

    def wait(seconds: float) -> None:
        waiting.append(sup.health()["scheduler"]["status"])
        t.wait(seconds)

    sup = Supervisor(stop, RestartPolicy(limit=2), clock=t, wait=wait)
    given_up: list[str] = []
    sup.on_give_up = lambda c: given_up.append(c.name)
    sup.outage = lambda exc: isinstance(exc, ConnectionError)
    calls = {"n": 0}

    def loop() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the tick met the restart")  # a crash: counted
        if calls["n"] <= 21:
            raise ConnectionError("the catalog could not be used")  # an outage
        stop.set()

    c = sup.add("scheduler", loop)
    sup.run(c)
    assert given_up == [] and calls["n"] == 22
    assert len(c.crashes) == 1
    assert t.waits == [0.5] + [2.0] * 20
    assert waiting == ["down"] * 21
    assert c.last_error == "ConnectionError: the catalog could not be used"
    assert c.state == "stopped"
