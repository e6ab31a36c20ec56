"""Restore and verify: chunks back into a disk image, or just re-read and checked.

**Restore** writes a sparse image from ``workers`` threads, each chunk verified as it is read
(:meth:`VaultStore.get_chunk_into`: into two aligned buffers per thread, no allocation per
chunk) and written with ``os.pwrite``, skipping its all-zero 64 KiB
clusters; zero chunks are not touched at all.  On a remote backend the chunk files are
fetched ahead by :class:`~vmvault.dataplane.readahead.ReadAhead` (8 GETs in flight, 8 buffers)
and the workers only decode and write.  The data clusters go through a second
descriptor opened with O_DIRECT (no page-cache copy, no writers serialised on the inode lock
of a buffered write), where the file system takes it; metadata and an unaligned tail go
through the buffered one.  Raw: the file is truncated to the disk size
and chunk ``i`` goes to offset ``i * chunk_size``.  qcow2: written directly in that format
(:mod:`vmvault.dataplane.qcow2`): no intermediate raw file, no ``qemu-img convert``.  The
result appears under the target's name only when complete and fsynced (written as a
dot-file next to it, then renamed): a failed or cancelled restore leaves nothing behind.

**Verify** re-reads every distinct chunk an index references and lists the missing and the
corrupt ones; on a remote backend with the same read-ahead ahead of its ``workers``.  Both hold the vault's shared lock, so no garbage-collection sweep runs under
them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.qcow2 import Qcow2Layout, write_sparse
from vmvault.dataplane.readahead import Fetched, ReadAhead, read_chunk
from vmvault.dataplane.vault import ChunkScratch, VaultStore
from vmvault.domain.errors import (
    Cancelled,
    ChunkCorrupt,
    ChunkMissing,
    InvalidInput,
    RestoreTargetExists,
    RestoreWriteFailed,
    VmvaultError,
)
from vmvault.storage.fsutil import fsync_dir, open_direct, tmp_path

FORMATS = ("raw", "qcow2")
Progress = Callable[[int, int], None]


@dataclass
class RestoreResult:
    target: Path
    fmt: str
    disk_size: int
    bytes_written: int  # plaintext bytes of the non-zero chunks
    chunks_written: int
    chunks_zero: int
    seconds: float


@dataclass
class VerifyReport:
    chunks_checked: int = 0
    bytes_checked: int = 0  # plaintext bytes
    missing: list[bytes] = field(default_factory=list)
    corrupt: list[bytes] = field(default_factory=list)
    #: the index verified (to map a bad chunk to the byte ranges of the disk it covers)
    index: DiskIndex | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    def ranges(self, cid: bytes) -> tuple[tuple[int, int], ...]:
        """The byte ranges ``[start, end)`` of the disk that chunk ``cid`` covers, merged."""
        assert self.index is not None
        return self.index.ranges_of([cid])


@dataclass
class PointVerifyReport:
    point_id: str
    disks: dict[str, VerifyReport] = field(default_factory=dict)
    #: manifest/index errors (code, message, remedy; ``disk`` for an index's)
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.disks.values())


def restore_disk(
    store: VaultStore,
    index: DiskIndex,
    target: Path,
    *,
    fmt: str = "raw",
    workers: int = 2,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RestoreResult:
    """Write the disk described by ``index`` to ``target`` (a new file, or replaced)."""
    if fmt not in FORMATS:
        raise InvalidInput("use raw or qcow2", what=f"image format '{fmt}'")
    if workers < 1:
        raise InvalidInput("use at least 1", what=f"workers {workers}")
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise RestoreTargetExists(target=str(target))
        if not target.is_file():
            raise InvalidInput("only a regular file can be replaced", what=f"target {target}")
    if not target.parent.is_dir():
        raise InvalidInput("its directory does not exist", what=f"target {target}")
    started = time.monotonic()
    partial = tmp_path(target)
    layout = Qcow2Layout(index.disk_size, index.chunk_size, index.ids) if fmt == "qcow2" else None
    try:
        with store.reader():
            written, count = _write_image(store, index, partial, layout, workers, progress, cancel)
        _sync_and_rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    zero = sum(1 for cid in index.ids if cid == ZERO_ID)
    return RestoreResult(
        target, fmt, index.disk_size, written, count, zero, time.monotonic() - started
    )


def _write_image(
    store: VaultStore,
    index: DiskIndex,
    path: Path,
    layout: Qcow2Layout | None,
    workers: int,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
) -> tuple[int, int]:
    todo = [i for i, cid in enumerate(index.ids) if cid != ZERO_ID]
    total = sum(index.chunk_length(i) for i in todo)
    cs = index.chunk_size
    slots = layout.slots if layout is not None else {i: i * cs for i in todo}
    clusters: dict[int, bytes] = {}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RestoreWriteFailed(str(exc), target=str(path)) from None
    direct_fd: int | None = None
    try:
        try:
            os.ftruncate(fd, index.disk_size if layout is None else layout.file_size)
            direct_fd = open_direct(path)
        except OSError as exc:
            raise RestoreWriteFailed(str(exc), target=str(path)) from None
        done = 0
        parallel = _parallel_writes(store, index, (fd, direct_fd), path, todo, slots, workers)
        with closing(parallel) as finished:
            for i, length, flags in finished:
                clusters[i] = flags
                done += length
                if progress is not None:
                    progress(done, total)
                if cancel is not None and cancel():
                    raise Cancelled(operation="the restore")
        if layout is not None:
            try:
                for offset, data in layout.metadata(clusters):
                    os.pwrite(fd, data, offset)
            except OSError as exc:
                raise RestoreWriteFailed(str(exc), target=str(path)) from None
        return done, len(todo)
    finally:
        if direct_fd is not None:
            os.close(direct_fd)
        os.close(fd)


def _parallel_writes(
    store: VaultStore,
    index: DiskIndex,
    fds: tuple[int, int | None],
    path: Path,
    todo: list[int],
    slots: dict[int, int],
    workers: int,
) -> Generator[tuple[int, int, bytes], None, None]:
    """Fetch, verify and write chunks in ``workers`` threads (``fds``: buffered, O_DIRECT).

    Yields (chunk no, length, one flag byte per 64 KiB cluster: 1 = written).
    """
    jobs = iter(todo)
    jobs_mu = threading.Lock()
    results: queue.SimpleQueue[tuple[int, int, bytes] | BaseException] = queue.SimpleQueue()
    stop = threading.Event()
    ahead = ReadAhead(store, index.ids, todo) if store.backend.remote and todo else None

    def next_job() -> tuple[int, Fetched | None] | None:
        if ahead is None:
            with jobs_mu:
                i = next(jobs, None)
            return None if i is None else (i, None)
        item = ahead.take()
        return None if item is None else (item[0], item)

    def work() -> None:
        scratch = store.chunk_scratch()
        try:
            while not stop.is_set() and (job := next_job()) is not None:
                i, fetched = job
                try:
                    results.put((i, *fetch_and_write(i, scratch, fetched)))
                except BaseException as exc:
                    stop.set()
                    results.put(exc)
                    return
                finally:
                    if ahead is not None and fetched is not None:
                        ahead.release(fetched[1])
        finally:
            scratch.close()

    def fetch_and_write(
        i: int, scratch: ChunkScratch, fetched: Fetched | None
    ) -> tuple[int, bytes]:
        data, aligned = read_chunk(store, index.ids[i], scratch, fetched)
        with data:
            if len(data) != index.chunk_length(i):
                raise ChunkCorrupt(chunk=index.ids[i].hex(), why="length differs from index")
            try:
                return len(data), write_sparse(fds[0], slots[i], data, fds[1], aligned=aligned)
            except OSError as exc:
                raise RestoreWriteFailed(str(exc), target=str(path)) from None

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        for _ in todo:
            item = results.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        for t in threads:
            t.join()
        if ahead is not None:
            ahead.close()


def _sync_and_rename(partial: Path, target: Path) -> None:
    try:
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise RestoreWriteFailed(str(exc), target=str(target)) from None


def verify_disk(
    store: VaultStore,
    index: DiskIndex,
    *,
    workers: int = 2,
    progress: Progress | None = None,
    quarantine: bool = False,
) -> VerifyReport:
    """Re-read and check every distinct chunk ``index`` references.

    With ``quarantine``, a corrupt chunk file is renamed ``<id>.bad`` (out of the store), so
    the next backup that reads the same data stores it again and heals every point that
    references it; until then restores of those points fail with ``CHUNK_MISSING``.
    """
    ids = sorted(index.referenced())
    report = VerifyReport(index=index)
    # remote: chunk files fetched ahead (GETs in flight) of the ``workers`` decoding them
    ahead = ReadAhead(store, ids, range(len(ids))) if store.backend.remote and ids else None
    local = threading.local()
    scratches: list[ChunkScratch] = []
    mu = threading.Lock()

    def scratch() -> ChunkScratch:
        mine: ChunkScratch | None = getattr(local, "scratch", None)
        if mine is None:
            mine = local.scratch = store.chunk_scratch()
            with mu:
                scratches.append(mine)
        return mine

    def check(i: int) -> tuple[bytes, int | str]:
        fetched = ahead.take() if ahead is not None else None
        cid = ids[i if fetched is None else fetched[0]]
        try:
            data, _ = read_chunk(store, cid, scratch(), fetched)
            with data:
                return cid, len(data)
        except ChunkMissing:
            return cid, "missing"
        except ChunkCorrupt:
            if quarantine:
                store.chunks.quarantine(cid)
            return cid, "corrupt"
        finally:
            if ahead is not None and fetched is not None:
                ahead.release(fetched[1])

    try:
        with store.reader(), ThreadPoolExecutor(max(1, workers)) as pool:
            for cid, outcome in pool.map(check, range(len(ids))):
                report.chunks_checked += 1
                if outcome == "missing":
                    report.missing.append(cid)
                elif outcome == "corrupt":
                    report.corrupt.append(cid)
                elif isinstance(outcome, int):
                    report.bytes_checked += outcome
                if progress is not None:
                    progress(report.chunks_checked, len(ids))
    finally:
        if ahead is not None:
            ahead.close()
        for s in scratches:
            s.close()
    return report


def verify_point(
    store: VaultStore,
    point_id: str,
    *,
    workers: int = 2,
    quarantine: bool = False,
    progress: Progress | None = None,
) -> PointVerifyReport:
    """Verify a recovery point: its manifest, each index against its digest, every chunk.
    ``progress`` is called per chunk of each disk (it may raise to stop the verify)."""
    report = PointVerifyReport(point_id)
    try:
        m = store.read_manifest(point_id)
    except VmvaultError as exc:
        report.problems.append(exc.as_dict())
        return report
    for disk in m.disks:
        if disk.index is None:
            continue
        try:
            index = store.read_point_index(m, disk.target)
        except VmvaultError as exc:
            report.problems.append({**exc.as_dict(), "disk": disk.target})
            continue
        report.disks[disk.target] = verify_disk(
            store, index, workers=workers, progress=progress, quarantine=quarantine
        )
    return report
