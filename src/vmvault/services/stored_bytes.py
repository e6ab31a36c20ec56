"""A vault's stored bytes — what its chunk objects take — measured by walking them through the
storage contract (a ``LIST`` of every chunk object on S3, a ``stat`` of every chunk file on a
file system) and kept per process: the dashboard asks for them at every view and ``/metrics``
at every scrape, and a large vault's walk takes seconds (a thousand keys per S3 request).

Whether a kept figure may still be used is decided with the catalog, so that it holds across
processes and nodes: each figure keeps the vault's newest job end at its walk
(``SqlJobs.last_ended``: one index lookup, migration 0021, asked before each walk and when a
figure past its fresh age is to be used) — backups, copies, GC, purges and
heals all run as jobs of the vault, wherever they run. A figure is used

* whatever happened since, while younger than ``fresh_for`` seconds (the dashboard 15 s,
  ``/metrics`` 300 s): a backup window ending a job every second does not walk the vault at
  every view;
* while no job of the vault has ended since its walk, up to ``reuse_for`` seconds (the
  dashboard 60 s: a backup in progress writes chunks before its job ends; ``/metrics`` 300 s);

and otherwise the vault is walked again. One walk of a vault at a time in a process: a request
that finds a walk under way waits for its figure. One store per process (:data:`STORED`),
whichever worker's services ask (``vmvault serve`` runs its workers and the API in one
process). Kept by the vault's name, catalog id, path and creation time: a vault deleted and
created again is another. A figure says when it was measured (the dashboard's
``storage.used_bytes_at``). A failed walk is not kept (the caller gets the error; ``/metrics``
remembers failures itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

#: The dashboard's ages (seconds): a figure is used whatever happened while younger than the
#: first, and while no job of the vault ended since its walk up to the second.
DASHBOARD_FRESH, DASHBOARD_REUSE = 15.0, 60.0

Key = tuple[str, int, str, str]


@dataclass(frozen=True)
class Measured:
    """A vault's stored bytes and when they were measured."""

    bytes: int
    at: datetime
    #: ``time.monotonic()`` when the walk began: its age
    taken: float
    #: the vault's newest job end when the walk began
    last_ended: datetime | None


class StoredBytes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Key, Measured] = {}
        self._walks: dict[Key, threading.Lock] = {}

    def get(
        self,
        key: Key,
        last_ended: Callable[[], datetime | None],
        fresh_for: float,
        reuse_for: float,
        measure: Callable[[], int],
        clock: Callable[[], datetime],
    ) -> Measured:
        """The figure of vault ``key`` (name, id, path, creation) if it may be used (the
        module's rules; ``last_ended()``: the vault's newest job end now, asked of the catalog
        only when a figure's age or a walk needs it, once), else ``measure()``, kept."""
        last_ended = cache(last_ended)
        kept = self._usable(key, last_ended, fresh_for, reuse_for)
        if kept is not None:
            return kept
        with self._lock:
            walk = self._walks.setdefault(key, threading.Lock())
        with walk:
            kept = self._usable(key, last_ended, fresh_for, reuse_for)
            if kept is not None:
                return kept  # another request walked meanwhile
            ended = last_ended()  # before the walk: a job ending during it is seen next time
            taken = time.monotonic()
            fresh = Measured(measure(), clock(), taken, ended)
            with self._lock:
                self._kept[key] = fresh
            return fresh

    def _usable(
        self,
        key: Key,
        last_ended: Callable[[], datetime | None],
        fresh_for: float,
        reuse_for: float,
    ) -> Measured | None:
        with self._lock:
            kept = self._kept.get(key)
        if kept is None:
            return None
        age = time.monotonic() - kept.taken
        if age < fresh_for or (age < reuse_for and kept.last_ended == last_ended()):
            return kept
        return None


#: This process's figures.
STORED = StoredBytes()
