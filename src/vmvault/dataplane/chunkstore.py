"""The content-addressed chunk store: ``<vault>/chunks/<first byte hex>/<id hex>``.

The 256 prefix directories are created with the vault.  A chunk file is immutable once in
place; its *mtime* is the only thing that changes: a writer that finds a chunk it needs
already present "touches" it (under the shared vault lock), which is what protects it from a
garbage collection that runs at the same time (see :mod:`vmvault.dataplane.gc`).

Chunks are written in **batches** (one per disk backup, :class:`ChunkBatch`): each new chunk
goes to a temporary file without fsync, written with O_DIRECT where the file system takes it
(:meth:`ChunkBatch.add_buffer` for a chunk file laid out in an aligned buffer,
:meth:`ChunkBatch.add` for parts: no page-cache copy, the same bytes either way);
:meth:`ChunkBatch.commit` then fsyncs them all (in parallel, so the file system groups them
into few journal commits), renames them into place
and fsyncs the directories.  A chunk therefore never appears under its final name before its
content is durable, and a crash leaves only temporary files, which GC removes.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

from vmvault.dataplane.chunk import ID_LEN, BytesLike
from vmvault.dataplane.fsutil import (
    fsync_dir,
    fsync_path,
    is_tmp_name,
    space_errors,
    tmp_path,
    write_atomic,
    write_buffer_direct,
    write_parts_direct,
)
from vmvault.domain.errors import ChunkCorrupt, ChunkMissing

CHUNKS = "chunks"
_SYNC_THREADS = 8
_HEX = frozenset("0123456789abcdef")


def is_chunk_name(name: str) -> bool:
    return len(name) == 2 * ID_LEN and set(name) <= _HEX


class ChunkStore:
    """Files of chunks.  ``shared_lock`` is the vault lock's shared mode (a context factory)."""

    def __init__(
        self, vault: Path, shared_lock: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.vault = vault
        self.root = vault / CHUNKS
        self._shared_lock = shared_lock

    @staticmethod
    def create_layout(vault: Path) -> None:
        root = vault / CHUNKS
        root.mkdir(exist_ok=True)
        for i in range(256):
            (root / f"{i:02x}").mkdir(exist_ok=True)
        fsync_dir(root)

    def path(self, cid: bytes) -> Path:
        hexid = cid.hex()
        return self.root / hexid[:2] / hexid

    def exists(self, cid: bytes) -> bool:
        return self.path(cid).exists()

    def touch(self, cid: bytes) -> bool:
        """Mark an existing chunk as just used; False when it is not in the store."""
        with self._shared_lock():
            return self.touch_unlocked(cid)

    def touch_unlocked(self, cid: bytes) -> bool:
        """:meth:`touch` for a caller that holds the shared vault lock."""
        try:
            os.utime(self.path(cid))
        except FileNotFoundError:
            return False
        return True

    def read(self, cid: bytes) -> bytes:
        try:
            with open(self.path(cid), "rb", buffering=0) as fh:
                return fh.read()
        except FileNotFoundError:
            raise ChunkMissing(chunk=cid.hex()) from None

    def read_into(self, cid: bytes, buf: memoryview) -> int:
        """Read the chunk file into ``buf``; its size, or :class:`ChunkCorrupt` when it does
        not fit (no chunk file of this vault is that long)."""
        try:
            fd = os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ChunkMissing(chunk=cid.hex()) from None
        try:
            size = os.fstat(fd).st_size
            if size > len(buf):
                raise ChunkCorrupt(chunk=cid.hex(), why="file longer than any chunk file")
            done = 0
            while done < size:
                n = os.preadv(fd, [buf[done:size]], done)
                if n <= 0:
                    break
                done += n
            return done
        finally:
            os.close(fd)

    def write(self, cid: bytes, parts: Sequence[BytesLike]) -> int:
        """Store one chunk durably now (outside a batch)."""
        return write_atomic(self.path(cid), parts, vault=self.vault)

    def quarantine(self, cid: bytes) -> None:
        """Move a corrupt chunk aside (``<id>.bad``): it no longer counts as present."""
        path = self.path(cid)
        try:
            os.replace(path, path.with_name(path.name + ".bad"))
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def remove(self, cid: bytes) -> None:
        self.path(cid).unlink(missing_ok=True)

    def begin_batch(self) -> ChunkBatch:
        return ChunkBatch(self)

    def iter_ids(self) -> Iterator[bytes]:
        for sub in sorted(os.listdir(self.root)):
            for name in os.listdir(self.root / sub):
                if is_chunk_name(name):
                    yield bytes.fromhex(name)

    def scan(self) -> Iterator[os.DirEntry[str]]:
        """Every entry of the prefix directories: chunk files and temporary files."""
        for sub in sorted(os.listdir(self.root)):
            with os.scandir(self.root / sub) as it:
                yield from it


class ChunkBatch:
    """The new chunks of one disk backup, made durable and visible together.

    Thread-safe: pipeline workers call :meth:`reserve` and :meth:`add` concurrently.
    """

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._mu = threading.Lock()
        self._reserved: set[bytes] = set()
        self._pending: dict[bytes, Path] = {}

    def reserve(self, cid: bytes) -> bool:
        """True when the caller is the first in this batch to store ``cid``."""
        with self._mu:
            if cid in self._reserved:
                return False
            self._reserved.add(cid)
            return True

    def add(self, cid: bytes, parts: Sequence[BytesLike]) -> int:
        """Write a reserved chunk to a temporary file (no fsync yet); return its size."""
        tmp = tmp_path(self._store.path(cid))
        with space_errors(self._store.vault):
            size = write_parts_direct(tmp, parts)
        with self._mu:
            self._pending[cid] = tmp
        return size

    def add_buffer(self, cid: bytes, buf: mmap.mmap, size: int) -> int:
        """:meth:`add` for a chunk file already laid out in ``buf[:size]`` (an aligned
        buffer, see :meth:`~vmvault.dataplane.chunk.ChunkCodec.encode_in_place`)."""
        tmp = tmp_path(self._store.path(cid))
        with space_errors(self._store.vault):
            write_buffer_direct(tmp, buf, size)
        with self._mu:
            self._pending[cid] = tmp
        return size

    def __len__(self) -> int:
        return len(self._pending)

    def commit(self) -> None:
        """fsync every new chunk, rename it into place, fsync the directories."""
        with self._mu:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        dirs = {tmp.parent for tmp in pending.values()}
        try:
            with space_errors(self._store.vault), ThreadPoolExecutor(_SYNC_THREADS) as pool:
                list(pool.map(fsync_path, pending.values()))
                for cid, tmp in pending.items():
                    os.replace(tmp, self._store.path(cid))
                list(pool.map(fsync_dir, dirs))
        except BaseException:
            for tmp in pending.values():
                tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Remove the temporary files of chunks not committed."""
        with self._mu:
            pending, self._pending = self._pending, {}
        for tmp in pending.values():
            tmp.unlink(missing_ok=True)

    @staticmethod
    def is_leftover(name: str) -> bool:
        return is_tmp_name(name)
