"""Batches on S3: each staged object is a conditional PUT, uploaded on a bounded pool.

A PUT is durable and visible when it returns, so there is nothing to make durable at the
end: :meth:`S3Batch.commit` waits for the uploads and raises the first failure.  Each
:meth:`~S3Batch.add` copies the caller's bytes once (the caller reuses its buffer as soon as
``add`` returns) into an anonymous mapping (sent as a file-like body, :class:`MappedBody`;
kept for the next body when the upload ends) and hands it to a worker thread; ``add`` blocks
while more than the backend's byte budget is in flight (:class:`ByteBudget`, shared by every
batch of the backend), so memory stays bounded whatever the disk size: 3 uploads of 4 MiB
chunk files (``INFLIGHT_BYTES``: 12.2 MiB, room for three whole chunk files with their
headers).  :meth:`~S3Batch.add_buffer` with a ``release`` (the backup pipeline's chunk
buffers) copies nothing: the caller's buffer is the body, given back by ``release()`` when
its upload ends — the pipeline's buffers are then the only chunk memory (measured: −12 MiB
peak RSS of an S3 full, docs/vault-format.md §7).

A key found present (the PUT answered 412) is touched (``CopyObject``) inside the batch's
guard and put again if that finds it gone; :meth:`S3Batch.commit` returns those keys.

Visibility, as the contract allows for object storage: an object is visible as soon as its
upload returns (never before it is durable: a PUT is both at once).  ``abort`` cancels the
uploads not yet started and waits for the running ones; what was uploaded stays, an
unreferenced object for garbage collection — deleting it would be wrong, since another
backup may have found it present and referenced it meanwhile.  A crash leaves the same.
"""

from __future__ import annotations

import io
import mmap
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from vmvault.storage.backend import BytesLike, Data, Guard, check_key, parts_of, put_or_touch

if TYPE_CHECKING:
    from vmvault.storage.s3 import S3Backend


#: A body at least this large is copied into an anonymous mapping, not a ``bytes``: 4 MiB
#: ``bytes`` freed by another thread stay in malloc's per-thread arenas (measured: +40 MiB
#: peak RSS over a backup).  The mappings are reused (:class:`ByteBudget` keeps the spare
#: ones, at most its limit): a fresh mapping per chunk cost a page fault and a zeroed page
#: per 4 KiB sent.
MAP_AT = 256 << 10
_ROUND = 64 << 10


class MappedBody(io.RawIOBase):
    """The first ``size`` bytes of a (reused, larger) mapping, read as a file (the
    backend sends a view of it: no copy)."""

    def __init__(self, mapping: mmap.mmap, size: int) -> None:
        super().__init__()
        self.mapping = mapping
        self.size = size
        self._pos = 0

    def __len__(self) -> int:
        return self.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = min(max(base + offset, 0), self.size)
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        data = self.mapping[self._pos : end]
        self._pos = end
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


Body = bytes | MappedBody


