"""Reuse lists and the GC epoch: an incremental's reused chunks kept for O(1) requests.

An incremental backup takes most of its chunk ids from the parent point's index without
reading them.  It must keep a concurrent garbage collection from deleting those chunks
(the parent may be deleted meanwhile).  The per-chunk way is to *touch* each one (a
``CopyObject`` per chunk on object storage).  This module does it with two objects::

    gc-epoch               16 random bytes, replaced by GC at the start of each delete step
    reuse/<32 hex>         a reuse list: the chunk ids (32 bytes each) a writer reuses

* **GC** (:mod:`vmvault.dataplane.gc`), each time it takes the exclusive vault lock to
  delete, first replaces ``gc-epoch`` (:meth:`ReuseLists.begin_delete_step`), then reads
  every reuse list and keeps every id in one.  A reuse list whose mtime is older than a
  GC's cutoff is removed by it (:meth:`ReuseLists.remove_older_than`).
* **A writer** reads ``gc-epoch`` (E1) *before* it reads the parent's manifest
  (:meth:`~vmvault.dataplane.vault.VaultStore.read_parent`).  Then, under one shared hold of
  the vault lock, it stores its reuse list and reads ``gc-epoch`` again (E2)
  (:meth:`ReuseLists.claim`).  E1 == E2: no delete step began in between, every one that
  begins later reads the list, and every chunk of the parent's index was present when it
  was read: nothing to touch.  Otherwise (or ``gc-epoch`` missing) the caller touches each
  chunk as before, reading again those found gone.

Why this loses nothing, case by case: ``docs/vault-format.md`` §8.  The list stays after the
writer ends (a GC whose mark ran before the new manifest existed still needs it); the first
GC whose cutoff is past its mtime removes it, which only happens once its writer ended
before that GC listed the writers, so that GC's mark sees the writer's manifest.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from vmvault.dataplane.chunk import ID_LEN
from vmvault.dataplane.chunkstore import retried, space_errors
from vmvault.storage.backend import StorageBackend
from vmvault.storage.errors import ObjectMissing, retry

EPOCH = "gc-epoch"
REUSE = "reuse"
_EPOCH_BYTES = 16


class ReuseLists:
    """The ``gc-epoch`` object and the ``reuse/`` lists of one vault.  Thread-safe.

    ``shared_lock`` is the vault lock's shared mode; GC calls its methods under the
    exclusive one."""

    def __init__(
        self, backend: StorageBackend, shared_lock: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.backend = backend
        self._shared_lock = shared_lock
        self._mu = threading.Lock()
        self._seen: dict[str, frozenset[bytes]] = {}  # GC's cache: a list never changes

    def epoch(self) -> bytes | None:
        """The current GC epoch; None when no GC has written one (nor the vault's creation)."""
        try:
            return retried(self.backend.location, lambda: self.backend.get(EPOCH))
        except ObjectMissing:
            return None

    def new_epoch(self) -> None:
        """Replace ``gc-epoch`` by new random bytes (a vault's creation, each delete step)."""
        data = os.urandom(_EPOCH_BYTES)
        retried(self.backend.location, lambda: self.backend.publish(EPOCH, data))

    def ensure_epoch(self) -> None:
        """GC: write an epoch into a vault made before epochs existed (safe at any time: a new
        epoch only sends running incrementals to the touch path)."""
        if self.epoch() is None:
            self.new_epoch()

    def claim(self, cids: Sequence[bytes], epoch: bytes | None) -> bool:
        """Store the reuse list of ``cids`` and read the epoch again, under one shared hold:
        True when it is still ``epoch`` (the ids need no touch), False otherwise (the caller
        touches them; the list stays, for a GC to remove)."""
        if epoch is None:
            return False
        key = f"{REUSE}/{uuid.uuid4().hex}"
        data = b"".join(cids)
        with space_errors(self.backend.location), self._shared_lock():
            retry(lambda: self.backend.publish(key, data))
            return self.epoch() == epoch

    def begin_delete_step(self, cutoff: float) -> frozenset[bytes]:
        """GC, first thing under each exclusive hold it deletes in: a new epoch, then the ids
        of every reuse list not older than its ``cutoff`` (to keep; an older one is not
        needed, see :meth:`remove_older_than`)."""
        self.new_epoch()
        keep: set[bytes] = set()
        listed = list(self.backend.list_objects(REUSE + "/"))
        with self._mu:  # forget lists another process's GC removed
            names = {info.key for info in listed}
            self._seen = {key: ids for key, ids in self._seen.items() if key in names}
        for info in listed:
            if info.mtime >= cutoff:
                keep |= self._ids(info.key)
        return frozenset(keep)

    def _ids(self, key: str) -> frozenset[bytes]:
        with self._mu:
            ids = self._seen.get(key)
        if ids is None:
            try:
                data = retry(lambda: self.backend.get(key))
            except ObjectMissing:  # removed by a GC since the listing: nobody needs it
                return frozenset()
            ids = frozenset(data[i : i + ID_LEN] for i in range(0, len(data), ID_LEN))
            with self._mu:
                self._seen[key] = ids
        return ids

    def remove_older_than(self, cutoff: float) -> int:
        """GC: delete the reuse lists whose mtime is before ``cutoff``; returns how many.

        Such a list's writer had ended (or died) before this GC listed the live writers: a
        list's mtime is at or after its writer's start, and the cutoff is at or before the
        start of every writer live then, minus the slack.  So the writer's manifest, if it
        was published and still exists, is in this GC's mark and every later one."""
        removed = 0
        for info in self.backend.list_objects(REUSE + "/"):
            if info.mtime < cutoff:
                self._delete(info.key)
                with self._mu:
                    self._seen.pop(info.key, None)
                removed += 1
        return removed

    def _delete(self, key: str) -> None:
        retry(lambda: self.backend.delete(key, sync=False))
