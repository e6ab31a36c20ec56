"""Garbage collection: delete the chunks no recovery point references — never one that is.

**Mark.** Read every manifest and each of its disk indexes (checked against the manifest's
digest); the union of their chunk ids is the referenced set.  If any manifest or index cannot
be read, GC stops before deleting anything (a partial mark could delete live chunks): the
error names the point, which the operator repairs or deletes.

**Sweep.** A chunk file is deleted when it is not referenced *and* its mtime is older than
the cutoff::

    cutoff = min(gc_start - grace, oldest running writer's start) - CLOCK_SLACK

Candidates are found without locks; each is then re-checked (stat) and unlinked under the
vault's exclusive lock, which writers take in shared mode around "exists? then touch" and
readers hold for their whole run.  Temporary files of crashed writers and index directories
without a manifest are swept by the same mtime rule.

**Why a backup running at the same time is safe.** Such a backup holds a writer registration
(``store.writer``) from before its first chunk until after its manifest.  Each chunk its
point references was, during that time, either written by it (file mtime = write time) or
found present and touched by it (mtime = touch time; reused ids from the previous index are
touched too).  Either way the chunk's mtime is at or after the writer's start.  If the writer
registered before GC read the registrations, the cutoff is at or before its start minus the
slack, so none of those chunks is a candidate.  If it registered later, all its writes and
touches happen after ``gc_start``, which is after the cutoff.  A touch and the sweep's
re-check + unlink of the same chunk are serialised by the vault lock, so the sweep either
sees the new mtime or deletes the chunk before the touch, which then finds it missing and
the writer stores it again.  ``CLOCK_SLACK`` covers the coarse clock that file timestamps
use (an mtime can lag ``time.time()`` by a tick, so a file written just after ``gc_start``
could otherwise look older than it); ``grace`` covers writers that bypass registration and
clocks of network file systems.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmvault.dataplane.chunkstore import is_chunk_name
from vmvault.dataplane.fsutil import is_tmp_name
from vmvault.dataplane.locks import DEFAULT_WAIT
from vmvault.dataplane.vault import INDEXES, MANIFESTS, VaultStore
from vmvault.domain.errors import Cancelled, IndexCorrupt, PointNotFound

DEFAULT_GRACE = 3600.0
CLOCK_SLACK = 2.0


@dataclass
class GcReport:
    dry_run: bool
    cutoff: float  # epoch seconds: unreferenced files older than this are removed
    points: int = 0
    writers: list[str] = field(default_factory=list)  # running backups seen
    chunks_scanned: int = 0
    chunks_referenced: int = 0  # distinct ids referenced by some point
    bytes_referenced: int = 0  # chunk file bytes of those present
    chunks_removed: int = 0
    bytes_removed: int = 0
    chunks_kept_recent: int = 0  # unreferenced, but newer than the cutoff
    tmp_removed: int = 0
    indexes_removed: list[str] = field(default_factory=list)  # point ids without manifest


def _mark(store: VaultStore) -> tuple[set[bytes], int]:
    referenced: set[bytes] = set()
    points = 0
    for point_id in store.list_manifests():
        try:
            m = store.read_manifest(point_id)
        except PointNotFound:
            continue  # deleted since listed
        points += 1
        for disk in m.disks:
            if disk.index is None:
                continue
            try:
                referenced |= store.read_point_index(m, disk.target).referenced()
            except IndexCorrupt:
                if not store.manifest_path(point_id).exists():
                    break  # the point was deleted under us: its indexes went with it
                raise
    return referenced, points


def _newest_mtime(directory: Path) -> float:
    """The latest change in an index directory (+inf when it vanished meanwhile)."""
    try:
        newest = directory.stat().st_mtime
        for entry in os.scandir(directory):
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    except FileNotFoundError:
        return float("inf")
    return newest


def collect_garbage(
    store: VaultStore,
    *,
    grace_seconds: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_WAIT,
    cancel: Callable[[], bool] | None = None,
) -> GcReport:
    """Mark from every manifest's indexes; sweep unreferenced files older than the cutoff.

    ``cancel`` is polled after the mark, every 1024 files of the scan and of the sweep; when it
    returns True, :class:`Cancelled` is raised.  Stopping anywhere is safe: only unreferenced
    files past the cutoff are ever deleted, and the next GC finds what this one left."""

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled(operation="garbage collection")

    with store.gc_lock():
        gc_start = time.time()
        writers = store.writers.live()
        starts = [gc_start - max(0.0, grace_seconds)] + [w.started_at for w in writers]
        cutoff = min(starts) - CLOCK_SLACK
        report = GcReport(dry_run=dry_run, cutoff=cutoff, writers=[w.name for w in writers])
        referenced, report.points = _mark(store)
        report.chunks_referenced = len(referenced)
        check()

        candidates: list[Path] = []
        for n, entry in enumerate(store.chunks.scan()):
            if n % 1024 == 1023:
                check()
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if is_chunk_name(entry.name):
                report.chunks_scanned += 1
                if bytes.fromhex(entry.name) in referenced:
                    report.bytes_referenced += st.st_size
                elif st.st_mtime < cutoff:
                    candidates.append(Path(entry.path))
                else:
                    report.chunks_kept_recent += 1
            elif is_tmp_name(entry.name) and st.st_mtime < cutoff:
                candidates.append(Path(entry.path))

        for entry in os.scandir(store.path / MANIFESTS):  # a crash while writing a manifest
            if is_tmp_name(entry.name) and entry.stat().st_mtime < cutoff:
                candidates.append(Path(entry.path))

        manifests = set(store.list_manifests())
        orphans = [
            p
            for p in store.list_index_dirs()
            if p not in manifests and _newest_mtime(store.path / INDEXES / p) < cutoff
        ]
        if dry_run:
            for path in candidates:
                if is_chunk_name(path.name):
                    report.chunks_removed += 1
                    report.bytes_removed += path.stat().st_size
                else:
                    report.tmp_removed += 1
            report.indexes_removed = orphans
            return report

        for start in range(0, max(len(candidates), 1), 1024):  # the lock even with none
            check()  # between batches: the vault lock is not held while we look
            with store.exclusive_lock(lock_timeout):
                _sweep(candidates[start : start + 1024], cutoff, report)
        check()
        for point_id in orphans:
            if not store.manifest_path(point_id).exists():
                shutil.rmtree(store.path / INDEXES / point_id, ignore_errors=True)
                report.indexes_removed.append(point_id)
        return report


def _sweep(candidates: list[Path], cutoff: float, report: GcReport) -> None:
    """Re-check and unlink candidates; the caller holds the vault's exclusive lock."""
    for path in candidates:
        try:
            st = path.stat()
            if st.st_mtime >= cutoff:  # touched since the scan: in use again
                report.chunks_kept_recent += 1
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        if is_chunk_name(path.name):
            report.chunks_removed += 1
            report.bytes_removed += st.st_size
        else:
            report.tmp_removed += 1
