"""The vault's locks, on the storage contract's named locks and writer registry.

* lock ``vault`` – **shared** by readers (restore, verify) for their whole run and by writers
  around each "does this chunk exist? then touch it" step (microseconds) and around storing
  an incremental's reuse list and reading the GC epoch again (:mod:`.reuse`); **exclusive**
  by garbage collection during its sweep only (each hold starts by replacing the epoch).  So a sweep never deletes a chunk that a backup
  has just decided to reuse, and never runs under a restore.
* lock ``gc`` – exclusive, non-blocking: one garbage collection at a time.
* the **writer registry** – one registration per running backup, from before its first chunk
  to after its manifest, with its start time on the backend's clock.  Garbage collection never
  deletes an object changed after the oldest live writer started (see
  :mod:`vmvault.dataplane.gc`); a dead writer's registration is not live.

What a backend must guarantee for these (a hold ends when its holder dies; a registration is
visible before the writer stores anything) is the contract of
:class:`~vmvault.storage.backend.StorageBackend`; the local backend uses ``flock`` files
``locks/vault.lock``, ``locks/gc.lock`` and ``locks/writers/…``.  Here the data path only
names the locks and turns a timeout into ``VAULT_LOCKED``, naming what it waited for; a
storage failure while taking a lock or registering a writer (an S3 endpoint gone at the start
of a backup) becomes the error users see (``STORAGE_UNREACHABLE`` …), as on every chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from vmvault.dataplane.chunkstore import space_errors
from vmvault.domain.errors import VaultLocked
from vmvault.storage.backend import StorageBackend, WriterInfo
from vmvault.storage.errors import LockTimeout

VAULT_LOCK = "vault"
GC_LOCK = "gc"
#: How long a reader or writer waits for a garbage-collection sweep before ``VAULT_LOCKED``.
DEFAULT_WAIT = 600.0


@contextmanager
def held(
    backend: StorageBackend, name: str, *, exclusive: bool, timeout: float | None, holder: str
) -> Iterator[None]:
    """Hold lock ``name``; :class:`VaultLocked` naming ``holder`` (who we wait for) on timeout."""
    with ExitStack() as stack:
        try:
            with space_errors(backend.location):
                stack.enter_context(backend.lock(name, exclusive=exclusive, timeout=timeout))
        except LockTimeout:
            raise VaultLocked(path=backend.location, holder=holder) from None
        yield


class WriterRegistry:
    """The running backups of a vault."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    @contextmanager
    def register(self, name: str) -> Iterator[WriterInfo]:
        """Hold a registration for the duration of the ``with`` block."""
        with ExitStack() as stack:
            with space_errors(self._backend.location):
                info = stack.enter_context(self._backend.register_writer(name))
            yield info

    def live(self) -> list[WriterInfo]:
        """The writers still running (dead ones are removed)."""
        with space_errors(self._backend.location):
            return self._backend.live_writers()