class ByteBudget:
    """At most ``limit`` bytes in flight (one object larger than that goes alone), and the
    mappings that carry them, reused by the next bodies: a sent body's mapping is kept while
    all mappings alive hold at most ``limit`` bytes, else unmapped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self._spare: list[mmap.mmap] = []
        self._mapped = 0  # bytes of every mapping alive, spare or carrying a body

    def acquire(self, n: int) -> int:
        n = min(n, self.limit)
        with self._cond:
            while self._used + n > self.limit:
                self._cond.wait()
            self._used += n
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def copy(self, parts: Sequence[BytesLike], size: int) -> Body:
        """``parts`` (``size`` bytes) copied into a body of their own."""
        if size < MAP_AT:
            return b"".join(parts)
        mapping = self._mapping(size)
        offset = 0
        with memoryview(mapping) as view:
            for part in parts:
                n = memoryview(part).nbytes
                view[offset : offset + n] = memoryview(part).cast("B")
                offset += n
        return MappedBody(mapping, size)

    def recycle(self, body: Body) -> None:
        """``body`` was sent: keep its mapping for the next one (or unmap it)."""
        if not isinstance(body, MappedBody):
            return
        mapping = body.mapping
        with self._cond:
            if self._mapped <= self.limit:
                self._spare.append(mapping)
                return
            self._mapped -= len(mapping)
        mapping.close()

    def _mapping(self, size: int) -> mmap.mmap:
        with self._cond:
            fits = [m for m in self._spare if len(m) >= size]
            if fits:
                mapping = min(fits, key=len)
                self._spare.remove(mapping)
                return mapping
            small = self._spare.pop() if self._spare else None
            capacity = -(-size // _ROUND) * _ROUND
            self._mapped += capacity - (len(small) if small is not None else 0)
        if small is not None:
            small.close()  # too small for bodies this size: make room for a larger one
        return mmap.mmap(-1, capacity)


class S3Batch:
    """Concurrent conditional PUTs; ``commit`` waits for them (see the module docstring)."""

    def __init__(self, backend: S3Backend, workers: int, guard: Guard | None = None) -> None:
        self._backend = backend
        self._guard = guard or nullcontext
        self._present: set[str] = set()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vmvault-s3-put")
        self._mu = threading.Lock()
        self._pending: list[Future[bool]] = []
        self._failed: BaseException | None = None
        self._closed = False

    def add(self, key: str, data: Data) -> int:
        return self._submit(check_key(key), parts_of(data))

    def add_buffer(
        self, key: str, buf: mmap.mmap, size: int, *, release: Callable[[], None] | None = None
    ) -> int:
        if release is None:
            with memoryview(buf) as view:
                return self._submit(check_key(key), [view[:size]])
        try:  # the caller's buffer is the body: sent from where it lies, no copy
            check_key(key)
            held = self._backend.budget.acquire(size)
        except BaseException:
            release()
            raise
        return self._queue(key, MappedBody(buf, size), held, release)

    def _submit(self, key: str, parts: Sequence[BytesLike]) -> int:
        size = sum(memoryview(p).nbytes for p in parts)
        held = self._backend.budget.acquire(size)
        try:
            body = self._backend.budget.copy(parts, size)  # the caller reuses its own
        except BaseException:
            self._backend.budget.release(held)
            raise
        return self._queue(key, body, held)

    def _queue(
        self, key: str, body: Body, held: int, release: Callable[[], None] | None = None
    ) -> int:
        """Hand ``body`` to an upload; whatever happens, ``_done`` gives back the budget and
        the body (to the caller's ``release``, or to the budget's spare mappings)."""
        try:
            with self._mu:
                if self._failed is not None:
                    raise self._failed  # fail fast: the batch cannot commit any more
                if self._closed:
                    raise RuntimeError("the batch was committed or aborted")
            size = len(body)  # not after the submit: a finished upload recycles a mapped body
            future = self._pool.submit(self._upload, key, body)
        except BaseException:
            self._done(None, held, body, release)
            raise
        future.add_done_callback(lambda f: self._done(f, held, body, release))
        with self._mu:
            self._pending.append(future)
        return size

    def _upload(self, key: str, body: Body) -> bool:
        def once() -> bool:
            if isinstance(body, MappedBody):
                body.seek(0)
            return self._backend.put_once(key, body)

        def put() -> bool:
            return self._backend.session.retry(once)

        def touch() -> bool:
            return self._backend.session.retry(lambda: self._backend.touch(key))

        created = put_or_touch(put, touch, self._guard)
        if not created:
            with self._mu:
                self._present.add(key)
        return created

    def _done(
        self,
        future: Future[bool] | None,
        held: int,
        body: Body,
        release: Callable[[], None] | None,
    ) -> None:
        if release is not None:
            release()  # the caller's buffer: back to the caller
        else:
            self._backend.budget.recycle(body)  # before the release: the next body reuses it
        self._backend.budget.release(held)
        if future is None or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            with self._mu:
                if self._failed is None:
                    self._failed = exc

    def __len__(self) -> int:
        with self._mu:
            return len(self._pending)

    def commit(self) -> frozenset[str]:
        with self._mu:
            pending, self._pending = self._pending, []
        try:
            wait(pending)
            with self._mu:
                failed, present = self._failed, frozenset(self._present)
            if failed is not None:
                raise failed
        finally:
            self._close()
        return present

    def abort(self) -> None:
        with self._mu:
            pending, self._pending = self._pending, []
        for future in pending:
            future.cancel()
        wait(pending)
        self._close()

    def _close(self) -> None:
        with self._mu:
            self._closed = True
        self._pool.shutdown(wait=True)
