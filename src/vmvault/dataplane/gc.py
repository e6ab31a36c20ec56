"""Garbage collection: delete the chunks no recovery point references — never one that is.

**Mark.** Read every manifest and each of its disk indexes (checked against the manifest's
digest); the union of their chunk ids is the referenced set.  If any manifest or index cannot
be read, GC stops before deleting anything (a partial mark could delete live chunks): the
error names the point, which the operator repairs or deletes.

**Sweep.** A chunk object is deleted when it is not referenced *and* its mtime is older than
the cutoff::

    cutoff = min(gc_start - grace, oldest running writer's start) - CLOCK_SLACK

Candidates are found without locks (``list``); each is then re-checked (``stat``) and deleted
under the vault's exclusive lock, which writers take in shared mode around "exists? then
touch" (and around storing a reuse list) and readers hold for their whole run.  Each hold
of that lock that will delete starts by replacing the GC epoch and reading every reuse list
(:mod:`vmvault.dataplane.reuse`): a chunk in one is kept.  Reuse lists older than the cutoff
are removed at the end.  The in-flight debris of crashed writers
(``StorageBackend.sweep_leftovers``: temporary files, incomplete uploads) and the index
objects of points without a manifest are swept by the same mtime rule.  Everything goes
through the storage contract; times are the backend's (``StorageBackend.now``), the clock that
stamps mtimes.

**Why a backup running at the same time is safe.** Such a backup holds a writer registration
(``store.writer``) from before its first chunk until after its manifest.  Each chunk its
point references was, during that time, either written by it (file mtime = write time) or
found present and touched by it (``StorageBackend.touch``: mtime = touch time), or reused
from the previous index and either touched or held by the writer's reuse list (whose mtime
is at or after the writer's start; docs/vault-format.md §8 has that case).  Either way the
chunk's mtime (or its list's) is at or after the writer's start.  If the writer
registered before GC read the registrations, the cutoff is at or before its start minus the
slack, so none of those chunks is a candidate.  If it registered later, all its writes and
touches happen after ``gc_start``, which is after the cutoff.  A touch and the sweep's
re-check + unlink of the same chunk are serialised by the vault lock, so the sweep either
sees the new mtime or deletes the chunk before the touch, which then finds it missing and
the writer stores it again.  ``CLOCK_SLACK`` covers coarse timestamps (an mtime can lag
the clock by a kernel tick, or by up to a second where the backend keeps whole seconds, so an
object written just after ``gc_start`` could otherwise look older than it); ``grace`` covers
writers that bypass registration and clocks of network file systems.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vmvault.dataplane.chunkstore import is_chunk_name, space_errors
from vmvault.dataplane.locks import DEFAULT_WAIT
from vmvault.dataplane.vault import INDEXES, VaultStore
from vmvault.domain.errors import Cancelled, IndexCorrupt, PointNotFound
from vmvault.storage.backend import ObjectInfo
from vmvault.storage.errors import ObjectMissing

DEFAULT_GRACE = 3600.0
CLOCK_SLACK = 2.0
_BATCH = 1024  # candidates deleted per hold of the exclusive lock; also the cancel interval


@dataclass
class GcReport:
    dry_run: bool
    cutoff: float  # epoch seconds: unreferenced objects older than this are removed
    points: int = 0
    writers: list[str] = field(default_factory=list)  # running backups seen
    chunks_scanned: int = 0
    chunks_referenced: int = 0  # distinct ids referenced by some point
    bytes_referenced: int = 0  # chunk object bytes of those present
    chunks_removed: int = 0
    #: unreferenced chunks the storage still retains (S3 Object Lock): a later GC deletes them
    chunks_kept_retained: int = 0
    bytes_removed: int = 0
    chunks_kept_recent: int = 0  # unreferenced, but newer than the cutoff
    tmp_removed: int = 0  # in-flight debris of crashed writers
    indexes_removed: list[str] = field(default_factory=list)  # point ids without manifest
    reuse_lists_removed: int = 0  # incrementals' reuse lists older than the cutoff
    #: soft-deleted points purged before the mark (or due, dry run): set by the GC service
    points_purged: list[str] = field(default_factory=list)


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
                if not store.has_manifest(point_id):
                    break  # the point was deleted under us: its indexes went with it
                raise
    return referenced, points


def _orphan_indexes(store: VaultStore, cutoff: float) -> list[str]:
    """Points with index objects and no manifest, whose newest index is older than cutoff."""
    groups: dict[str, list[ObjectInfo]] = {}
    for info in store.backend.list_objects(INDEXES + "/"):
        groups.setdefault(info.key.split("/")[1], []).append(info)
    manifests = set(store.list_manifests())
    return [
        point
        for point, infos in sorted(groups.items())
        if point not in manifests and max(i.mtime for i in infos) < cutoff
    ]


def collect_garbage(
    store: VaultStore,
    *,
    grace_seconds: float = DEFAULT_GRACE,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_WAIT,
    cancel: Callable[[], bool] | None = None,
) -> GcReport:
    """Mark from every manifest's indexes; sweep unreferenced objects older than the cutoff.

    ``cancel`` is polled after the mark, every 1024 objects of the scan and of the sweep; when
    it returns True, :class:`Cancelled` is raised.  Stopping anywhere is safe: only
    unreferenced objects past the cutoff are ever deleted, and the next GC finds what this one
    left.  A storage failure (an S3 endpoint gone) ends it with the error users see
    (``STORAGE_UNREACHABLE`` …): what was deleted by then was garbage, the rest stays."""
    with space_errors(store.location):
        return _collect(store, grace_seconds, dry_run, lock_timeout, cancel)


def _collect(
    store: VaultStore,
    grace_seconds: float,
    dry_run: bool,
    lock_timeout: float,
    cancel: Callable[[], bool] | None,
) -> GcReport:
    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled(operation="garbage collection")

    backend = store.backend
    with store.gc_lock():
        gc_start = backend.now()
        writers = store.writers.live()
        starts = [gc_start - max(0.0, grace_seconds)] + [w.started_at for w in writers]
        cutoff = min(starts) - CLOCK_SLACK
        report = GcReport(dry_run=dry_run, cutoff=cutoff, writers=[w.name for w in writers])
        referenced, report.points = _mark(store)
        report.chunks_referenced = len(referenced)
        check()

        candidates: list[ObjectInfo] = []
        for n, info in enumerate(store.chunks.scan()):
            if n % _BATCH == _BATCH - 1:
                check()
            name = info.key.rpartition("/")[2]
            if not is_chunk_name(name):
                continue  # a quarantined chunk (<id>.bad): kept for the operator
            report.chunks_scanned += 1
            if bytes.fromhex(name) in referenced:
                report.bytes_referenced += info.size
            elif info.mtime < cutoff:
                candidates.append(info)
            else:
                report.chunks_kept_recent += 1

        orphans = _orphan_indexes(store, cutoff)
        if dry_run:
            report.chunks_removed = len(candidates)
            report.bytes_removed = sum(info.size for info in candidates)
            report.tmp_removed = backend.sweep_leftovers(cutoff, dry_run=True)
            report.indexes_removed = list(orphans)
            return report

        for start in range(0, max(len(candidates), 1), _BATCH):  # the lock even with none
            check()  # between batches: the vault lock is not held while we look
            batch = candidates[start : start + _BATCH]
            with store.exclusive_lock(lock_timeout):
                # before any delete: a new epoch, then what running incrementals reuse
                reused = store.reuse.begin_delete_step(cutoff) if batch else frozenset()
                _sweep(store, batch, cutoff, reused, report)
        check()
        store.reuse.ensure_epoch()
        report.reuse_lists_removed = store.reuse.remove_older_than(cutoff)
        report.tmp_removed = backend.sweep_leftovers(cutoff)
        for point_id in orphans:
            if not store.has_manifest(point_id):
                backend.delete_prefix(f"{INDEXES}/{point_id}/")
                report.indexes_removed.append(point_id)
        return report


def _sweep(
    store: VaultStore,
    candidates: list[ObjectInfo],
    cutoff: float,
    reused: frozenset[bytes],
    report: GcReport,
) -> None:
    """Re-check and delete candidates, but none in a reuse list (``reused``); the caller
    holds the vault's exclusive lock."""
    backend = store.backend
    for info in candidates:
        if bytes.fromhex(info.key.rpartition("/")[2]) in reused:  # an incremental's, now
            report.chunks_kept_recent += 1
            continue
        try:
            now = backend.stat(info.key)
        except ObjectMissing:
            continue
        if now.mtime >= cutoff:  # touched since the scan: in use again
            report.chunks_kept_recent += 1
            continue
        if not store.chunks.delete_unreferenced(info.key):
            report.chunks_kept_retained += 1  # the storage still retains it (Object Lock)
            continue
        report.chunks_removed += 1
        report.bytes_removed += now.size
