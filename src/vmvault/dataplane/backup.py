"""The backup pipeline: one disk from an :class:`ExtentSource` into the vault.

::

    reader thread ──► zero check ──► work queue ──► N worker threads ──► results ──► caller
      pread_into        (is_zero)                    keyed BLAKE3 id         thread: index,
      a free buffer                                  (local: exists? touch)  progress, cancel
                                                     zstd
         ▲                                           (if a sample shrinks)
         │                                           (+ AES-GCM) in place
         │                                           → tmp file, O_DIRECT
         └────────────── the buffer goes back to the pool ◄────┘

* Memory is bounded: ``workers + 2 * readers`` buffers of a chunk file's size are allocated
  once and recycled, whatever the disk size (one per worker at work, two per reader: the one
  it fills and one ready in the work queue; a spare one measured no faster and cost 4 MiB);
  data is passed as memoryviews, never copied in Python.  On a remote backend a buffer goes
  to the batch as the upload's body (``add_buffer(..., release=)``: object storage sends it
  from where it lies) and comes back when the upload ends, so one more buffer keeps a chunk
  ready while the uploads hold theirs; the uploads then need no memory of their own.
* A buffer is page-aligned (``mmap``) and the chunk is read into it right after where a chunk
  file's header goes (:data:`~vmvault.dataplane.chunk.DATA_OFFSET`).  A worker turns it into
  the chunk file in place (:meth:`~vmvault.dataplane.chunk.ChunkCodec.encode_in_place`) and
  writes it with O_DIRECT (:meth:`ChunkBatch.add_buffer`): an incompressible chunk goes from
  the source to the vault's disk without a copy and without the page cache.
* ``readers`` is 1 unless the source says it takes concurrent reads (``max_readers``, e.g.
  an NBD source with several connections).
* Chunks are aligned to ``chunk_size`` from offset 0; the last one may be shorter.
* A chunk is read only when the allocation map says it holds data (full backup) or a dirty
  extent touches it (incremental).  Other chunks are zero, or (incremental) take their id
  from ``previous``.  The reused ids are kept from garbage collection by one reuse list
  (:mod:`.reuse`: one object, whatever their number) when ``epoch``, the GC epoch read
  before the previous point's manifest, is still current; otherwise each reused chunk is
  touched in the store, and if it is no longer there (its point was pruned and collected
  meanwhile) it is read again.
* After hashing, a chunk already in this batch is skipped.  On a local backend a chunk already
  in the vault is not compressed or written again: it is touched (a ``utime``), which
  protects it from a concurrent garbage collection.  On a remote backend (object storage,
  where that check is a ~50 ms request per chunk) the pipeline does not ask: it adds the
  chunk to the batch, whose put-if-absent finds it present and touches it under the shared
  vault lock (the storage contract's batch semantics); at commit the batch names the chunks
  it found present, and the result counts them as dedup, not as new bytes.
* New chunks are committed (fsynced, renamed into place) in one batch at the end, before the
  caller writes the index.  On error or cancel the batch is discarded and nothing refers to
  its chunks: no index is written, since the caller writes it only after this returns.
* ``backup_disk`` must run inside ``store.writer(...)`` held by the caller for the whole
  recovery point (first chunk to manifest): that is what garbage collection respects.
"""

from __future__ import annotations

import functools
import mmap
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from vmvault.dataplane.chunk import DATA_OFFSET, ZERO_ID, file_capacity, is_zero
from vmvault.dataplane.chunkstore import ChunkBatch
from vmvault.dataplane.index import DiskIndex, chunk_count
from vmvault.dataplane.source import ExtentSource
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import Cancelled, InvalidInput
from vmvault.storage.fsutil import page_buffer

Progress = Callable[[int, int], None]  # (bytes processed, bytes to process) of the read plan

_NEW, _DEDUP, _ZERO = 0, 1, 2
_Result = tuple[int, bytes, int, int, int]  # chunk no, id, kind, bytes written, length


@dataclass
class DiskBackupResult:
    index: DiskIndex
    bytes_read: int  # read from the source
    bytes_new: int  # chunk file bytes written to the vault (compressed, with headers)
    chunks_new: int  # stored by this backup
    chunks_zero: int  # all-zero (not stored)
    chunks_reused: int  # taken from `previous` without reading
    chunks_dedup: int  # read, and found already in the vault
    incremental: bool
    seconds: float


