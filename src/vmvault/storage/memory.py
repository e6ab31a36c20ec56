"""The in-memory backend: :class:`MemoryBackend` (unit tests, the fake composition root).

It keeps the contract (:mod:`vmvault.storage.backend`) with plain dictionaries under one
lock, so it is thread-safe and every operation is atomic.  What stands in for a process here
is a **thread**: a lock hold or a writer registration whose thread has ended without leaving
its ``with`` block is a dead holder's, released or reported dead as the contract requires.
Staged batch objects that are neither committed nor aborted are the in-flight debris that
:meth:`MemoryBackend.sweep_leftovers` removes.

For tests it adds what no real medium offers: an injectable ``clock``, :meth:`age` (make an
object look older) and :meth:`inject` (make the next calls of an operation fail).
"""

from __future__ import annotations

import functools
import itertools
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmvault.storage.backend import (
    Data,
    Guard,
    ObjectHold,
    ObjectInfo,
    StorageBackend,
    Usage,
    WriterInfo,
    check_key,
    parts_of,
    put_or_touch,
    usage_of,
)
from vmvault.storage.errors import (
    InvalidKey,
    LockTimeout,
    ObjectMissing,
    ObjectTooLarge,
    TransientStorageError,
)

_POLL = 0.02  # how often a waiting lock looks for holders that died
_ids = itertools.count(1)


@dataclass
class _Lock:
    cond: threading.Condition
    holders: dict[int, tuple[threading.Thread, bool]] = field(default_factory=dict)

    def grantable(self, exclusive: bool) -> bool:
        for token, (thread, _) in list(self.holders.items()):
            if not thread.is_alive():  # its holder died: the hold ends
                del self.holders[token]
        if exclusive:
            return not self.holders
        return not any(ex for _, ex in self.holders.values())


