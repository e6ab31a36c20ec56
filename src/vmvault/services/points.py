"""Operations on recovery points: restoring disks, deleting, verifying, and reclaiming space
(GC).  Listing them is :mod:`vmvault.services.point_listing`'s.

**Cancel.**  A ``--disks-only`` restore (phase ``writing``, which journals the images it
writes; a ``written`` step per finished image, for start-up recovery: see
:mod:`vmvault.services.restore.clean_up`) checks for a cancel between chunks;
a cancelled or failed one removes the images it had written (the partial one is removed by
the dataplane), so no half set of disks is left.  A verify (phase ``verifying``) checks
between chunks; it writes nothing, so nothing is left.  A GC (phase ``collecting``) checks after its
mark and between batches of 1,024 files of its scan and sweep; stopping anywhere is safe (it
only ever deletes unreferenced files, and the next GC finds what this one left).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.gc import DEFAULT_GRACE, GcReport, collect_garbage
from vmvault.dataplane.heal import HealedChunk
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.restore import RestoreResult, restore_disk
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    Cancelled,
    InsufficientSpace,
    InvalidInput,
    RestoreTargetExists,
    VerifyFailed,
)
from vmvault.domain.inputs import quoted
from vmvault.domain.job import JobType
from vmvault.domain.recovery_point import DamagedDisk, RecoveryPoint
from vmvault.domain.vault import Vault
from vmvault.services import holdings, immutability, soft_delete
from vmvault.services.context import Service, ServiceContext
from vmvault.services.healing import Healing, ReadPlan, findings
from vmvault.services.jobs import JobContext, JobOutcome
from vmvault.services.paths import UserPath, check_writable, nearest_existing, user_path
from vmvault.services.point_listing import PointListing
from vmvault.services.restore import journal

FORMATS = ("qcow2", "raw")


@dataclass
class DiskRestore:
    target: str
    path: Path
    result: RestoreResult


@dataclass
class RestoreOutcome:
    point: RecoveryPoint
    disks: list[DiskRestore]
    domain_xml: Path


@dataclass
class VerifySummary:
    points: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    broken: dict[str, list[str]] = field(default_factory=dict)  # point id → problems
    #: point id → each chunk healed (disk, chunk, the vault it came from, ranges)
    healed: dict[str, list[HealedChunk]] = field(default_factory=dict)
    #: point id → the damage left (marked in the catalog)
    damaged: dict[str, list[DamagedDisk]] = field(default_factory=dict)


@dataclass
class VerifyScope:
    vault: Vault
    vm_uuid: str | None
    vm_label: str | None
    point_ids: list[str]


class PointService(Service):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.reads = PointListing(ctx)

    # --- restore (disks only) -------------------------------------------------------------------

    def restore_disks(
        self,
        vm_ref: str,
        point_id: str,
        directory: str,
        *,
        fmt: str = "qcow2",
        overwrite: bool = False,
        from_vault: str | None = None,
    ) -> JobOutcome[RestoreOutcome]:
        """Rebuild every disk of the point as an image in ``directory`` + the domain XML,
        read from ``from_vault`` (a vault holding the point or a copy; default its own).

        Refused up front (nothing written): unknown VM or point, a point of another VM, an
        unknown format, a directory that cannot be written or lacks the space, existing files
        without ``overwrite``.
        """
        return self.prepare_disks(
            vm_ref, point_id, directory, fmt=fmt, overwrite=overwrite, from_vault=from_vault
        )()

    def prepare_disks(
        self,
        vm_ref: str,
        point_id: str,
        directory: str,
        *,
        fmt: str = "qcow2",
        overwrite: bool = False,
        from_vault: str | None = None,
    ) -> Callable[[], JobOutcome[RestoreOutcome]]:
        """Every check of :meth:`restore_disks` (a bad target raises; only the directory may
        be created), and the checked restore, to run (``restore --set`` checks every VM
        before the first runs)."""
        if fmt not in FORMATS:
            raise InvalidInput("use qcow2 or raw", what=f"format {quoted(fmt)}")
        where = user_path(directory, "--dir")
        vm = self.reads.find_vm(vm_ref)
        point = self.reads.get(point_id)
        if point.vm_uuid != vm.uuid:
            raise InvalidInput(
                f"it belongs to VM {point.vm_name} ({point.vm_uuid})", what=f"point {point_id}"
            )
        with self.uow() as uow:
            source = holdings.vault_holding(uow, point, from_vault)
        # POINT_DAMAGED: refused here (unless no vault was named and another vault holds it
        # intact: read from there)
        reading = Healing(self.ctx).reading_store(point, source, named=from_vault is not None)
        vault = self.vaults.resolve(reading.vault)
        target_dir = where.path
        plan = {
            d.target: target_dir / f"{point.vm_name}-{d.target}.{fmt}"
            for d in point.disks
            if not d.excluded
        }
        xml_path = target_dir / f"{point.vm_name}.xml"
        store = reading.store
        manifest = store.read_manifest(point.id)
        # Sparse images take the non-zero chunks only; a qcow2 is converted from a sparse raw
        # written next to it, so it needs that twice.
        need = sum(
            sum(1 for cid in store.read_point_index(manifest, t).ids if cid != ZERO_ID)
            * store.chunk_size
            for t in plan
        ) * (2 if fmt == "qcow2" else 1)
        _check_target_dir(where, [*plan.values(), xml_path], overwrite, need)
        work = partial(self._restore, reading, point, plan, xml_path, fmt, overwrite)
        return partial(self.runner.run, JobType.RESTORE, vault.name, vm.uuid, vm.label, work)

    def _restore(
        self,
        reading: ReadPlan,
        point: RecoveryPoint,
        plan: dict[str, Path],
        xml_path: Path,
        fmt: str,
        overwrite: bool,
        ctx: JobContext,
    ) -> RestoreOutcome:
        store = reading.store
        if reading.note:
            ctx.log(reading.note)
        manifest = store.read_manifest(point.id)
        total = sum(d.size for d in point.disks if not d.excluded)
        done: list[DiskRestore] = []
        targets = [journal.WriteTarget(t, path, path) for t, path in plan.items()]
        ctx.phase(journal.WRITING, **journal.writing(targets, disks_only=True))
        try:
            self._restore_each(store, manifest, plan, fmt, overwrite, total, done, ctx)
        except BaseException:
            for d in done:  # a half set of disks is no restore: leave none
                d.path.unlink(missing_ok=True)
                ctx.log(f"removed {d.path}: the restore did not finish")
            raise
        finally:
            Healing(self.ctx).report(reading, point, ctx)
        tmp = xml_path.with_name(f".{xml_path.name}.tmp")
        tmp.write_text(manifest.domain_xml)
        os.replace(tmp, xml_path)
        ctx.log(f"domain XML written to {xml_path}")
        return RestoreOutcome(point, done, xml_path)

    def _restore_each(
        self,
        store: VaultStore,
        manifest: Manifest,
        plan: dict[str, Path],
        fmt: str,
        overwrite: bool,
        total: int,
        done: list[DiskRestore],
        ctx: JobContext,
    ) -> None:
        base = 0
        with store.reader():
            for target, path in plan.items():
                index = store.read_point_index(manifest, target)

                def progress(n: int, _todo: int, offset: int = base) -> None:
                    ctx.progress(offset + n, total)

                ctx.log(f"restoring {target} ({index.disk_size:,} B) to {path}")
                res = restore_disk(
                    store,
                    index,
                    path,
                    fmt=fmt,
                    workers=self.workers,
                    overwrite=overwrite,
                    progress=progress,
                    cancel=ctx.cancelled,
                )
                base += index.disk_size
                ctx.log(
                    f"{target}: {res.bytes_written:,} B written in {res.seconds:.2f}s, "
                    f"{res.chunks_zero} zero chunks left sparse"
                )
                ctx.record(journal.WRITTEN, target=target, path=str(path))
                done.append(DiskRestore(target, path, res))

    # --- delete ----------------------------------------------------------------------------------

    def delete_point(self, point_id: str, vault_name: str | None = None) -> JobOutcome[None]:
        """Remove one recovery point from every vault that holds it, or — ``vault_name`` —
        from that vault only (docs/copies.md), through the one deletion helper
        (:func:`soft_delete.remove_holding`): soft-deleted in each vault whose soft delete is
        on (docs/soft-delete.md), deleted at once where it is off (manifest, indexes, then the
        catalog).  Copies first, the own vault last.  Refused up front: a point soft-deleted
        in the vault named (or everywhere), ``POINT_SOFT_DELETED``."""
        point = self.reads.get(point_id)
        with self.uow() as uow:
            names = holdings.holders(uow, point)
            if vault_name is not None or not names:  # not held normally: the refusal
                names = [holdings.vault_holding(uow, point, vault_name)]
        now = self.clock()
        for name in names:
            immutability.check_removal(self.vaults.resolve(name), point, now)
        stores = [(n, self.vaults.open_store(self.vaults.resolve(n))) for n in names]
        own = self.vaults.resolve(point.vault)

        def work(ctx: JobContext) -> None:
            for name, store in sorted(stores, key=lambda s: s[0] == point.vault):  # copies first
                removed = soft_delete.remove_holding(self.ctx, store, name, point.id)
                if removed is not None:
                    ctx.log(f"{removed.describe()} ({point.vm_name})")

        return self.runner.run(JobType.PRUNE, own.name, point.vm_uuid, point.vm_name, work)

    # --- verify ----------------------------------------------------------------------------------

    def verify(
        self,
        vault_name: str | None,
        *,
        point_id: str | None = None,
        vm_ref: str | None = None,
    ) -> JobOutcome[VerifySummary]:
        """Re-read and re-hash every chunk the chosen points reference in the vault (a
        ``verify`` job); heal damaged chunks from the other vaults holding the point, and mark
        what cannot be healed (:mod:`vmvault.services.healing`)."""
        scope = self.verify_scope(vault_name, point_id=point_id, vm_ref=vm_ref)
        store = self.vaults.open_store(scope.vault)
        work = partial(self._verify, store, scope.vault.name, scope.point_ids)
        return self.runner.run(
            JobType.VERIFY, scope.vault.name, scope.vm_uuid, scope.vm_label, work
        )

    def verify_scope(
        self, vault_name: str | None, *, point_id: str | None = None, vm_ref: str | None = None
    ) -> VerifyScope:
        """What a verify covers: one point, a VM's points, or the whole vault, as held in the
        vault (for a point: its own vault unless ``vault_name`` names a vault holding a copy);
        and the VM it locks (a whole-vault verify touches no VM: it needs no VM lock).  A
        point and a VM together are refused: the CLI, the API and a queued job share this one
        check."""
        if point_id is not None and vm_ref is not None:
            raise InvalidInput(
                "give one point, one VM, or neither (every point of the vault)",
                what="a verify of both a point and a VM",
            )
        if point_id is not None:
            point = self.reads.get(point_id)
            with self.uow() as uow:  # POINT_NOT_IN_VAULT when the vault holds no copy
                holder = holdings.vault_holding(uow, point, vault_name)
            vault = self.vaults.resolve(holder)
            return VerifyScope(vault, point.vm_uuid, point.vm_name, [point.id])
        vault = self.vaults.resolve(vault_name)
        vm = self.reads.find_vm(vm_ref) if vm_ref is not None else None
        with self.uow() as uow:
            ids = [p.id for p in holdings.held_in(uow, vault.name, vm.uuid if vm else None)]
        if vm is None:
            return VerifyScope(vault, None, None, ids)
        return VerifyScope(vault, vm.uuid, vm.label, ids)

    def verify_findings(self, job_id: int) -> dict[str, list[dict[str, Any]]]:
        """What job ``job_id`` healed and found damaged, from its journal (``findings``)."""
        with self.uow() as uow:
            return findings(uow.jobs.steps(job_id))

    def _verify(
        self, store: VaultStore, vault: str, point_ids: Sequence[str], ctx: JobContext
    ) -> VerifySummary:
        summary = VerifySummary()
        healing = Healing(self.ctx)
        ctx.phase("verifying")

        def check_cancel(_done: int, _total: int) -> None:
            if ctx.cancelled():
                raise Cancelled(operation=f"verify job {ctx.job.id}")

        with store.reader():
            for i, pid in enumerate(point_ids):
                with self.uow() as uow:
                    point = uow.points.get(pid)
                if point is None:  # deleted since the job was asked for
                    continue
                health = healing.verify_point(store, vault, point, ctx, check_cancel)
                summary.points += 1
                for disk in health.report.disks.values():
                    summary.chunks_checked += disk.chunks_checked
                    summary.bytes_checked += disk.bytes_checked
                if health.healed:
                    summary.healed[pid] = health.healed
                    sources = sorted({h.source for h in health.healed})
                    ctx.warn(
                        f"point {pid}: {len(health.healed)} damaged chunk(s) healed in vault "
                        f"{vault} from vault {', '.join(sources)}: check the vault's storage"
                    )
                if health.problems or health.damage:
                    summary.broken[pid] = health.problems
                    summary.damaged[pid] = health.damage
                    for line in health.problems:
                        ctx.log(f"point {pid}: {line}")
                ctx.progress(i + 1, len(point_ids))
        healed = sum(len(h) for h in summary.healed.values())
        ctx.log(
            f"{summary.points} point(s), {summary.chunks_checked} chunk reads, "
            f"{summary.bytes_checked:,} B checked, {healed} chunk(s) healed, "
            f"{len(summary.broken)} broken"
        )
        if summary.broken:
            raise VerifyFailed(count=len(summary.broken), points=", ".join(sorted(summary.broken)))
        return summary

    # --- gc --------------------------------------------------------------------------------------

    def gc(
        self, vault_name: str | None, dry_run: bool = False, *, grace: float = DEFAULT_GRACE
    ) -> JobOutcome[GcReport]:
        """Purge the vault's soft-deleted points whose period has ended, then remove the chunks
        no point references that are older than ``grace`` seconds (docs/vault-format.md §8)."""
        vault = self.vaults.resolve(vault_name)
        store = self.vaults.open_store(vault)
        work = partial(self._gc, vault, store, dry_run, grace)
        return self.runner.run(JobType.GC, vault.name, None, None, work)

    def _gc(
        self, vault: Vault, store: VaultStore, dry_run: bool, grace: float, ctx: JobContext
    ) -> GcReport:
        ctx.phase("purging")
        purged = soft_delete.purge_expired(self.ctx, vault, store, ctx, dry_run)
        ctx.phase("collecting")
        report = collect_garbage(store, grace_seconds=grace, dry_run=dry_run, cancel=ctx.cancelled)
        report.points_purged = purged
        ctx.log(
            f"{report.points} point(s), {report.chunks_scanned} chunks scanned, "
            f"{report.chunks_referenced} referenced, {report.chunks_removed} removed "
            f"({report.bytes_removed:,} B), {report.chunks_kept_recent} kept (too recent), "
            f"{report.chunks_kept_retained} kept (still retained by the storage), "
            f"running backups: {', '.join(report.writers) or 'none'}"
        )
        return report


def _check_target_dir(where: UserPath, files: list[Path], overwrite: bool, need: int) -> None:
    directory = where.path
    if directory.exists() and not directory.is_dir():
        raise InvalidInput("it is not a directory", what=where.said)
    existing = [f for f in files if f.exists()]
    if existing and not overwrite:
        raise RestoreTargetExists(target=", ".join(str(f) for f in existing))
    check_writable(directory, where.said)
    probe = nearest_existing(directory)
    free = shutil.disk_usage(probe).free
    if free < need:
        raise InsufficientSpace(path=probe, need=need, free=free)
    directory.mkdir(parents=True, exist_ok=True)