def _mark(flags: bytearray, runs: Sequence[tuple[int, int]], chunk_size: int, size: int) -> None:
    for offset, length in runs:
        end = min(offset + length, size)
        if length <= 0 or offset >= end:
            continue
        first, last = offset // chunk_size, (end - 1) // chunk_size
        flags[first : last + 1] = b"\1" * (last - first + 1)


def _plan(
    store: VaultStore,
    source: ExtentSource,
    ids: list[bytes],
    previous: DiskIndex | None,
    dirty: Sequence[tuple[int, int]] | None,
    epoch: bytes | None,
    held: bool,
) -> tuple[bytearray, int, bool]:
    """Which chunks to read; fills ``ids`` for the others.  Returns (flags, reused, incremental)."""
    cs, size, n = store.chunk_size, source.size, len(ids)
    to_read = bytearray(n)
    if previous is None or dirty is None or previous.chunk_size != cs:
        _mark(to_read, [(o, ln) for o, ln, data in source.extents() if data], cs, size)
        return to_read, 0, False
    _mark(to_read, dirty, cs, size)
    candidates: list[int] = []
    for i in range(n):
        if to_read[i]:
            continue
        if i >= len(previous.ids) or previous.chunk_length(i) != min(cs, size - i * cs):
            to_read[i] = 1  # the disk was resized: this chunk changed length
        elif previous.ids[i] != ZERO_ID:
            candidates.append(i)
    reused_ids = [previous.ids[i] for i in candidates]
    if candidates and (held or store.reuse.claim(sorted(set(reused_ids)), epoch)):
        present = [True] * len(candidates)  # held by the reuse list: nothing to touch
    else:
        present = store.touch_chunks(reused_ids)
    reused = 0
    for i, ok in zip(candidates, present, strict=True):
        if ok:
            ids[i] = previous.ids[i]
            reused += 1
        else:  # pruned and collected since: read it again
            to_read[i] = 1
    return to_read, reused, True


def claim_parents(store: VaultStore, parents: Iterable[DiskIndex], epoch: bytes | None) -> bool:
    """One reuse list for every non-zero id of ``parents`` (the previous point's indexes of
    the disks an incremental reads), claimed against ``epoch`` (:meth:`ReuseLists.claim`):
    True when it holds them all, so that :func:`backup_disk` (``held=True``) claims and
    touches nothing — two requests per point instead of two per disk.  The list may name
    ids a disk does not reuse in the end (the dirty chunks' old ids): it only keeps them
    from one GC more."""
    ids = {cid for index in parents for cid in index.ids if cid != ZERO_ID}
    return bool(ids) and store.reuse.claim(sorted(ids), epoch)


