"""Committing a point: indexes → manifest → catalog row (phases ``writing``, ``committing``).

The order is the vault's write ordering (``docs/vault-format.md``): every disk's index, then
the manifest — from here on the point exists in the vault — then, in one catalog transaction,
the recovery point's row, the new checkpoint's record (with the XML to redefine it) and the
journal's ``committed`` step.  A failure before the manifest leaves indexes that the caller's
discard (or a later clean-up) removes; the catalog transaction is all or nothing.  A process
that died between the manifest and the catalog row left a complete point: the clean-up
commits it from its manifest (:func:`point_from_manifest`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from vmvault.dataplane.backup import DiskBackupResult
from vmvault.dataplane.manifest import DiskEntry, Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.consistency import HookOutcome
from vmvault.domain.recovery_point import (
    BackupStep,
    CheckpointRecord,
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
    TakenPoint,
    UnfinishedBackup,
)
from vmvault.domain.restore_test import fs_summary
from vmvault.services.backup.plan import BackupPlan
from vmvault.services.jobs import JobContext
from vmvault.services.ports import BackupDriver, UnitOfWork, UnitOfWorkFactory


def write_indexes(
    store: VaultStore, plan: BackupPlan, results: Mapping[str, DiskBackupResult]
) -> list[DiskEntry]:
    """Each disk's index into the vault; the manifest's disk entries (excluded disks too)."""
    entries: list[DiskEntry] = []
    digests = store.each(  # at once on object storage: one round trip for all
        lambda disk: store.write_index(plan.point_id, disk.target, results[disk.target].index),
        plan.disks,
    )
    for disk, digest in zip(plan.disks, digests, strict=True):
        res = results[disk.target]
        entries.append(
            DiskEntry(
                target=disk.target,
                size=plan.sizes[disk.target],
                index=f"{disk.target}.fidx",
                index_digest=digest,
                bytes_read=res.bytes_read,
                bytes_new=res.bytes_new,
            )
        )
    for d in plan.vm.excluded_disks:
        entries.append(DiskEntry(target=d.target, size=0, excluded=True, reason=d.reason))
    return entries


def method_reason(plan: BackupPlan, taken: TakenPoint) -> str:
    """Why the point was taken as it was: the adapter's account when it froze (or fell back
    from a failed freeze to saved-state), else the plan's reason for its method."""
    if plan.choice.quiesce == "freeze" or taken.method is not plan.choice.method:
        return taken.reason
    return plan.choice.reason


def point_checkpoint(plan: BackupPlan) -> str | None:
    """The checkpoint the point records: the new one, or for an offline point (which cannot
    create one) the previous checkpoint, so the next backup is incremental from it again."""
    return plan.incremental_from if plan.offline else plan.checkpoint


