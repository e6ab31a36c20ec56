"""Step 2, staging: every disk restored next to its final path and verified, the VM untouched.

Each disk is written to ``.<final name>.vmvault-staging`` in its final directory (made 0755
when missing), every chunk checked against its id as it is read; then QEMU must read the
image with the disk's exact size.  Any failure or a cancel removes every staged image and
every directory made: the VM was not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.domain.errors import RestoreVerifyFailed
from vmvault.services.jobs import JobContext
from vmvault.services.restore import journal
from vmvault.services.restore.model import RestoredDisk, RestoreReport, RestoreRequest

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def stage(svc: RestoreService, req: RestoreRequest, report: RestoreReport, ctx: JobContext) -> None:
    """Restore and verify every disk into its staging file; on failure remove them all."""
    plan = req.plan
    ctx.phase(journal.READING)
    indexes = {d.target: req.store.read_point_index(req.manifest, d.target) for d in plan.disks}
    total = sum(
        sum(ix.chunk_length(i) for i, c in enumerate(ix.ids) if c != ZERO_ID)
        for ix in indexes.values()
    )
    base = 0
    made_dirs: list[Path] = []
    targets = [journal.WriteTarget(d.target, d.staging, d.path) for d in plan.disks]
    try:
        ctx.phase(journal.WRITING, **journal.writing(targets))
        for d in plan.disks:
            made = svc.files.make_dirs(d.path.parent)
            made_dirs += made
            ctx.record(journal.STAGING, target=d.target, dirs=[str(p) for p in made])
            index = indexes[d.target]
            if index.disk_size != d.size:
                raise RestoreVerifyFailed(
                    target=d.target,
                    why=f"its index holds {index.disk_size} B, the point {d.size} B",
                )

            def progress(n: int, _todo: int, offset: int = base) -> None:
                ctx.progress(offset + n, total)

            ctx.log(f"restoring {d.target} ({index.disk_size:,} B, {d.fmt}) to {d.staging}")
            res = svc.write_disk(
                req.store,
                index,
                d.staging,
                fmt=d.fmt,
                workers=svc.workers,
                overwrite=True,
                progress=progress,
                cancel=ctx.cancelled,
            )
            base += res.bytes_written
            size = svc.driver.image_size(d.staging, d.fmt, d.target)
            virtual = -(-index.disk_size // 512) * 512 if d.fmt == "qcow2" else index.disk_size
            if size != virtual:
                raise RestoreVerifyFailed(
                    target=d.target, why=f"QEMU reads {size} B, the disk had {virtual} B"
                )
            secs = max(res.seconds, 1e-6)
            ctx.log(
                f"{d.target}: {res.bytes_written:,} B written in {res.seconds:.2f}s "
                f"({res.bytes_written / secs / 1e6:.0f} MB/s), {res.chunks_written} chunks "
                f"verified, {res.chunks_zero} zero chunks left sparse; QEMU reads "
                f"{size:,} B as expected"
            )
            ctx.record(
                journal.STAGED, target=d.target, path=str(d.staging), bytes=res.bytes_written
            )
            report.disks.append(
                RestoredDisk(d.target, d.path, d.link, res.bytes_written, res.seconds)
            )
    except BaseException:
        unstage(svc, req, made_dirs)
        who = req.live.name if req.live else req.vm.label
        ctx.log(f"staged images removed; nothing was changed ({who} untouched)")
        raise


def unstage(svc: RestoreService, req: RestoreRequest, made_dirs: Sequence[Path] = ()) -> None:
    """Remove every staged image, then the directories made for them (innermost first)."""
    for d in req.plan.disks:
        svc.files.remove(d.staging)
    for directory in reversed(made_dirs):
        svc.files.remove_dir(directory)
