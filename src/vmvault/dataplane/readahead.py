"""Read-ahead for a restore from remote storage: more chunk GETs in flight than decoders.

On object storage a chunk read is one GET whose latency, not the bytes, dominates; a restore
whose ``workers`` decode threads each wait on their own GET leaves the link and the gateway
idle half the time (measured: 8 concurrent GETs take half the time of 2).  :class:`ReadAhead`
runs ``slots`` fetch threads, each reading the next chunk file of the plan into a free slot
(a :class:`~vmvault.dataplane.vault.ChunkScratch` whose ``blob`` receives the file); the
decode threads :meth:`~ReadAhead.take` fetched slots, decode into their own ``out`` buffer,
write, and :meth:`~ReadAhead.release` the slot.  Memory is bounded by ``slots`` chunk files,
whatever the disk size (a slot's ``out`` is never touched: an anonymous mapping costs no
memory until written).

A fetch that fails is handed to the decoder as the exception: the decoder then reads the
chunk the ordinary way (:meth:`~vmvault.dataplane.vault.VaultStore.get_chunk_into`), so a
store that heals a missing or corrupt chunk (:class:`~vmvault.dataplane.heal.HealingStore`)
still does, and any other failure is raised from there (:func:`read_chunk`).  The restore
and the verify use it, only on a ``remote`` backend: on a local disk a read is a ``pread``
and read-ahead would only add a thread hop per chunk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from vmvault.dataplane.vault import ChunkScratch, VaultStore
from vmvault.domain.errors import ChunkCorrupt

#: Chunk files fetched or being fetched at once (GETs in flight, and their buffers).
SLOTS = 8

Fetched = tuple[int, ChunkScratch, int | BaseException]  # chunk no, slot, size or failure


def read_chunk(
    store: VaultStore, cid: bytes, scratch: ChunkScratch, fetched: Fetched | None
) -> tuple[memoryview, bool]:
    """The verified plaintext of ``cid`` (and whether it starts at a page boundary): decoded
    from what the read-ahead ``fetched`` when it could, else read the ordinary way into
    ``scratch`` — no read-ahead, a failed fetch, or a fetched file that does not decode (the
    ordinary read raises ``CHUNK_MISSING`` / ``CHUNK_CORRUPT``, or heals, for itself)."""
    if fetched is not None and isinstance(fetched[2], int):
        try:
            return store.decode_chunk_into(cid, fetched[1], fetched[2], scratch.out)
        except ChunkCorrupt:
            pass
    return store.get_chunk_into(cid, scratch)


class ReadAhead:
    """Fetch threads filling bounded slots ahead of the decoders (module docstring)."""

    def __init__(
        self, store: VaultStore, ids: Sequence[bytes], todo: Sequence[int], slots: int = SLOTS
    ) -> None:
        self._store, self._ids, self._total = store, ids, len(todo)
        self._jobs = iter(todo)
        self._mu = threading.Lock()
        self._taken = 0
        self._stop = threading.Event()
        self._free: queue.SimpleQueue[ChunkScratch] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[Fetched] = queue.SimpleQueue()
        self._slots = [store.chunk_scratch() for _ in range(max(1, min(slots, len(todo))))]
        for slot in self._slots:
            self._free.put(slot)
        self._threads = [
            threading.Thread(target=self._fetch, name=f"vmvault-fetch-{k}", daemon=True)
            for k in range(len(self._slots))
        ]
        for t in self._threads:
            t.start()

    def _fetch(self) -> None:
        while (slot := self._wait(self._free)) is not None:
            with self._mu:
                i = next(self._jobs, None)
            if i is None:
                self._free.put(slot)
                return
            try:
                got: int | BaseException = self._store.chunks.read_into(
                    self._ids[i], slot.blob_view
                )
            except Exception as exc:  # the decoder reads it again, the ordinary way
                got = exc
            self._ready.put((i, slot, got))

    def _wait(self, q: queue.SimpleQueue[ChunkScratch]) -> ChunkScratch | None:
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def take(self) -> Fetched | None:
        """The next fetched chunk (any order), or None when every chunk was taken or the
        read-ahead stopped.  The caller gives the slot back with :meth:`release`."""
        with self._mu:
            if self._taken == self._total:
                return None
            self._taken += 1
        while not self._stop.is_set():
            try:
                return self._ready.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def release(self, slot: ChunkScratch) -> None:
        self._free.put(slot)

    def close(self) -> None:
        """Stop the fetch threads, wait for them, unmap the slots."""
        self._stop.set()
        for t in self._threads:
            t.join()
        for slot in self._slots:
            slot.close()
