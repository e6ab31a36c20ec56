"""A vault's stored bytes — what its chunk objects take — measured by walking them through the
storage contract (a ``LIST`` of every chunk object on S3, a ``stat`` of every chunk file on a
file system) and kept per process: the dashboard asks for them at every view and ``/metrics``
at every scrape, and a large vault's walk takes seconds (a thousand keys per S3 request).

* A figure is reused for as long as its caller accepts (the dashboard :data:`DASHBOARD_AGE`,
  ``/metrics`` its ``STORED_BYTES_TTL``); older, the storage is walked again.
* It is forgotten when a job of the vault ends in this process (backups, copies, GC, purges
  and heals change the chunks: the composition root hooks :meth:`StoredBytes.forget` to the
  end of every job), so the server's own jobs show at once; a job run by another process (a
  CLI in the foreground, another node) shows within the age.
* One per process (:data:`STORED`), whichever worker's services ask: ``vmvault serve`` builds
  services per worker, and the API's and the workers' are not the same objects.  Kept by the
  vault's name, catalog id and path, so a vault deleted and created again is walked anew.
* A figure says when it was measured (the dashboard's ``storage.used_bytes_at``).
* A failed walk is not kept (the caller's error); ``/metrics`` remembers failures itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

#: Seconds the dashboard reuses a vault's stored bytes.
DASHBOARD_AGE = 60.0


@dataclass(frozen=True)
class Measured:
    """A vault's stored bytes and when they were measured."""

    bytes: int
    at: datetime
    #: ``time.monotonic()`` at the measure: its age
    taken: float


class StoredBytes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, int, str], Measured] = {}
        #: when each vault name was last forgotten: a walk begun before is not kept
        self._forgotten: dict[str, float] = {}

    def get(
        self,
        key: tuple[str, int, str],
        max_age: float,
        measure: Callable[[], int],
        clock: Callable[[], datetime],
    ) -> Measured:
        """The figure of vault ``key`` (name, id, path) if measured less than ``max_age``
        seconds ago (0: never reused), else ``measure()`` now, kept."""
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept.taken < max_age:
            return kept
        taken = time.monotonic()
        fresh = Measured(measure(), clock(), taken)
        with self._lock:
            current = self._kept.get(key)
            stale = self._forgotten.get(key[0], float("-inf")) >= taken
            if not stale and (current is None or current.taken < taken):
                self._kept[key] = fresh
        return fresh

    def forget(self, vault: str) -> None:
        """Forget every figure of the vault named ``vault``: its chunks changed."""
        with self._lock:
            self._forgotten[vault] = time.monotonic()
            for key in [k for k in self._kept if k[0] == vault]:
                del self._kept[key]


#: This process's figures.
STORED = StoredBytes()