class MemoryBackend:
    """Objects in a dictionary (see the module docstring)."""

    def __init__(
        self,
        location: str = "memory:",
        clock: Callable[[], float] = time.time,
        *,
        remote: bool = False,
    ) -> None:
        self.location = location
        self.remote = remote  # True: callers treat it as object storage (tests of that path)
        self.holds: ObjectHold | None = None  # no medium to refuse a delete
        self.clock = clock
        self._mu = threading.Lock()
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._inflight: dict[int, tuple[str, float]] = {}  # staged batch objects
        self._locks: dict[str, _Lock] = {}
        self._writers: dict[str, tuple[WriterInfo, threading.Thread]] = {}
        self._faults: dict[str, list[BaseException]] = {}

    # --- test helpers ------------------------------------------------------------------------

    def inject(self, op: str, exc: BaseException | None = None, times: int = 1) -> None:
        """The next ``times`` calls of operation ``op`` (a method name) raise ``exc``
        (default: a :class:`TransientStorageError`) before doing anything."""
        error = exc or TransientStorageError(f"injected failure of {op}", location=self.location)
        with self._mu:
            self._faults.setdefault(op, []).extend([error] * times)

    def age(self, key: str, seconds: float) -> None:
        """Make ``key`` look last changed ``seconds`` earlier."""
        with self._mu:
            data, mtime = self._objects[key]
            self._objects[key] = (data, mtime - seconds)

    def _fault(self, op: str) -> None:
        if not self._faults:
            return
        with self._mu:
            queued = self._faults.get(op)
            error = queued.pop(0) if queued else None
        if error is not None:
            raise error

    def _missing(self, key: str) -> ObjectMissing:
        return ObjectMissing(f"no object {key}", key=key, location=self.location)

    # --- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Data) -> bool:
        self._fault("put")
        blob = b"".join(bytes(p) for p in parts_of(data))
        with self._mu:
            if check_key(key) in self._objects:
                return False
            self._objects[key] = (blob, self.clock())
            return True

    def publish(self, key: str, data: Data) -> None:
        self._fault("publish")
        blob = b"".join(bytes(p) for p in parts_of(data))
        with self._mu:
            self._objects[check_key(key)] = (blob, self.clock())

    def begin_batch(self, guard: Guard | None = None) -> MemoryBatch:
        return MemoryBatch(self, guard)

    def _stage(self, key: str) -> int:
        token = next(_ids)
        with self._mu:
            self._inflight[token] = (check_key(key), self.clock())
        return token

    def _unstage(self, tokens: list[int]) -> None:
        with self._mu:
            for token in tokens:
                self._inflight.pop(token, None)

    def get(self, key: str) -> bytes:
        self._fault("get")
        with self._mu:
            found = self._objects.get(check_key(key))
        if found is None:
            raise self._missing(key)
        return found[0]

    def get_into(self, key: str, buf: memoryview) -> int:
        self._fault("get_into")
        data = self.get(key)
        if len(data) > len(buf):
            raise ObjectTooLarge(
                f"{len(data)} bytes for a buffer of {len(buf)}", key=key, location=self.location
            )
        buf[: len(data)] = data
        return len(data)

    def stat(self, key: str) -> ObjectInfo:
        self._fault("stat")
        with self._mu:
            found = self._objects.get(check_key(key))
        if found is None:
            raise self._missing(key)
        return ObjectInfo(key, len(found[0]), found[1])

    def exists(self, key: str) -> bool:
        self._fault("exists")
        with self._mu:
            return check_key(key) in self._objects

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._fault("list_objects")
        with self._mu:
            found = [
                ObjectInfo(k, len(v[0]), v[1])
                for k, v in self._objects.items()
                if k[: len(prefix)] == prefix
            ]
        return iter(found)

    def delete(self, key: str, *, sync: bool = True) -> None:
        self._fault("delete")
        with self._mu:
            self._objects.pop(check_key(key), None)

    def delete_prefix(self, prefix: str) -> int:
        self._fault("delete_prefix")
        if not prefix.endswith("/"):
            raise InvalidKey("a prefix to delete names a directory: 'a/b/'", key=prefix)
        with self._mu:
            doomed = [k for k in self._objects if k.startswith(prefix)]
            for key in doomed:
                del self._objects[key]
        return len(doomed)

    def touch(self, key: str) -> bool:
        self._fault("touch")
        with self._mu:
            found = self._objects.get(check_key(key))
            if found is None:
                return False
            self._objects[key] = (found[0], self.clock())
            return True

    def usage(self, prefix: str = "") -> Usage:
        return usage_of(self.list_objects(prefix))

    def sweep_leftovers(self, older_than: float, *, dry_run: bool = False) -> int:
        with self._mu:
            old = [t for t, (_, mtime) in self._inflight.items() if mtime < older_than]
            if not dry_run:
                for token in old:
                    del self._inflight[token]
        return len(old)

    def now(self) -> float:
        return self.clock()

    def create_layout(self, prefixes: Sequence[str]) -> None:
        for prefix in prefixes:
            check_key(prefix.rstrip("/"))  # nothing to prepare, but the same rules

    # --- locks and writers -------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str, *, exclusive: bool, timeout: float | None) -> Iterator[None]:
        self._fault("lock")
        with self._mu:
            state = self._locks.setdefault(name, _Lock(threading.Condition(threading.Lock())))
        token = next(_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        with state.cond:
            while not state.grantable(exclusive):
                left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                if left <= 0:
                    raise LockTimeout(f"lock {name} is held", key=name, location=self.location)
                state.cond.wait(left)
            state.holders[token] = (threading.current_thread(), exclusive)
        try:
            yield
        finally:
            with state.cond:
                state.holders.pop(token, None)
                state.cond.notify_all()

    @contextmanager
    def register_writer(self, name: str) -> Iterator[WriterInfo]:
        self._fault("register_writer")
        ident = f"{name}.{next(_ids)}"
        with self._mu:
            info = WriterInfo(name, os.getpid(), self.clock(), ident)
            self._writers[ident] = (info, threading.current_thread())
        try:
            yield info
        finally:
            with self._mu:
                self._writers.pop(ident, None)

    def live_writers(self) -> list[WriterInfo]:
        self._fault("live_writers")
        with self._mu:
            for ident, (_, thread) in list(self._writers.items()):
                if not thread.is_alive():
                    del self._writers[ident]
            return sorted((info for info, _ in self._writers.values()), key=lambda i: i.ident)


class MemoryBatch:
    """Staged objects, put (if absent) together on commit."""

    def __init__(self, backend: MemoryBackend, guard: Guard | None) -> None:
        self._backend = backend
        self._guard = guard or nullcontext
        self._mu = threading.Lock()
        self._pending: dict[str, tuple[bytes, int]] = {}

    def add(self, key: str, data: Data) -> int:
        self._backend._fault("batch_add")
        blob = b"".join(bytes(p) for p in parts_of(data))
        token = self._backend._stage(key)
        with self._mu:
            old = self._pending.pop(key, None)
            self._pending[key] = (blob, token)
        if old is not None:
            self._backend._unstage([old[1]])
        return len(blob)

    def add_buffer(
        self, key: str, buf: mmap.mmap, size: int, *, release: Callable[[], None] | None = None
    ) -> int:
        try:
            with memoryview(buf) as view:
                return self.add(key, bytes(view[:size]))
        finally:
            if release is not None:
                release()

    def __len__(self) -> int:
        return len(self._pending)

    def commit(self) -> frozenset[str]:
        with self._mu:
            pending, self._pending = self._pending, {}
        present: set[str] = set()
        try:
            self._backend._fault("batch_commit")
            for key, (blob, _) in pending.items():
                put = functools.partial(self._backend.put, key, blob)
                touch = functools.partial(self._backend.touch, key)
                if not put_or_touch(put, touch, self._guard):
                    present.add(key)
        finally:
            self._backend._unstage([token for _, token in pending.values()])
        return frozenset(present)

    def abort(self) -> None:
        with self._mu:
            pending, self._pending = self._pending, {}
        self._backend._unstage([token for _, token in pending.values()])


if TYPE_CHECKING:  # mypy checks that the class keeps the contract
    _backend: StorageBackend = MemoryBackend()
