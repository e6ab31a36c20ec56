"""Copying recovery points to a second vault: one ``copy`` job per VM (docs/copies.md).

:meth:`CopyService.copy` checks the whole request before any job starts (two different,
known vaults; the VMs named, or ``--all``; each named VM with points in the source; vaults
whose chunks a copy can move: :func:`~vmvault.dataplane.copy.copy_mode`), then runs one job
per VM through :meth:`JobRunner.run` (the queue and a policy's copy run the same
:meth:`CopyService.copy_vm`).  **One job per VM** because the job layer's unit of exclusion,
progress, cancel and failure is the VM: a VM whose copy fails does not fail the others, and
a copy holds its VM's conflict key like every other job of that VM (a backup of the VM waits
for it or is refused; a policy queues its copy after the backup, so they never meet).

One job, in order (journal steps, :meth:`JobContext.record`):

0. clean up what earlier copy jobs of the VM into the same vault left: a point whose journal
   says ``copying`` without ``copied`` and that the catalog does not list in the target is
   deleted there (manifest first) — it is sent again below at the cost of its indexes and
   manifest, since its chunks are there;
1. ``copy-planned``: the points of the VM that the source holds and the target does not,
   oldest first (the catalog, read when the job starts);
2. per point: phase ``copying`` (a cancel point; journaled with the point id) →
   :func:`~vmvault.dataplane.copy.copy_point` (chunks B lacks, indexes, verify on B, manifest)
   → the ``point_copies`` row and ``copied`` in one transaction;
3. with a retention for the target (a policy's copy option): the VM's copies in the target
   (not the points whose own vault it is) are pruned by it, the target only (``pruned``).

A cancel or failure in 2 leaves no point in the target for the point being copied (the data
path deletes what it wrote but chunks, which the target's GC reclaims or the next copy
reuses); points copied before it stay copied.  A kill leaves at worst index objects (GC
removes them) or a manifest without its catalog row (step 0 of the next copy removes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from vmvault.dataplane.copy import copy_mode, copy_point, known_ids
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    CopySameVault,
    InvalidInput,
    NothingToCopy,
    PointNotFound,
)
from vmvault.domain.job import JobState, JobType, last_step
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import PointCopy, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmItem
from vmvault.services import holdings, immutability, soft_delete
from vmvault.services.context import Service
from vmvault.services.jobs import JobContext, JobOutcome
from vmvault.services.vm_refs import resolve_vm

PLANNED = "copy-planned"
COPYING = "copying"
COPIED = "copied"
PRUNED = "pruned"
#: How many of a VM's latest copy jobs the next copy looks at for unfinished journals.
RECENT_JOBS = 20


@dataclass
class CopyReport:
    """What one copy job did."""

    source: str
    target: str
    mode: str | None = None  # as-stored | re-encoded (None: nothing to copy)
    points: list[str] = field(default_factory=list)  # copied, oldest first
    already: int = 0  # points of the VM the target held before
    chunks_sent: int = 0
    chunks_present: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)  # removed from the target by retention
    cleaned: list[str] = field(default_factory=list)  # left by a killed copy, removed


@dataclass
class CopyRequest:
    source: Vault
    target: Vault
    vms: list[VmItem]


class CopyService(Service):
    # --- checking a request -----------------------------------------------------------------

    def plan(
        self, from_vault: str, to_vault: str, refs: Sequence[str], all_vms: bool = False
    ) -> CopyRequest:
        """The vaults and VMs of ``vmvault copy``, or the error that refuses the request."""
        if from_vault == to_vault:
            raise CopySameVault(vault=from_vault)
        if all_vms and refs:
            raise InvalidInput("name VMs or give --all, not both", what="VM list")
        if not all_vms and not refs:
            raise InvalidInput("name at least one VM, or give --all", what="VM list")
        source = self.vaults.resolve(from_vault)
        target = self.vaults.resolve(to_vault)
        with self.uow() as uow:
            held = holdings.held_in(uow, source.name)
            if all_vms:
                uuids = sorted({p.vm_uuid for p in held})
                vms = [resolve_vm(uow, u) for u in uuids]
            else:
                vms = []
                for ref in refs:
                    vm = resolve_vm(uow, ref)
                    if vm.uuid not in {v.uuid for v in vms}:
                        vms.append(vm)
        have = {p.vm_uuid for p in held}
        for vm in vms:
            if vm.uuid not in have:
                raise NothingToCopy(vm=f"VM {vm.label}", vault=source.name)
        if not vms:
            raise NothingToCopy(vm="any VM", vault=source.name)
        copy_mode(
            self.vaults.open_store(source),
            self.vaults.open_store(target),
            (source.name, target.name),
        )
        return CopyRequest(source, target, vms)

    # --- running ------------------------------------------------------------------------------

    def copy(
        self, from_vault: str, to_vault: str, refs: Sequence[str], all_vms: bool = False
    ) -> list[JobOutcome[CopyReport]]:
        """One copy job per VM, each run to its end (the request is checked first)."""
        request = self.plan(from_vault, to_vault, refs, all_vms)
        return [
            self.copy_vm(request.source.name, request.target.name, vm.uuid) for vm in request.vms
        ]

    def run_request(self, request: dict[str, object]) -> JobOutcome[CopyReport]:
        """A queued ``copy`` job (services/queue.py): with ``policy``, that policy's copy
        retention prunes the target afterwards."""
        retention = None
        name = request.get("policy")
        if isinstance(name, str):
            with self.uow() as uow:
                record = uow.policies.get(name)
            if record is not None and record.policy.copy_retention is not None:
                retention = (record.policy, record.policy.copy_retention)
        source, target = str(request["from"]), str(request["to"])
        return self.copy_vm(source, target, str(request["vm"]), None, retention)

    def copy_vm(
        self,
        from_vault: str,
        to_vault: str,
        vm_ref: str,
        point_ids: Sequence[str] | None = None,
        retention: tuple[Policy, Retention] | None = None,
    ) -> JobOutcome[CopyReport]:
        """One ``copy`` job: ``vm_ref``'s points (``point_ids``: only those) that the source
        holds and the target does not; then, with ``retention``, prune the target's."""
        if from_vault == to_vault:
            raise CopySameVault(vault=from_vault)
        source = self.vaults.resolve(from_vault)
        target = self.vaults.resolve(to_vault)
        with self.uow() as uow:
            vm = resolve_vm(uow, vm_ref)
        work = partial(self._copy, source, target, vm, point_ids, retention)
        return self.runner.run(JobType.COPY, target.name, vm.uuid, vm.label, work)

    def _copy(
        self,
        source: Vault,
        target: Vault,
        vm: VmItem,
        point_ids: Sequence[str] | None,
        retention: tuple[Policy, Retention] | None,
        ctx: JobContext,
    ) -> CopyReport:
        report = CopyReport(source.name, target.name)
        src = self.vaults.open_store(source)
        dst = self.vaults.open_store(target)
        report.cleaned = self._clean_up(vm, target, dst, ctx)
        with self.uow() as uow:
            in_source = holdings.held_in(uow, source.name, vm.uuid)
            in_target = {p.id for p in holdings.held_in(uow, target.name, vm.uuid)}
            # soft-deleted in the target: held there still (undelete it rather than re-copy)
            binned = {p.id for p, _ in holdings.deleted_in(uow, target.name, vm.uuid)}
        wanted = set(point_ids) if point_ids is not None else None
        todo = sorted(
            (
                p
                for p in in_source
                if p.id not in in_target | binned and (wanted is None or p.id in wanted)
            ),
            key=lambda p: (p.created_at, p.id),
        )
        for point_id in sorted(binned & {p.id for p in in_source}):
            ctx.log(f"{point_id} is soft-deleted in '{target.name}': not copied again")
        report.already = len(in_target)
        ctx.record(PLANNED, source=source.name, target=target.name, points=[p.id for p in todo])
        ctx.log(
            f"{len(todo)} point(s) of {vm.label} to copy from '{source.name}' to "
            f"'{target.name}' ({len(in_target)} already there)"
        )
        if todo:
            report.mode = copy_mode(src, dst, (source.name, target.name))
            # held by both vaults, newest first (held_in's order): known_ids needs the same
            # point in both
            shared = [p.id for p in in_source if p.id in in_target]
            self._copy_points(src, dst, target, todo, shared, report, ctx)
        if retention is not None:
            report.pruned = self._prune(dst, target, vm, *retention, ctx)
        return report

    def _copy_points(
        self,
        src: VaultStore,
        dst: VaultStore,
        target: Vault,
        todo: list[RecoveryPoint],
        shared: list[str],
        report: CopyReport,
        ctx: JobContext,
    ) -> None:
        known = known_ids(src, dst, shared[:1] if report.mode == "re-encoded" else [])
        total = sum(p.bytes_logical for p in todo)  # progress: logical bytes, as a backup's
        base = 0
        for point in todo:
            ctx.phase(COPYING, point=point.id)

            def progress(
                done: int, of: int, at: int = base, size: int = point.bytes_logical
            ) -> None:
                ctx.progress(at + size * done // max(1, of), total)

            try:
                r = copy_point(
                    src,
                    dst,
                    point.id,
                    workers=max(4, 2 * self.workers),
                    known=known,
                    progress=progress,
                    cancel=ctx.cancelled,
                    names=(report.source, report.target),
                    say=ctx.log,
                )
            except PointNotFound:
                with self.uow() as uow:
                    current = uow.points.get(point.id)
                    gone = current is None or report.source not in holdings.holders(uow, current)
                if gone:
                    ctx.log(f"point {point.id} left '{report.source}' meanwhile: not copied")
                    continue
                raise
            base += point.bytes_logical
            known.update(r.ids)
            with self.uow() as uow:
                uow.copies.add(PointCopy(point.id, target.name, self.clock(), ctx.job.id))
                now = self.clock()
                uow.jobs.record_step(
                    ctx.job.id,
                    COPIED,
                    {"point": point.id, "chunks_sent": r.chunks_sent, "bytes_sent": r.bytes_sent},
                    now,
                )
                uow.jobs.append_log(
                    ctx.job.id,
                    f"point {point.id} copied ({r.mode}): {r.chunks_sent} of {r.chunks_total} "
                    f"chunk(s) sent, {r.chunks_present} already there, {r.bytes_sent:,} B "
                    f"in {r.seconds:.2f}s; verified in '{target.name}'",
                    now,
                )
                uow.commit()
            held = immutability.hold_point(dst, target, point)  # an immutable target
            if held:
                ctx.log(f"{held} object(s) of {point.id} held by '{target.name}'s storage")
            report.points.append(point.id)
            report.chunks_sent += r.chunks_sent
            report.chunks_present += r.chunks_present
            report.bytes_sent += r.bytes_sent
            report.seconds += r.seconds

    # --- retention of the target ---------------------------------------------------------------

    def _prune(
        self,
        dst: VaultStore,
        target: Vault,
        vm: VmItem,
        policy: Policy,
        retention: Retention,
        ctx: JobContext,
    ) -> list[str]:
        """Apply ``retention`` to the VM's *copies* held normally in the target; removes
        them there only, through the one deletion helper (:func:`soft_delete.remove_holding`:
        soft-deleted when the target's soft delete is on).  Points whose own
        vault is the target (backups taken into it, or re-homed there when their own vault
        dropped them) are its own retention's, never this one's."""
        with self.uow() as uow:
            copied = (uow.points.get(c.point_id) for c in uow.copies.in_vault(target.name))
            points = [p for p in copied if p is not None and p.vm_uuid == vm.uuid]
        decisions = immutability.retention_decisions(
            target, points, retention, self.clock(), policy.timezone
        )
        ctx.log(f"retention in '{target.name}': {retention}, {len(points)} point(s)")
        by_id = {p.id: p for p in points}
        removed = []
        for d in decisions:
            if d.keep:
                continue
            gone = soft_delete.remove_holding(self.ctx, dst, target.name, by_id[d.point_id].id)
            removed.append(d.point_id)
            what = gone.describe() if gone else f"{d.point_id} already gone from '{target.name}'"
            ctx.log(f"{what}: {', '.join(d.reasons)}")
        ctx.record(PRUNED, vault=target.name, points=removed)
        return removed

    # --- what a killed copy left ---------------------------------------------------------------

    def _clean_up(self, vm: VmItem, target: Vault, dst: VaultStore, ctx: JobContext) -> list[str]:
        """Delete from the target the points that earlier copy jobs of the VM were writing
        when they died and that the catalog does not list there (module docstring, step 0)."""
        left: list[str] = []
        with self.uow() as uow:
            for job in uow.jobs.find(job_type=JobType.COPY, vm_uuid=vm.uuid, limit=RECENT_JOBS):
                if job.id == ctx.job.id or job.state.active or job.vault != target.name:
                    continue
                if job.state is JobState.COMPLETED:
                    continue
                steps = uow.jobs.steps(job.id)
                last = last_step(steps, COPYING, COPIED)
                if last is None or last.step != COPYING:
                    continue
                point_id = str(last.data.get("point"))
                point = uow.points.get(point_id)
                held = point is not None and (
                    target.name in holdings.holders(uow, point)
                    or holdings.deletion_in(uow, point, target.name) is not None
                )
                if not held:
                    left.append(point_id)
        removed = []
        for point_id in left:
            if dst.has_manifest(point_id):
                dst.delete_point(point_id)
                removed.append(point_id)
                ctx.log(f"left by an interrupted copy: {point_id} removed from '{target.name}'")
        return removed
