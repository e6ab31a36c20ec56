"""Locks and the writer registry on S3, as **lease objects** under ``<prefix>locks/``.

There is no flock on object storage.  A hold is an object whose ``LastModified`` a
background thread of the holder refreshes (``CopyObject`` onto itself) every ``renew``
seconds; the hold is *expired* once the server's clock is past ``LastModified + lease + 1``
(``LastModified`` has whole seconds).  Whoever finds an expired lease in a listing ignores
and deletes it: a dead holder's hold ends within one lease.  Every lease key ends with its
own length (``<uuid>-<milliseconds>``), so a listing alone tells live from expired, whatever
lease length the reader itself uses.

``locks/<name>/exclusive/<lease>``, ``locks/<name>/shared/<lease>``
    *Exclusive*: PUT ours, then list ``exclusive/``: another live one → delete ours, wait,
    try again.  Else wait until ``shared/`` holds no live lease (ours keeps new shared holds
    out meanwhile), then hold; after ``exclusive_wait`` (30 s) of waiting, delete ours, let
    the readers in for 1-2 × ``exclusive_wait`` and try again.  *Shared*: PUT ours, then
    list ``exclusive/``: a live one → delete ours, wait, try again; else hold.  With strongly consistent listings (S3 and RGW
    are), of two requests that each PUT then LIST, at least one sees the other's PUT: two
    exclusive holds, or an exclusive and a shared one, never both proceed.
    The shared holds of one backend share one lease per lock name (counted; deleted one
    second after the last hold ends, or at once when this backend wants the lock exclusive
    or the process exits — an exit hook, :func:`_release_at_exit`),
    so a backup's per-chunk holds cost no requests while a lease is up; a new hold more than
    ``recheck`` (2 s) after the last listing of ``exclusive/`` lists it again, and a waiting
    exclusive request closes the shared lease to new holds (it ends with its last hold), so
    that a GC gets in past a backup (docs/vault-format.md §8, fairness).
``locks/writers/<lease>``
    JSON ``{"name", "pid", "started_at"}``; ``started_at`` is ``floor(now())`` before the
    PUT, on the server's clock, which never runs ahead of the server, so it is at or before
    every ``LastModified`` the writer causes afterwards.

**A holder never acts on a lease it cannot prove alive.**  Each lease records when its last
renewal was *sent* (monotonic ``t``); the server's copy then lives at least until its
server time at ``t`` plus the lease, so the holder trusts it until ``t + lease − margin``,
``margin = connect + read timeout + 1 s``, and every change is checked at its sending (the
client's ``before-send`` hook): a change sent in trust is applied within one request lifetime, before
anyone may judge the lease expired.
A renewal whose answer arrives after that, or that finds the object gone, marks it lost,
and the backend then refuses every change (:class:`~vmvault.storage.errors.LeaseLost`):
a process cut off (or stopped) for longer than its lease cannot resume writing as if it
had been protected all along.  Clock assumptions: the server's clock is monotonic and one
clock (one gateway, or gateways kept in sync to well under a second); the client's and the
server's clocks *tick* at the same rate to within ``margin`` over one lease (true of any
NTP-disciplined or free-running quartz clock: ppm); their *offset* does not matter (only
the server's clock is compared with server times, see :class:`ServerClock`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from vmvault.storage.backend import WriterInfo
from vmvault.storage.errors import (
    InvalidKey,
    LeaseLost,
    LockTimeout,
    ObjectMissing,
    StorageError,
)

if TYPE_CHECKING:
    from vmvault.storage.s3_session import S3Session

LOCKS = "locks/"
WRITERS = LOCKS + "writers/"
_LINGER = 1.0  # a shared lease outlives its last hold by this long (s)
_POLL_FIRST, _POLL_MAX = 0.05, 1.0
#: How long an exclusive request keeps its lease out waiting for shared holders (s).
EXCLUSIVE_WAIT = 30.0
#: A reused shared lease lists ``exclusive/`` again when a new hold is asked this long after
#: its last listing (s); at most a quarter of ``exclusive_wait``.
_RECHECK = 2.0
#: Requests that change objects: each is sent only while every held lease is trusted.
_CHANGES = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")
#: At exit, idle shared leases are deleted at once (not _LINGER s later), waiting this long
#: at most (a lease not deleted in time expires by itself).
_EXIT_WAIT = 1.0


@dataclass
class Lease:
    key: str  # the vault-relative key, under locks/
    seconds: float
    margin: float  # trusted until the last renewal's sending + seconds - margin
    valid_until: float = 0.0  # monotonic
    lost: bool = False
    shared: bool = False
    holds: int = 0  # shared leases: holds sharing it
    idle_since: float | None = None
    checked: float = field(default_factory=time.monotonic)  # shared: exclusive/ last listed
    closing: bool = False  # shared: an exclusive request was seen; no new holds
    ended: bool = False  # deleted (or being deleted): never renewed again
    # A renewal (CopyObject onto itself) and the deletion never overlap: a copy in flight
    # across the DELETE would bring the object back, untracked, for a whole lease.
    request_mu: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def alive(self) -> bool:
        return not self.lost and time.monotonic() < self.valid_until


def _lease_name(seconds: float) -> str:
    return f"{uuid.uuid4().hex}-{round(seconds * 1000)}"


def _lease_seconds(key: str) -> float | None:
    _, _, ms = key.rpartition("-")
    return int(ms) / 1000 if ms.isdigit() else None


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or len(name) > 64 or name == "writers":
        raise InvalidKey(f"lock name {name!r}", key=name)
    return name


class Leases:
    """The lease objects of one S3 backend and the thread that renews them."""

    def __init__(
        self,
        session: S3Session,
        lease: float,
        renew: float,
        *,
        exclusive_wait: float = EXCLUSIVE_WAIT,
    ) -> None:
        # A request sent while the lease is trusted is applied within one request lifetime.
        self.margin = session.request_seconds + 1.0
        if not 0 < renew < lease - self.margin:
            raise ValueError(
                f"a lease of {lease}s renewed every {renew}s: it must outlast a renewal period "
                f"plus the margin of {self.margin}s (connect + read timeout + 1 s)"
            )
        if exclusive_wait <= 0:
            raise ValueError("an exclusive request waits for shared holders a while")
        self.session = session
        self.lease = lease
        self.renew = renew
        self.exclusive_wait = exclusive_wait
        self.recheck = min(_RECHECK, exclusive_wait / 4)
        self._mu = threading.Lock()
        self._held: dict[str, Lease] = {}
        self._shared: dict[str, Lease] = {}  # lock name -> the shared lease of this backend
        self._wake = threading.Condition(self._mu)
        self._keeper: threading.Thread | None = None
        for op in _CHANGES:
            session.client.hooks.register(f"before-send.{op}", self._before_change)
        _ALL.add(self)

    def _before_change(self, request: Any = None, **_: Any) -> None:
        """Refuse to send a change (every attempt of it) once a held lease is not trusted;
        the lease objects themselves (under ``locks/``) are exempt."""
        url = getattr(request, "url", None)
        if url is not None:
            path = unquote(urlsplit(url).path)
            if path.startswith(f"/{self.session.bucket}/{self.session.full(LOCKS)}"):
                return
        self.check()

    # --- the lease objects ---------------------------------------------------------------------

    def _create(self, key: str, body: bytes = b"", *, shared: bool = False) -> Lease:
        sent = time.monotonic()
        self.session.call("PutObject", key, retried=True, Body=body)
        lease = Lease(key, self.lease, self.margin, shared=shared)
        lease.valid_until = sent + lease.seconds - lease.margin
        with self._mu:
            self._held[key] = lease
            self._start_keeper()
        return lease

    def _drop(self, lease: Lease) -> None:
        with self._mu:
            self._held.pop(lease.key, None)
        with lease.request_mu:
            if lease.ended:
                return
            lease.ended = True
            with contextlib.suppress(StorageError):  # it expires by itself if this fails
                self.session.call("DeleteObject", lease.key, retried=True)

    def _live(self, prefix: str) -> list[tuple[str, float]]:
        """The live leases under ``prefix`` (key, LastModified); expired ones are deleted."""
        now = self.session.clock.now()
        live: list[tuple[str, float]] = []
        for page in self.session.pages(prefix, retried=True):
            for obj in page:
                key = obj["Key"][len(self.session.prefix) :]
                seconds = _lease_seconds(key)
                mtime = obj["LastModified"].timestamp()
                if seconds is not None and now > mtime + seconds + 1.0:
                    with contextlib.suppress(StorageError):
                        self.session.call("DeleteObject", key, retried=True)
                    continue
                live.append((key, mtime))
        return live

    def check(self) -> None:
        """:class:`LeaseLost` if a lease held now cannot be trusted any more."""
        with self._mu:
            lost = [
                lease.key
                for lease in self._held.values()
                if not lease.alive() and (lease.holds or not lease.shared)
            ]
        if lost:
            raise LeaseLost(
                f"the lease {lost[0]} at {self.session.location} lapsed (the storage was "
                "unreachable for longer than a lease): refusing to change anything",
                location=self.session.location,
            )

    # --- locks -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, *, exclusive: bool, timeout: float | None) -> Iterator[None]:
        _check_name(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        if exclusive:
            self._drop_idle_shared(name)
            lease = self._acquire_exclusive(name, deadline)
            try:
                yield
            finally:
                self._drop(lease)
        else:
            lease = self._acquire_shared(name, deadline)
            try:
                yield
            finally:
                with self._mu:
                    lease.holds -= 1
                    ended = lease.holds == 0 and lease.closing
                    if lease.holds == 0:
                        lease.idle_since = time.monotonic()
                        self._wake.notify_all()
                if ended:
                    self._drop(lease)  # an exclusive request waits for it: no lingering

    def _wait(self, deadline: float | None, delay: float) -> float:
        """Sleep before the next try; LockTimeout once the deadline has passed."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"lock not granted in time at {self.session.location}",
                    location=self.session.location,
                )
            delay = min(delay, left)
        time.sleep(delay * random.uniform(0.75, 1.0))
        return min(delay * 1.5, _POLL_MAX)

    def _acquire_exclusive(self, name: str, deadline: float | None) -> Lease:
        """Put ours; another exclusive one live: take ours back and try again.  Else wait up
        to ``exclusive_wait`` for ``shared/`` to drain (ours keeps new shared holds out
        meanwhile); still held: take ours back, let the readers in for one to two
        ``exclusive_wait`` (jittered), and try again, until ``deadline``."""
        base = f"{LOCKS}{name}/"
        delay = _POLL_FIRST
        while True:
            lease = self._create(base + "exclusive/" + _lease_name(self.lease))
            try:
                others = [k for k, _ in self._live(base + "exclusive/") if k != lease.key]
                if not others and self._drained(base + "shared/", deadline):
                    return lease
            except BaseException:
                self._drop(lease)
                raise
            self._drop(lease)
            if others:
                delay = self._wait(deadline, delay)
            else:
                self._wait(deadline, self.exclusive_wait * random.uniform(1.0, 2.0))

    def _drained(self, prefix: str, deadline: float | None) -> bool:
        """True once ``prefix`` holds no live lease; False after ``exclusive_wait``."""
        give_up = time.monotonic() + self.exclusive_wait
        delay = _POLL_FIRST
        while self._live(prefix):
            if time.monotonic() >= give_up:
                return False
            delay = self._wait(deadline, min(delay, max(give_up - time.monotonic(), 0.01)))
        return True

    def _acquire_shared(self, name: str, deadline: float | None) -> Lease:
        """Reuse this backend's shared lease (listing ``exclusive/`` again when the last
        listing is older than ``recheck``: an exclusive request closes it to new holds); else
        put one, then list ``exclusive/``: a live one → take ours back, wait, try again (listing
        first from then on, so that the waiting exclusive request does not see ours come and
        go)."""
        base = f"{LOCKS}{name}/"
        delay = _POLL_FIRST
        retrying = False  # once blocked, list before putting: a waiting GC sees no churn
        while True:
            with self._mu:
                mine = self._shared.get(name)
                if mine is not None and not mine.alive():
                    mine = None
                if mine is not None and time.monotonic() - mine.checked < self.recheck:
                    mine.holds += 1
                    mine.idle_since = None
                    return mine
            if mine is not None:
                listed = time.monotonic()
                if not self._live(base + "exclusive/"):
                    with self._mu:
                        if self._shared.get(name) is mine and mine.alive():
                            mine.checked = listed
                            mine.holds += 1
                            mine.idle_since = None
                            return mine
                    continue
                self._close_shared(name, mine)
            elif retrying and self._live(base + "exclusive/"):
                delay = self._wait(deadline, delay)  # still there: no lease put for nothing
                continue
            retrying = True
            lease = self._create(base + "shared/" + _lease_name(self.lease), shared=True)
            try:
                blocked = bool(self._live(base + "exclusive/"))
            except BaseException:
                self._drop(lease)
                raise
            if not blocked:
                with self._mu:
                    current = self._shared.get(name)
                    if current is None or not current.alive():
                        lease.holds = 1
                        self._shared[name] = lease
                        return lease
                    current.holds += 1  # another thread got there first: share its lease
                    current.idle_since = None
                self._drop(lease)
                return current
            self._drop(lease)
            delay = self._wait(deadline, delay)

    def _close_shared(self, name: str, lease: Lease) -> None:
        """No new hold on ``lease`` (an exclusive request waits); it ends with its last hold."""
        with self._mu:
            if self._shared.get(name) is lease:
                del self._shared[name]
            lease.closing = True
            idle = lease.holds == 0
        if idle:
            self._drop(lease)

    def release_idle(self) -> None:
        """Delete now the shared leases no hold uses (instead of ``_LINGER`` s later)."""
        with self._mu:
            idle = [(name, lease) for name, lease in self._shared.items() if not lease.holds]
            for name, _ in idle:
                del self._shared[name]
        for _, lease in idle:
            self._drop(lease)

    def _drop_idle_shared(self, name: str) -> None:
        with self._mu:
            lease = self._shared.get(name)
            if lease is None or lease.holds:
                return
            del self._shared[name]
        self._drop(lease)

    # --- writers -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def register_writer(self, name: str) -> Iterator[WriterInfo]:
        started = math.floor(self.session.clock.now())
        body = json.dumps({"name": name, "pid": os.getpid(), "started_at": started}).encode()
        lease = self._create(WRITERS + _lease_name(self.lease), body)
        try:
            yield WriterInfo(name, os.getpid(), float(started), lease.key)
        finally:
            self._drop(lease)

    def live_writers(self) -> list[WriterInfo]:
        writers: list[WriterInfo] = []
        for key, _ in self._live(WRITERS):
            try:
                blob = self.session.get_bytes(key)
            except ObjectMissing:
                continue  # ended meanwhile
            try:
                doc = json.loads(blob)
                writers.append(
                    WriterInfo(str(doc["name"]), int(doc["pid"]), float(doc["started_at"]), key)
                )
            except (ValueError, KeyError, TypeError):
                continue  # not ours: an object someone else put under locks/writers/
        return writers

    # --- the keeper --------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(
                target=self._keep, name="vmvault-s3-leases", daemon=True
            )
            self._keeper.start()

    def _keep(self) -> None:
        """Renew every held lease each ``renew`` s; end shared leases idle for _LINGER s."""
        last_renewal = time.monotonic()
        while True:
            with self._mu:
                if not self._held:
                    self._keeper = None
                    return
                self._wake.wait(timeout=min(self.renew, _LINGER) / 2)
                now = time.monotonic()
                idle = [
                    (name, lease)
                    for name, lease in self._shared.items()
                    if lease.holds == 0
                    and lease.idle_since is not None
                    and now - lease.idle_since >= _LINGER
                ]
                for name, _ in idle:
                    del self._shared[name]
                due = now - last_renewal >= self.renew
                leases = list(self._held.values()) if due else []
            for _, lease in idle:
                self._drop(lease)
            if due:
                last_renewal = time.monotonic()
                for lease in leases:
                    self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        sent = time.monotonic()
        try:
            with lease.request_mu:
                if lease.lost or lease.ended:
                    return
                self.session.call(
                    "CopyObject",
                    lease.key,
                    CopySource={"Bucket": self.session.bucket, "Key": self.session.full(lease.key)},
                    MetadataDirective="REPLACE",
                )
        except ObjectMissing:
            lease.lost = True  # someone found it expired and deleted it
            return
        except StorageError:
            return  # try again next round; alive() ends trust at valid_until
        if time.monotonic() < lease.valid_until:
            lease.valid_until = max(lease.valid_until, sent + lease.seconds - lease.margin)
        else:
            lease.lost = True


_ALL: weakref.WeakSet[Leases] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    """The process ends: its idle shared leases go now, not one lease later (a GC would wait
    for them), within ``_EXIT_WAIT`` s — exit is not held up by a slow endpoint."""
    leases = list(_ALL)
    if not leases:
        return

    def release() -> None:
        for each in leases:
            each.release_idle()

    done = threading.Thread(target=release, name="vmvault-s3-exit", daemon=True)
    done.start()
    done.join(_EXIT_WAIT)