def write_manifest(
    store: VaultStore,
    plan: BackupPlan,
    taken: TakenPoint,
    entries: list[DiskEntry],
    domain_xml: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Publish the manifest: the point exists in the vault from here on.  ``extra``: more
    of the manifest's ``extra`` (a backup set's ``set``)."""
    vm = plan.vm
    store.write_manifest(
        Manifest(
            point_id=plan.point_id,
            vm_uuid=vm.uuid,
            vm_name=vm.name,
            created_at=plan.created_at.isoformat(),
            domain_xml=domain_xml,
            method=taken.method.value,
            consistency=taken.consistency.value,
            frozen_ms=taken.frozen_ms,
            checkpoint=point_checkpoint(plan),
            disks=entries,
            extra={
                "host_uri": vm.host_uri,
                "incremental_from": plan.incremental_from,
                # what the guest had mounted: a restore test checks it is back
                "fsinfo": fs_summary(taken.fsinfo),
                # how the point was taken (docs/backup.md, "Consistency")
                "method_reason": method_reason(plan, taken),
                "paused_ms": taken.paused_ms,
                "hooks": taken.hooks.to_json(),
            }
            | (extra or {}),
        )
    )


def recovery_point(
    plan: BackupPlan, taken: TakenPoint, entries: list[DiskEntry], ctx: JobContext
) -> RecoveryPoint:
    formats = {d.target: d.format for d in plan.disks}
    return RecoveryPoint(
        id=plan.point_id,
        vault=plan.vault.name,
        vm_uuid=plan.vm.uuid,
        vm_name=plan.vm.name,
        created_at=plan.created_at,
        consistency=taken.consistency,
        method=taken.method,
        frozen_ms=taken.frozen_ms,
        method_reason=method_reason(plan, taken),
        paused_ms=taken.paused_ms,
        hooks=taken.hooks,
        checkpoint=point_checkpoint(plan),
        disks=[
            PointDisk(
                target=e.target,
                size=e.size,
                format=formats.get(e.target),
                excluded=e.excluded,
                reason=e.reason if e.excluded else plan.reads[e.target].reason,
                incremental=False if e.excluded else plan.reads[e.target].incremental,
                bytes_read=e.bytes_read,
                bytes_new=e.bytes_new,
            )
            for e in entries
        ],
        job_id=ctx.job.id,
        warnings=list(ctx.job.warnings),
    )


def point_from_manifest(
    m: Manifest, vault: str, unfinished: UnfinishedBackup | None, warnings: list[str]
) -> RecoveryPoint:
    """The catalog row of a point from its manifest alone: written by a backup that died
    before its catalog transaction (the journal's ``planned`` step gives each disk's read),
    or, with ``unfinished`` None, found in a vault the catalog never knew (``vault attach``:
    a disk of an incremental point counts as read incrementally; why a disk was read in
    full is not in the manifest)."""
    plan = unfinished.disks if unfinished is not None else {}
    # without a journal: a disk of a point taken incrementally counts as read so
    chained = unfinished is None and m.extra.get("incremental_from") is not None
    backup_set = m.extra.get("set")
    return RecoveryPoint(
        id=m.point_id,
        vault=vault,
        vm_uuid=m.vm_uuid,
        vm_name=m.vm_name,
        created_at=datetime.fromisoformat(m.created_at),
        consistency=Consistency(m.consistency),
        method=Method(m.method),
        frozen_ms=m.frozen_ms or 0,
        method_reason=m.extra.get("method_reason"),
        paused_ms=int(m.extra.get("paused_ms") or 0),
        hooks=HookOutcome.from_json(m.extra["hooks"]) if m.extra.get("hooks") else None,
        checkpoint=m.checkpoint,
        disks=[
            PointDisk(
                target=e.target,
                size=e.size,
                format=plan.get(e.target, {}).get("format"),
                excluded=e.excluded,
                reason=e.reason if e.excluded else plan.get(e.target, {}).get("reason"),
                incremental=not e.excluded
                and bool(plan.get(e.target, {}).get("incremental", chained)),
                bytes_read=e.bytes_read,
                bytes_new=e.bytes_new,
            )
            for e in m.disks
        ],
        set_id=backup_set.get("id") if isinstance(backup_set, dict) else None,
        job_id=unfinished.job_id if unfinished is not None else None,
        warnings=list(warnings),
        retain_until=(
            datetime.fromisoformat(m.extra["retain_until"]) if m.extra.get("retain_until") else None
        ),
    )


def point_rows(
    driver: BackupDriver, plan: BackupPlan, point: RecoveryPoint, job_id: int, now: datetime
) -> Callable[[UnitOfWork], None]:
    """What commits the point, for one catalog transaction: its row, the checkpoint record
    and the job's ``committed`` step (a backup set commits every VM's in one transaction)."""
    vm = plan.vm
    xml = (
        driver.checkpoint_xml(vm.host_uri, vm.uuid, plan.checkpoint)
        if plan.checkpoint is not None
        else None
    )

    def write(u: UnitOfWork) -> None:
        u.points.add(point)
        if plan.checkpoint is not None and xml is not None:
            u.checkpoints.add(
                CheckpointRecord(plan.checkpoint, vm.uuid, point.id, plan.created_at, xml)
            )
        u.vms.save_facts(vm)  # not save(): keeps operator changes made during the backup
        u.jobs.record_step(job_id, BackupStep.COMMITTED, {"point": point.id}, now)

    return write


def record_point(
    uow: UnitOfWorkFactory,
    driver: BackupDriver,
    plan: BackupPlan,
    point: RecoveryPoint,
    ctx: JobContext,
    now: datetime,
) -> None:
    """The catalog row, the checkpoint record and the ``committed`` step, in one transaction."""
    write = point_rows(driver, plan, point, ctx.job.id, now)
    with uow() as u:
        write(u)
        u.commit()
