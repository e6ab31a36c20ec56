"""A point's disk as a block device read straight from the vault, and its writable overlay.

:class:`ExportedDisk` answers ``pread`` from the disk's index: each chunk a read touches is
fetched through :meth:`VaultStore.get_chunk` (so verified — digest, and decryption of an
encrypted vault — before any byte of it is served; a healing store repairs it from another
vault), its length checked against the index, and kept in a bounded LRU cache
(``cache_bytes``, default 256 MiB, at least two chunks).  The zero chunk is never fetched.
When reads move forward (a read touches the chunk after the previous read's last one),
the next ``ahead`` chunks are fetched in the background by ``workers`` threads, so a
sequential reader (``nbdcopy``, ``qemu-img convert``) waits on the vault about as much as a
restore does.  A chunk that fails (missing, corrupt) fails the read (``EIO`` to the NBD
client) and is not cached.

:class:`Overlay` makes it writable without touching the vault: written 64 KiB blocks go to
a sparse scratch file (read-modify-write of the rest of a block from the point), reads take
each block from the scratch file once written, else from the point.  The scratch file is
unlinked when the overlay closes; the vault never changes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import ChunkCorrupt

DEFAULT_CACHE = 256 * 1024 * 1024
DEFAULT_AHEAD = 8
OVERLAY_BLOCK = 64 * 1024


class ExportedDisk:
    """One disk of a point, read-only (see the module docstring)."""

    writable = False

    def __init__(
        self,
        store: VaultStore,
        index: DiskIndex,
        *,
        cache_bytes: int = DEFAULT_CACHE,
        ahead: int = DEFAULT_AHEAD,
        workers: int = 2,
    ) -> None:
        self.store = store
        self.index = index
        self.size = index.disk_size
        self.chunk_size = index.chunk_size
        self.capacity = max(2, cache_bytes // index.chunk_size)
        self.ahead = ahead
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._pending: dict[int, Future[bytes]] = {}
        self._mu = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="export-read")
        self._last = -1
        #: chunks fetched from the vault, and reads answered (for the job's log)
        self.fetched = 0
        self.hits = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def pread(self, length: int, offset: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"read of {length} at {offset} past the disk's {self.size} bytes")
        if length == 0:
            return b""
        cs = self.chunk_size
        first, last = offset // cs, (offset + length - 1) // cs
        sequential = first in (self._last, self._last + 1)
        self._last = last
        futures = [self._chunk(i) for i in range(first, last + 1)]
        if sequential and self.ahead:
            for i in range(last + 1, min(last + 1 + self.ahead, len(self.index.ids))):
                self._chunk(i)
        parts = []
        for i, fut in zip(range(first, last + 1), futures, strict=True):
            data = fut.result()
            start = offset - i * cs if i == first else 0
            end = offset + length - i * cs if i == last else len(data)
            parts.append(data[start:end])
        return b"".join(parts)

    def pwrite(self, data: bytes, offset: int) -> None:
        raise PermissionError("a point's disk is read-only: export it --writable")

    def _chunk(self, i: int) -> Future[bytes]:
        with self._mu:
            if (data := self._cache.get(i)) is not None:
                self._cache.move_to_end(i)
                self.hits += 1
                return _done(data)
            if (fut := self._pending.get(i)) is not None:
                return fut
            if self.index.ids[i] == ZERO_ID:
                return _done(bytes(self.index.chunk_length(i)))
            fut = self._pool.submit(self._fetch, i)
            self._pending[i] = fut
            return fut

    def _fetch(self, i: int) -> bytes:
        try:
            data = self.store.get_chunk(self.index.ids[i])
            if len(data) != self.index.chunk_length(i):
                raise ChunkCorrupt(chunk=self.index.ids[i].hex(), why="length differs from index")
        except BaseException:
            with self._mu:
                self._pending.pop(i, None)
            raise
        with self._mu:
            self._pending.pop(i, None)
            self.fetched += 1
            self._cache[i] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data


class Overlay:
    """``base`` made writable through the sparse scratch file ``path`` (see the module)."""

    writable = True

    def __init__(self, base: ExportedDisk, path: Path) -> None:
        self.base = base
        self.size = base.size
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.ftruncate(self._fd, self.size)
        self._written: set[int] = set()
        self._mu = threading.Lock()

    def close(self) -> None:
        os.close(self._fd)
        self.path.unlink(missing_ok=True)

    def pread(self, length: int, offset: int) -> bytes:
        out = bytearray()
        at, end = offset, offset + length
        while at < end:
            block = at // OVERLAY_BLOCK
            stop = min(end, (block + 1) * OVERLAY_BLOCK)
            # a run of blocks from the same side in one read
            mine = block in self._written
            while stop < end and ((stop // OVERLAY_BLOCK) in self._written) == mine:
                stop = min(end, stop + OVERLAY_BLOCK)
            n = stop - at
            out += os.pread(self._fd, n, at) if mine else self.base.pread(n, at)
            at = stop
        return bytes(out)

    def pwrite(self, data: bytes, offset: int) -> None:
        end = offset + len(data)
        with self._mu:
            for block in range(offset // OVERLAY_BLOCK, (end - 1) // OVERLAY_BLOCK + 1):
                start = block * OVERLAY_BLOCK
                whole = offset <= start and end >= start + OVERLAY_BLOCK
                if block not in self._written and not whole:
                    n = min(OVERLAY_BLOCK, self.size - start)
                    os.pwrite(self._fd, self.base.pread(n, start), start)
                self._written.add(block)
            os.pwrite(self._fd, data, offset)


def _done(data: bytes) -> Future[bytes]:
    fut: Future[bytes] = Future()
    fut.set_result(data)
    return fut
