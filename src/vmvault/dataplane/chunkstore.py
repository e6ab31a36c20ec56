"""The content-addressed chunk store: object ``chunks/<first byte hex>/<id hex>``.

Written through the storage contract (:class:`~vmvault.storage.backend.StorageBackend`).  A
chunk object is immutable once stored (put-if-absent); its *mtime* is the only thing that
changes: a writer that finds a chunk it needs already present *touches* it (under the shared
vault lock), which is what protects it from a garbage collection that runs at the same time
(see :mod:`vmvault.dataplane.gc`).

Chunks are written in **batches** (one per disk backup, :class:`ChunkBatch` over the
backend's :class:`~vmvault.storage.backend.WriteBatch`): :meth:`ChunkBatch.add_buffer` hands
the backend a chunk file laid out in an aligned buffer (the local backend writes it with
O_DIRECT, no page-cache copy), :meth:`ChunkBatch.commit` makes them all durable and only then
visible.  A chunk therefore never appears before its content is durable, and a later backup
can trust any chunk it finds present; a crash leaves only in-flight debris, which garbage
collection sweeps (``StorageBackend.sweep_leftovers``), or (object storage, where each chunk
is visible once its upload returns) whole chunks that nothing references, which it collects.

**Requests per chunk** (what object storage charges in latency): on a ``remote`` backend the
backup pipeline does not ask whether a new chunk is present; it compresses it and adds it to
the batch, whose conditional PUT answers the question (412: present) and then touches the
chunk (``CopyObject``) under the shared vault lock — so a new chunk costs one PUT, a chunk
already stored a PUT refused before its body is read and a touch.  On a local directory the
pipeline first touches (a ``utime``, µs) and skips the compression of a chunk found present.
The shared vault lock's lease is shared by all holds of the S3 backend's process, so it costs
no request per chunk.  The pipeline runs ``workers`` chunks at once, the batch
``S3Backend.uploads`` uploads, and :meth:`ChunkStore.touch_many` touches a reused
incremental's chunks concurrently — only when its reuse list cannot hold them
(:mod:`vmvault.dataplane.reuse`: a GC delete step began while it read its parent).

Every storage failure that is not about one chunk becomes a user's error here
(:func:`user_error`: ``VAULT_FULL``, ``STORAGE_UNREACHABLE``, ``STORAGE_ACCESS_DENIED`` …),
after :func:`~vmvault.storage.errors.retry` has retried the transient ones.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from vmvault.dataplane.chunk import ID_LEN, BytesLike
from vmvault.domain.errors import (
    ChunkCorrupt,
    ChunkMissing,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageCredentialsMissing,
    StorageUnreachable,
    VaultFull,
    VmvaultError,
)
from vmvault.storage.backend import ObjectInfo, StorageBackend, WriteBatch
from vmvault.storage.errors import (
    AccessDenied,
    BucketMissing,
    CredentialsUnavailable,
    LeaseLost,
    ObjectMissing,
    ObjectTooLarge,
    StorageError,
    StorageFull,
    TransientStorageError,
    retry,
)

T = TypeVar("T")

CHUNKS = "chunks"
#: Concurrent touches of :meth:`ChunkStore.touch_many` (requests, on object storage).
TOUCH_THREADS = 8
QUARANTINE_SUFFIX = ".bad"
_HEX = frozenset("0123456789abcdef")


def is_chunk_name(name: str) -> bool:
    return len(name) == 2 * ID_LEN and set(name) <= _HEX


def chunk_key(cid: bytes) -> str:
    hexid = cid.hex()
    return f"{CHUNKS}/{hexid[:2]}/{hexid}"


def user_error(exc: StorageError, location: str) -> VmvaultError | None:
    """The error a user sees for a storage failure that is not about one key (None: the
    caller decides): no space, credentials refused or missing, no bucket, no answer (a
    transient failure still there after the retries)."""
    why = str(exc)
    if isinstance(exc, StorageFull):
        return VaultFull(path=location)
    if isinstance(exc, AccessDenied):
        return StorageAccessDenied(path=location, why=why)
    if isinstance(exc, BucketMissing):
        return StorageBucketNotFound(path=location)
    if isinstance(exc, CredentialsUnavailable):
        return StorageCredentialsMissing(path=location, why=why)
    if isinstance(exc, TransientStorageError | LeaseLost):  # a lease lapses: no answer in time
        return StorageUnreachable(path=location, why=why)
    return None


@contextmanager
def space_errors(location: str) -> Iterator[None]:
    """Turn the storage failures of :func:`user_error` into the errors users see ("no space
    left" is :class:`VaultFull`, an endpoint that vanished ``STORAGE_UNREACHABLE`` …); the
    others (a missing object …) pass, for the caller to name."""
    try:
        yield
    except StorageError as exc:
        error = user_error(exc, location)
        if error is None:
            raise
        raise error from exc


def retried(location: str, call: Callable[[], T]) -> T:
    """``call()`` (one storage operation) retried after transient failures; what is left is
    a user's error (:func:`space_errors`).  The data path's one way to call its backend."""
    with space_errors(location):
        return retry(call)


class ChunkStore:
    """Chunk objects.  ``shared_lock`` is the vault lock's shared mode (a context factory)."""

    def __init__(
        self, backend: StorageBackend, shared_lock: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.backend = backend
        self._shared_lock = shared_lock

    key = staticmethod(chunk_key)

    def _call(self, call: Callable[[], T]) -> T:
        return retried(self.backend.location, call)

    def exists(self, cid: bytes) -> bool:
        return self._call(lambda: self.backend.exists(chunk_key(cid)))

    def touch(self, cid: bytes) -> bool:
        """Mark an existing chunk as just used; False when it is not in the store."""
        with space_errors(self.backend.location), self._shared_lock():
            return self.touch_unlocked(cid)

    def touch_unlocked(self, cid: bytes) -> bool:
        """:meth:`touch` for a caller that holds the shared vault lock."""
        return self._call(lambda: self.backend.touch(chunk_key(cid)))

    def touch_many(self, cids: Sequence[bytes], *, threads: int | None = None) -> list[bool]:
        """:meth:`touch` of many chunks under one shared hold, ``threads`` at a time (default:
        :data:`TOUCH_THREADS` on a remote backend, where each touch is a request; one on a
        local one, where a touch takes microseconds and a thread pool would cost more)."""
        if not cids:
            return []
        if threads is None:
            threads = TOUCH_THREADS if self.backend.remote else 1
        with space_errors(self.backend.location), self._shared_lock():
            if len(cids) == 1 or threads <= 1:
                return [self.touch_unlocked(cid) for cid in cids]
            with ThreadPoolExecutor(min(threads, len(cids))) as pool:
                return list(pool.map(self.touch_unlocked, cids))

    def read(self, cid: bytes) -> bytes:
        try:
            return self._call(lambda: self.backend.get(chunk_key(cid)))
        except ObjectMissing:
            raise ChunkMissing(chunk=cid.hex()) from None

    def read_into(self, cid: bytes, buf: memoryview) -> int:
        """Read the chunk file into ``buf``; its size, or :class:`ChunkCorrupt` when it does
        not fit (no chunk file of this vault is that long)."""
        try:
            return self._call(lambda: self.backend.get_into(chunk_key(cid), buf))
        except ObjectMissing:
            raise ChunkMissing(chunk=cid.hex()) from None
        except ObjectTooLarge:
            raise ChunkCorrupt(chunk=cid.hex(), why="file longer than any chunk file") from None

    def write(self, cid: bytes, parts: Sequence[BytesLike]) -> int:
        """Store one chunk durably now (outside a batch); bytes written, 0 if present."""
        created = self._call(lambda: self.backend.put(chunk_key(cid), parts))
        return sum(len(p) for p in parts) if created else 0

    def replace(self, cid: bytes, blob: BytesLike) -> None:
        """Store a chunk file durably now, over whatever object holds its key (a repair:
        nothing left there can block it the way a put-if-absent would)."""
        self._call(lambda: self.backend.publish(chunk_key(cid), blob))

    def quarantine(self, cid: bytes) -> None:
        """Move a corrupt chunk aside (``<id>.bad``): it no longer counts as present.

        There is no rename in the contract: the object is copied, then deleted."""
        key = chunk_key(cid)
        try:
            blob = self._call(lambda: self.backend.get(key))
        except ObjectMissing:
            return
        self._call(lambda: self.backend.publish(key + QUARANTINE_SUFFIX, blob))
        self._call(lambda: self.backend.delete(key))

    def remove(self, cid: bytes) -> None:
        self._call(lambda: self.delete_unreferenced(chunk_key(cid)))

    def delete_unreferenced(self, key: str) -> bool:
        """Delete a chunk object no point references (GC), not durably; False when the
        storage still holds it (nothing done).  No retained point references it (a retained
        point's manifest stays until its retention ends: docs/immutability.md), so an undated
        hold left by the points that did is released; a dated one (S3 Object Lock, extended
        past the points' dates) may outlive them: the chunk waits for a later GC, and is then
        deleted with all its versions.  Storage errors as the backend raises them."""
        holds = self.backend.holds
        if holds is not None:
            return holds.purge(key)
        self.backend.delete(key, sync=False)
        return True

    def begin_batch(self) -> ChunkBatch:
        """A batch whose adds that find their chunk present touch it under the shared vault
        lock (as :meth:`touch` does)."""
        return ChunkBatch(self.backend, self._shared_lock)

    def scan(self) -> Iterator[ObjectInfo]:
        """Every object under ``chunks/``: chunks (and quarantined ones)."""
        return self.backend.list_objects(CHUNKS + "/")

    def iter_ids(self) -> Iterator[bytes]:
        for info in self.scan():
            name = info.key.rpartition("/")[2]
            if is_chunk_name(name):
                yield bytes.fromhex(name)


class ChunkBatch:
    """The new chunks of one disk backup, made durable and visible together.

    Thread-safe: pipeline workers call :meth:`reserve` and :meth:`add` concurrently.
    """

    def __init__(
        self,
        backend: StorageBackend,
        guard: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._location = backend.location
        self._batch: WriteBatch = backend.begin_batch(guard)
        self._mu = threading.Lock()
        self._reserved: set[bytes] = set()

    def reserve(self, cid: bytes) -> bool:
        """True when the caller is the first in this batch to store ``cid``."""
        with self._mu:
            if cid in self._reserved:
                return False
            self._reserved.add(cid)
            return True

    def add(self, cid: bytes, parts: Sequence[BytesLike]) -> int:
        """Stage a reserved chunk (not yet durable nor visible); return its size."""
        with space_errors(self._location):
            return self._batch.add(chunk_key(cid), parts)

    def add_buffer(
        self, cid: bytes, buf: mmap.mmap, size: int, *, release: Callable[[], None] | None = None
    ) -> int:
        """:meth:`add` for a chunk file already laid out in ``buf[:size]`` (an aligned
        buffer, see :meth:`~vmvault.dataplane.chunk.ChunkCodec.encode_in_place`); ``release``
        as in :meth:`~vmvault.storage.backend.WriteBatch.add_buffer`."""
        with space_errors(self._location):
            return self._batch.add_buffer(chunk_key(cid), buf, size, release=release)

    def __len__(self) -> int:
        return len(self._batch)

    def commit(self) -> set[bytes]:
        """Make every staged chunk durable, then visible; returns the ids of those found
        already in the store (not written: touched, or stored again if GC took them)."""
        with space_errors(self._location):
            present = self._batch.commit()
        return {bytes.fromhex(key.rpartition("/")[2]) for key in present}

    def abort(self) -> None:
        """Discard the chunks not committed."""
        with space_errors(self._location):
            self._batch.abort()