def backup_disk(
    store: VaultStore,
    source: ExtentSource,
    *,
    previous: DiskIndex | None = None,
    dirty: Sequence[tuple[int, int]] | None = None,
    epoch: bytes | None = None,
    held: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DiskBackupResult:
    """Back up one disk; the caller then writes ``result.index`` with ``store.write_index``.

    ``dirty`` (with ``previous``) makes it incremental: only chunks that a dirty extent
    ``(offset, length)`` touches are read; ``epoch`` is the GC epoch read before the
    manifest ``previous`` comes from (:meth:`VaultStore.read_parent`; None: touch each
    reused chunk); ``held``: the caller's reuse list already holds every id of ``previous``
    (:func:`claim_parents`: one claim for all the disks of a point), so none is claimed or
    touched here.  ``progress(done, total)`` and ``cancel()`` are called from the calling
    thread, between chunks; ``cancel()`` returning True raises ``CANCELLED``.
    """
    if dirty is not None and previous is None:
        raise InvalidInput("dirty extents need the previous index", what="incremental backup")
    if workers < 1:
        raise InvalidInput("use at least 1", what=f"workers {workers}")
    if store.active_writers == 0:
        raise RuntimeError("backup_disk must run inside store.writer(...)")
    started = time.monotonic()
    cs, size = store.chunk_size, source.size
    ids = [ZERO_ID] * chunk_count(size, cs)
    if cancel is not None and cancel():
        raise Cancelled(operation="the backup")
    to_read, reused, incremental = _plan(store, source, ids, previous, dirty, epoch, held)
    plan = [i for i, flag in enumerate(to_read) if flag]
    total = sum(min(cs, size - i * cs) for i in plan)
    batch = store.begin_batch()
    counts = [0, 0, 0]  # new, dedup, zero-read
    bytes_new = 0
    done_bytes = 0
    added: dict[bytes, int] = {}  # id -> bytes, of the chunks added to the batch
    pipe = _Pipeline(store, source, batch, plan, workers)
    try:
        for i, cid, kind, written, length in pipe.results():
            ids[i] = cid
            counts[kind] += 1
            if kind == _NEW:
                added[cid] = written
            bytes_new += written
            done_bytes += length
            if progress is not None:
                progress(done_bytes, total)
            if cancel is not None and cancel():
                raise Cancelled(operation="the backup")
        present = batch.commit()
    except BaseException:
        pipe.stop()
        batch.abort()
        raise
    for cid in present & added.keys():  # found in the vault by the batch: not stored
        counts[_NEW] -= 1
        counts[_DEDUP] += 1
        bytes_new -= added[cid]
    zero = sum(1 for cid in ids if cid == ZERO_ID)
    return DiskBackupResult(
        index=DiskIndex(cs, size, ids),
        bytes_read=total,
        bytes_new=bytes_new,
        chunks_new=counts[_NEW],
        chunks_zero=zero,
        chunks_reused=reused,
        chunks_dedup=counts[_DEDUP],
        incremental=incremental,
        seconds=time.monotonic() - started,
    )


class _Pipeline:
    """The reader and worker threads of one disk backup."""

    def __init__(
        self,
        store: VaultStore,
        source: ExtentSource,
        batch: ChunkBatch,
        plan: list[int],
        workers: int,
    ) -> None:
        self.store, self.source, self.batch, self.plan = store, source, batch, plan
        #: ask the vault before compressing (local); remote: the batch's put-if-absent does
        self.precheck = not store.backend.remote
        readers = max(1, int(getattr(source, "max_readers", 1)))
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        capacity = file_capacity(store.chunk_size)
        for _ in range(workers + 2 * readers + (0 if self.precheck else 1)):
            self._free.put(page_buffer(capacity))
        self._work: queue.SimpleQueue[tuple[int, mmap.mmap, int] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Result | BaseException] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._todo = iter(plan)
        self._mu = threading.Lock()
        self._readers_left = readers
        self._workers = workers
        self._threads = [
            threading.Thread(target=self._read, name=f"vmvault-reader-{k}", daemon=True)
            for k in range(readers)
        ]
        self._threads += [
            threading.Thread(target=self._hash_and_store, name=f"vmvault-worker-{k}", daemon=True)
            for k in range(workers)
        ]
        for t in self._threads:
            t.start()

    def results(self) -> Iterator[_Result]:
        for _ in range(len(self.plan)):
            item = self._done.get()
            if isinstance(item, BaseException):
                raise item
            yield item
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _take_buffer(self) -> mmap.mmap | None:
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _next_chunk(self) -> int | None:
        with self._mu:
            return next(self._todo, None)

    def _read(self) -> None:
        cs, size = self.store.chunk_size, self.source.size
        try:
            while (i := self._next_chunk()) is not None:
                buf = self._take_buffer()
                if buf is None:
                    return
                length = min(cs, size - i * cs)
                with memoryview(buf) as whole:
                    view = whole[DATA_OFFSET : DATA_OFFSET + length]
                    try:
                        self.source.pread_into(view, i * cs)
                    except BaseException:
                        self._free.put(buf)
                        raise
                    zero = is_zero(view)
                    view.release()
                if zero:
                    self._free.put(buf)
                    self._done.put((i, ZERO_ID, _ZERO, 0, length))
                else:
                    self._work.put((i, buf, length))
        except BaseException as exc:
            self._stop.set()
            self._done.put(exc)
        finally:
            with self._mu:
                self._readers_left -= 1
                last = self._readers_left == 0
            if last:  # the workers stop once every reader is done
                for _ in range(self._workers):
                    self._work.put(None)

    def _hash_and_store(self) -> None:
        codec = self.store.codec()
        while (item := self._work.get()) is not None:
            i, buf, length = item
            handed = False  # the batch gives the buffer back (release) once it is sent
            try:
                if self._stop.is_set():
                    continue
                with memoryview(buf) as whole:
                    cid = codec.chunk_id(whole[DATA_OFFSET : DATA_OFFSET + length])
                if not self.batch.reserve(cid) or (self.precheck and self.store.touch_chunk(cid)):
                    self._done.put((i, cid, _DEDUP, 0, length))
                    continue
                size = codec.encode_in_place(cid, buf, length)
                handed = True
                written = self.batch.add_buffer(
                    cid, buf, size, release=functools.partial(self._free.put, buf)
                )
                self._done.put((i, cid, _NEW, written, length))
            except BaseException as exc:
                self._stop.set()
                self._done.put(exc)
            finally:
                if not handed:
                    self._free.put(buf)
