"""Reading the point's disks into the vault (phase ``reading``).

Each disk goes through ``dataplane.backup.backup_disk``: the allocated extents for a full
read, the dirty extents since the previous point's checkpoint for an incremental one (every
other chunk id is taken from the previous point's index, so each point holds a full index).
Chunks are committed to the vault as they are read; the index of each disk is written later,
by :mod:`.commit`.  A cancel is seen between chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vmvault.dataplane.backup import DiskBackupResult, backup_disk, claim_parents
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.services.backup.plan import BackupPlan
from vmvault.services.jobs import JobContext
from vmvault.services.ports import PointSession


def read_disks(
    store: VaultStore,
    session: PointSession,
    plan: BackupPlan,
    previous: Manifest | None,
    epoch: bytes | None,
    ctx: JobContext,
    *,
    workers: int,
    cancel: Callable[[], bool],
) -> dict[str, DiskBackupResult]:
    """Read every disk of ``plan`` from ``session``; ``previous``: the manifest of the point
    an incremental read starts from, ``epoch`` the GC epoch read before it
    (``VaultStore.read_parent``).  Returns each disk's result (with its index)."""
    results: dict[str, DiskBackupResult] = {}
    total = plan.total
    done_before = 0
    parents = _parent_indexes(store, plan, previous)
    held = claim_parents(store, parents.values(), epoch)  # one reuse list for all the disks
    for disk in plan.disks:
        source = session.source(disk.target)
        prev_index: DiskIndex | None = parents.get(disk.target)
        dirty = source.dirty_extents() if prev_index is not None else None

        def progress(done: int, todo: int, base: int = done_before) -> None:
            ctx.progress(base + done, total)

        t0 = time.monotonic()
        res = backup_disk(
            store,
            source,
            previous=prev_index,
            dirty=dirty,
            epoch=None,  # the claim is made above, for all the disks: held, or touched
            held=held,
            workers=workers,
            progress=progress,
            cancel=cancel,
        )
        secs = max(time.monotonic() - t0, 1e-6)
        results[disk.target] = res
        done_before += plan.sizes[disk.target]
        ctx.log(
            f"disk {disk.target}: read {res.bytes_read:,} B in {secs:.2f}s "
            f"({res.bytes_read / secs / 1e6:.0f} MB/s), new {res.bytes_new:,} B, "
            f"{res.chunks_new} new / {res.chunks_dedup} dedup / "
            f"{res.chunks_reused} reused / {res.chunks_zero} zero chunks"
        )
    return results


def _parent_indexes(
    store: VaultStore, plan: BackupPlan, previous: Manifest | None
) -> dict[str, DiskIndex]:
    """The previous point's index of each disk read incrementally, read before the first
    disk (at once on object storage: one round trip for all, not one per disk)."""
    if previous is None:
        return {}
    targets = [d.target for d in plan.disks if plan.reads[d.target].incremental]
    return dict(
        zip(
            targets, store.each(lambda t: store.read_point_index(previous, t), targets), strict=True
        )
    )
