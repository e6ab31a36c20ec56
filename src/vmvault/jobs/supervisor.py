"""Supervision of the server's threads: a crash is logged, restarted, and never silent.

Each long-running loop of ``vmvault serve`` — the scheduler, every job worker — is a
:class:`Component` run by :meth:`Supervisor.run` in its own thread.  When an exception escapes
the loop (a bug, a catalog that cannot be read, a stored policy this version cannot parse):

1. it is logged with its traceback, and the component is ``restarting``: ``/api/v1/health``
   reports it down (503) until it runs again;
2. after a back-off (``backoff`` seconds, doubled at each crash within ``window``, at most
   ``max_backoff``) the loop is started again from scratch — it builds its services anew;
3. a crash beyond ``limit`` within ``window`` seconds is one too many: the component is
   ``failed`` and :attr:`Supervisor.on_give_up` is called — the server then stops and exits
   non-zero (``SERVER_COMPONENT_FAILED``), so that systemd or the operator sees it.

An *outage* is no crash: an exception that :attr:`Supervisor.outage` recognises (the server's:
the catalog could not be opened — PostgreSQL restarting or down) makes the component
``restarting`` as well, reported down, but it is restarted every ``outage_wait`` seconds for
as long as it lasts and never counted towards ``limit``: a catalog away for a minute must not
stop every node (only the loop's first failure, the one that met the outage mid-tick, counts).

A loop that *returns* while the server is not stopping counts as a crash too.  A loop proves
it is alive with :meth:`Component.beat`; a component given ``stale_after`` seconds is reported
down when its last beat (or its start) is older than that (a scheduler stuck in a tick).

The clock and the wait are injected: tests run :meth:`Supervisor.run` in their own thread with
a fake clock and see every back-off without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("vmvault.serve")


@dataclass(frozen=True)
class RestartPolicy:
    """How often a component may crash before the server gives up (see the module doc)."""

    backoff: float = 0.5
    max_backoff: float = 30.0
    limit: int = 5
    window: float = 300.0
    #: The wait before each restart during an outage (not counted as crashes).
    outage_wait: float = 2.0

    def delay(self, crashes: int) -> float:
        """The wait before the restart that follows the ``crashes``-th crash in the window."""
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, crashes - 1)))


@dataclass
class Component:
    """One supervised loop, its state and its history (read by the health report)."""

    name: str
    loop: Callable[[], None]
    #: Down when the last :meth:`beat` (or the start) is older than this many seconds.
    stale_after: float | None = None
    state: str = "starting"  # starting | running | restarting | stopped | failed
    restarts: int = 0
    crashes: deque[float] = field(default_factory=deque)  # monotonic times, within window
    last_error: str | None = None
    last_beat: datetime | None = None
    thread: threading.Thread | None = None
    _started: float = 0.0
    _beat: float | None = None
    _clock: Callable[[], float] = time.monotonic
    _wall: Callable[[], datetime] = lambda: datetime.now(UTC)

    def beat(self) -> None:
        """Called by the loop when it has done a round of its work (a tick, a poll)."""
        self._beat = self._clock()
        self.last_beat = self._wall()

    def problem(self) -> str | None:
        """Why the component is down now, or ``None`` when it is up."""
        if self.state != "running":
            return self.state + (f" after {self.last_error}" if self.last_error else "")
        if self.thread is not None and not self.thread.is_alive():
            return "its thread has ended"
        if self.stale_after is not None:
            since = self._beat if self._beat is not None else self._started
            idle = self._clock() - since
            if idle > self.stale_after:
                return f"no sign of life for {idle:.0f} s (more than {self.stale_after:.0f} s)"
        return None

    def report(self) -> dict[str, Any]:
        problem = self.problem()
        doc: dict[str, Any] = {"status": "down" if problem else "up", "state": self.state}
        if problem:
            doc["problem"] = problem
        if self.stale_after is not None:
            doc["last_beat"] = self.last_beat.isoformat() if self.last_beat else None
        doc["restarts"] = self.restarts
        doc["last_error"] = self.last_error
        return doc


class Supervisor:
    def __init__(
        self,
        stopping: threading.Event,
        policy: RestartPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: Callable[[float], object] | None = None,
    ) -> None:
        self.stopping = stopping
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.wall = wall
        self.wait = wait or stopping.wait
        self.components: dict[str, Component] = {}
        #: Called once, from the failed component's thread, when one crashed too often.
        self.on_give_up: Callable[[Component], None] = lambda _c: None
        #: Whether an exception is an outage, not a crash (see the module doc).
        self.outage: Callable[[BaseException], bool] = lambda _exc: False
        self.failed: Component | None = None

    def add(
        self, name: str, loop: Callable[[], None], stale_after: float | None = None
    ) -> Component:
        c = Component(name, loop, stale_after, _clock=self.clock, _wall=self.wall)
        self.components[name] = c
        return c

    def start(self) -> None:
        """Run every component in a daemon thread of its own."""
        for c in self.components.values():
            c.thread = threading.Thread(target=self.run, args=(c,), name=c.name, daemon=True)
            c.thread.start()

    def threads(self) -> list[threading.Thread]:
        return [c.thread for c in self.components.values() if c.thread is not None]

    def run(self, c: Component) -> None:
        """Run ``c``'s loop until the server stops, restarting it after each crash."""
        while not self.stopping.is_set():
            c.state, c._started, c._beat = "running", self.clock(), None
            try:
                c.loop()
                if self.stopping.is_set():
                    break
                raise RuntimeError("its loop returned while the server runs")
            except BaseException as exc:  # whatever escapes the loop is a crash
                if not self.stopping.is_set() and self.outage(exc):
                    self._outage(c, exc)
                    self.wait(self.policy.outage_wait)
                    continue
                if not self._crashed(c, exc):
                    return
            self.wait(self.policy.delay(len(c.crashes)))
            if not self.stopping.is_set():
                c.restarts += 1
                log.warning("%s: restarting (restart %d)", c.name, c.restarts)
        c.state = "stopped"

    def _outage(self, c: Component, exc: BaseException) -> None:
        c.last_error = f"{type(exc).__name__}: {exc}"
        c.state = "restarting"
        log.warning("%s: %s; trying again in %.1f s", c.name, c.last_error, self.policy.outage_wait)

    def _crashed(self, c: Component, exc: BaseException) -> bool:
        """Log and count a crash; False when it was one too many (the component failed)."""
        now = self.clock()
        c.crashes.append(now)
        while c.crashes and c.crashes[0] < now - self.policy.window:
            c.crashes.popleft()
        c.last_error = f"{type(exc).__name__}: {exc}"
        n, p = len(c.crashes), self.policy
        if self.stopping.is_set():
            log.error("%s crashed while the server was stopping", c.name, exc_info=exc)
            c.state = "stopped"
            return False
        if n > p.limit:
            log.critical(
                "%s crashed %d times within %.0f s: giving up, the server stops",
                c.name, n, p.window, exc_info=exc,
            )  # fmt: skip
            c.state = "failed"
            if self.failed is None:
                self.failed = c
                self.on_give_up(c)
            return False
        log.error(
            "%s crashed (%d of %d allowed within %.0f s); restarting in %.1f s",
            c.name, n, p.limit, p.window, p.delay(n), exc_info=exc,
        )  # fmt: skip
        c.state = "restarting"
        return True

    def health(self) -> dict[str, dict[str, Any]]:
        """Each component's report (``status`` ``up`` or ``down``, ``state``, ``problem``…)."""
        return {name: c.report() for name, c in self.components.items()}
