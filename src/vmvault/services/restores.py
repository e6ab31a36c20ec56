"""Restoring VMs from recovery points: as a new VM, over the original, or as a restore test
(design §4; ``--disks-only`` stays in :mod:`vmvault.services.points`).

Every restore runs as one ``restore`` job whose conflict key is the *source* VM, so no backup
or other restore of it runs meanwhile (``OPERATION_IN_PROGRESS`` up front).  The order of a
restore, and what a failure at each step leaves behind:

1. **up front** (nothing written): the point exists and belongs to the VM; the target host is
   known and local; the new name is free (``--as-new``) or the VM is still defined and has no
   snapshots (``--replace``); the directory is writable and reachable by QEMU; the free space
   of every file system written covers the point's data; any existing file in the way refuses
   the restore.
2. **stage**: every disk is restored next to its final path (each chunk verified as it is
   read), then QEMU must read the image with the disk's exact size (``qemu-img info``, and
   ``qemu-img check`` for qcow2).  Any failure: the staged images are removed; the VM and its
   disks were not touched (Hyper-V deletes the VM *before* restoring; we verify first).
3. ``--replace``: shut the VM off (agent, ACPI, then forced after ``shutdown_timeout``),
   undefine it with its checkpoint metadata, move its current images aside to
   ``<image>.pre-restore-<job>`` and the staged ones into place (renames), define the point's
   XML under the VM's name and uuid.  A failure here puts everything back (images, definition,
   running state).  The images moved aside are removed when the job ends, or kept with
   ``--keep-previous``.  The VM keeps its registration; vmvault's checkpoint records of it are
   deleted, so its next backup reads every disk in full (deduplicated against the vault).
4. ``--as-new`` / test: rename into place, symlinks in the host's default directory when
   another directory was chosen, define the rewritten XML (new name, uuid, MACs, file paths;
   NICs whose network is gone disconnected with a warning).  A failure removes the domain
   and every file made.  The new VM is not registered: a discovery finds it.
5. ``--start`` starts the VM and waits for its agent; the **restore test** starts it with every
   NIC link down, waits for the agent and for the file systems the VM had mounted at backup
   time, records the result on the point, then destroys and undefines the VM and deletes its
   files (also when the test fails).

**Phases and cancel** (:meth:`JobContext.phase`; each is a cancel point):

* ``reading`` — before the point's indexes are read; ``writing`` — before the first disk is
  staged (staging also checks for a cancel between chunks).  A cancel in either removes every
  staged image; the VM was not touched;
* ``switching`` (``--replace``) / ``defining`` (new VM, test) — staged and verified, nothing
  defined or shut off yet: the last cancel point.  After it the restore runs to its end and a
  later cancel is ignored (logged), except in a test:
* ``testing`` — the test VM is booting or being checked: a cancel (seen within seconds)
  destroys and removes it with its files; no result is recorded.

**Interrupted** (the process died): :meth:`RestoreService.clean_up`, called by start-up
recovery, removes the staged images and partial files named in the job log, and rolls back a
``--replace`` that died during its switch (images moved back, the definition logged before
the switch defined again, the VM started if it was running).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.fsutil import TMP_MARK, fsync_dir
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.restore import restore_disk
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    Cancelled,
    HostNotFound,
    InsufficientSpace,
    InvalidInput,
    PointNotFound,
    PointOfAnotherVm,
    RestoreDirUnusable,
    RestoreHostNotLocal,
    RestoreNameExists,
    RestoreStartFailed,
    RestoreTargetExists,
    RestoreTestFailed,
    RestoreVerifyFailed,
    RestoreVmHasSnapshots,
    RestoreVmNotDefined,
)
from vmvault.domain.inventory import match_vm
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.restore import (
    STAGING_SUFFIX,
    DomainShape,
    FileKind,
    LiveDomain,
    NicPlan,
    RestoreMode,
    RestorePlan,
    RestoreTestResult,
    check_vm_name,
    expected_mounts,
    judge_test,
    plan_new,
    plan_replace,
    pre_restore_path,
    space_by_device,
)
from vmvault.domain.vm import PowerState, VmItem
from vmvault.services.jobs import JobContext, JobOutcome, JobRunner
from vmvault.services.ports import RestoreDriver, UnitOfWorkFactory
from vmvault.services.vaults import VaultService

#: Room for a qcow2's metadata on top of its data (L1/L2/refcount tables): generous.
QCOW2_OVERHEAD = 1 << 20
#: A restore test waits for its guest in slices this long, to see a cancel in between.
CANCEL_SLICE = 2.0
#: Job-log lines that recovery reads back (see :meth:`RestoreService.clean_up`).
_WRITING = re.compile(r"restoring (\S+) \(.*?\) to (/.+)$", re.M)
_WRITTEN = re.compile(r"(?:^|\s)(\S+): [\d,]+ B written", re.M)
SWITCH_LINE = "switch of {name} (was {power}); its definition before the switch:\n{xml}"
_SWITCH = re.compile(r"switch of (.+?) \(was ([a-z-]+)\); its definition before the switch:\n")


@dataclass
class RestoredDisk:
    target: str
    path: Path
    link: Path | None
    bytes_written: int
    seconds: float


@dataclass
class RestoreReport:
    mode: RestoreMode
    point_id: str
    vm_name: str  # the VM defined (for a test: the VM that was booted and removed)
    vm_uuid: str
    host_uri: str
    disks: list[RestoredDisk] = field(default_factory=list)
    nics: list[NicPlan] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    started: bool = False
    boot_seconds: float | None = None
    downtime_seconds: float | None = None
    previous: list[Path] = field(default_factory=list)  # --replace --keep-previous
    test: RestoreTestResult | None = None

    @property
    def bytes_written(self) -> int:
        return sum(d.bytes_written for d in self.disks)


@dataclass
class _Request:
    """Everything the job needs, checked before it starts."""

    vm: VmItem
    point: RecoveryPoint
    store: VaultStore
    manifest: Manifest
    shape: DomainShape
    plan: RestorePlan
    live: LiveDomain | None = None  # --replace: the VM as it is now
    start: bool = False
    keep_previous: bool = False


class RestoreService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        runner: JobRunner,
        vaults: VaultService,
        driver: RestoreDriver,
        clock: Callable[[], datetime],
        workers: int = 2,
        *,
        shutdown_timeout: float = 60.0,
        boot_timeout: float = 180.0,
        mount_wait: float = 10.0,
    ) -> None:
        self.uow = uow
        self.runner = runner
        self.vaults = vaults
        self.driver = driver
        self.clock = clock
        self.workers = workers
        self.shutdown_timeout = shutdown_timeout
        self.boot_timeout = boot_timeout
        self.mount_wait = mount_wait

    # --- entry points --------------------------------------------------------------------------

    def restore(
        self,
        vm_ref: str,
        point_id: str,
        mode: RestoreMode,
        *,
        name: str | None = None,
        directory: str | None = None,
        host: str | None = None,
        start: bool = False,
        keep_previous: bool = False,
        shutdown_timeout: float | None = None,
    ) -> JobOutcome[RestoreReport]:
        """Restore ``point_id`` of ``vm_ref`` (``--as-new``, ``--replace`` or a test).

        Bad input is refused before the job starts, with nothing changed.
        """
        if mode is RestoreMode.AS_NEW and not name:
            raise InvalidInput("--as-new needs the new VM's name", what="restore options")
        if mode is RestoreMode.REPLACE and (name or directory or host):
            raise InvalidInput(
                "--replace restores the VM where it is: no name, --dir or --host",
                what="restore options",
            )
        if mode is not RestoreMode.REPLACE and keep_previous:
            raise InvalidInput("--keep-previous goes with --replace", what="restore options")
        if mode is RestoreMode.TEST and start:
            raise InvalidInput("a restore test starts the VM itself", what="--start")
        if shutdown_timeout is not None and shutdown_timeout < 0:
            raise InvalidInput("give 0 or more seconds", what="shutdown timeout")
        vm, point = self.vm_and_point(vm_ref, point_id)
        vault = self.vaults.resolve(point.vault)
        store = self.vaults.open_store(vault)
        manifest = store.read_manifest(point.id)
        shape = self.driver.inspect(manifest.domain_xml)
        if mode is RestoreMode.REPLACE:
            req = self._check_replace(vm, point, store, manifest, shape)
        else:
            if mode is RestoreMode.TEST and not name:
                name = f"{vm.name[:50]}-rtest-{secrets.token_hex(3)}"
            assert name is not None
            req = self._check_new(mode, vm, point, store, manifest, shape, name, directory, host)
        req.start = start
        req.keep_previous = keep_previous
        timeout = self.shutdown_timeout if shutdown_timeout is None else shutdown_timeout

        def work(ctx: JobContext) -> RestoreReport:
            return self._run(req, timeout, ctx)

        return self.runner.run(JobType.RESTORE, vault.name, vm.uuid, vm.label, work)

    def restore_test(
        self, vm_ref: str, point_id: str, directory: str | None = None
    ) -> JobOutcome[RestoreReport]:
        """Boot the point as a throw-away VM (isolated), check it, record the result."""
        return self.restore(vm_ref, point_id, RestoreMode.TEST, directory=directory)

    def last_test(self, point_id: str) -> RestoreTestResult | None:
        """The result of the latest restore test of a point, if it was ever tested."""
        with self.uow() as uow:
            if uow.points.get(point_id) is None:
                raise PointNotFound(point=point_id, path="the catalog")
            doc = uow.points.restore_test(point_id)
        return RestoreTestResult.from_json(doc) if doc else None

    # --- after a dead process ------------------------------------------------------------------

    def clean_up(
        self, job: Job, log: list[str], still_ours: Callable[[], bool] = lambda: True
    ) -> list[str]:
        """Undo what restore job ``job``, whose process died, left behind (from its ``log``);
        returns what was done.

        * the partial files (``.<name>.tmp.<pid>.*``) and staged images it was writing;
        * the images a ``--disks-only`` restore finished (the restore as a whole did not);
        * a ``--replace`` that died during its switch — the VM undefined — is rolled back: the
          images moved aside go back, the definition logged before the switch is defined
          again, and the VM is started if it was running.  If the VM is defined, images moved
          aside are kept and named (the switch had finished).

        ``still_ours()`` is asked before the VM is touched (False: another job holds it now).
        """
        text = "\n".join(log)
        done: list[str] = []
        finished = set(_WRITTEN.findall(text))
        staged: list[Path] = []
        for target, raw in _WRITING.findall(text):
            path = Path(raw)
            for partial in path.parent.glob(f".{path.name}{TMP_MARK}{job.pid}.*"):
                partial.unlink(missing_ok=True)
                done.append(f"removed the partial file {partial}")
            if path.name.endswith(STAGING_SUFFIX):
                staged.append(path)
                if path.exists():
                    path.unlink()
                    done.append(f"removed the staged image {path}")
            elif target in finished and path.exists():
                path.unlink()
                done.append(f"removed {path}: the disks-only restore did not finish")
        for entry in log:
            switch = _SWITCH.search(entry)
            if switch is not None:  # the XML is the rest of that log entry
                name, power, xml = switch.group(1), switch.group(2), entry[switch.end() :]
                done += self._undo_switch(job, name, power, xml, staged, still_ours)
        return done

    def _undo_switch(
        self,
        job: Job,
        name: str,
        power: str,
        xml: str,
        staged: list[Path],
        still_ours: Callable[[], bool],
    ) -> list[str]:
        with self.uow() as uow:
            vm = uow.vms.get(job.vm_uuid) if job.vm_uuid else None
        if vm is None:
            return [f"{name}: no longer in the catalog, its replace is not rolled back"]
        uri, uuid = vm.host_uri, vm.uuid
        pairs = []  # (final image, the image the switch moved aside)
        for s in staged:
            final = s.with_name(s.name[1 : -len(STAGING_SUFFIX)])
            pairs.append((final, pre_restore_path(final, str(job.id))))
        if self.driver.domain(uri, uuid) is not None:
            return [
                f"previous image {pre} kept: the replace of {name} was interrupted after its "
                "switch; delete it once the VM is checked"
                for _, pre in pairs
                if pre.exists()
            ]
        if not still_ours():
            return [f"{name} is not defined, but another job holds it now: left to it"]
        done = []
        for final, pre in pairs:
            if pre.exists():
                os.replace(pre, final)
                done.append(f"moved {pre} back to {final}")
        self.driver.define(uri, xml)
        done.append(f"defined {name} again as it was before the interrupted replace")
        if power in (PowerState.RUNNING, PowerState.PAUSED, PowerState.BLOCKED):
            self.driver.start(uri, uuid)
            done.append(f"started {name} again (it was {power})")
        return done

    # --- checks up front -----------------------------------------------------------------------

    def vm_and_point(self, vm_ref: str, point_id: str) -> tuple[VmItem, RecoveryPoint]:
        """The VM and one of its points, or the error that refuses the request."""
        with self.uow() as uow:
            vm = match_vm(uow.vms.all(), vm_ref)
            point = uow.points.get(point_id)
        if point is None:
            raise PointNotFound(point=point_id, path="the catalog")
        if point.vm_uuid != vm.uuid:
            raise PointOfAnotherVm(
                point=point_id, owner=f"{point.vm_name} ({point.vm_uuid})", vm=vm.label
            )
        return vm, point

    def _host(self, vm: VmItem, host: str | None) -> str:
        uri = host or vm.host_uri
        if host is not None:
            with self.uow() as uow:
                if uow.hosts.get(host) is None:
                    raise HostNotFound(uri=host)
        if not self.driver.is_local(uri):
            raise RestoreHostNotLocal(uri=uri)
        return uri

    def _check_new(
        self,
        mode: RestoreMode,
        vm: VmItem,
        point: RecoveryPoint,
        store: VaultStore,
        manifest: Manifest,
        shape: DomainShape,
        name: str,
        directory: str | None,
        host: str | None,
    ) -> _Request:
        check_vm_name(name)
        uri = self._host(vm, host)
        if self.driver.domain_named(uri, name) is not None:
            raise RestoreNameExists(name=name, host=uri)
        default_dir = self.driver.default_dir(uri)
        target_dir = Path(directory).absolute() if directory else default_dir
        problem = self.driver.dir_problem(target_dir)
        if problem:
            raise RestoreDirUnusable(path=target_dir, why=problem)
        problems = {n.index: self.driver.nic_problem(uri, n) for n in shape.nics}
        plan = plan_new(
            mode,
            shape,
            point.disks,
            name=name,
            uuid=_uuid4(),
            host_uri=uri,
            directory=target_dir,
            default_dir=default_dir,
            nic_problems=problems,
            taken_macs=self.driver.used_macs(uri),
        )
        if plan.links:
            problem = self.driver.dir_problem(default_dir)
            if problem:
                raise RestoreDirUnusable(path=default_dir, why=problem)
        # a staging file left by an interrupted restore is ours: it is simply overwritten
        in_the_way = [d.path for d in plan.disks] + [link for link, _ in plan.links]
        in_the_way += [Path(p) for p in plan.files.values()]
        existing = [p for p in in_the_way if p.exists() or p.is_symlink()]
        if existing:
            raise RestoreTargetExists(target=", ".join(str(p) for p in existing))
        self._check_space(store, manifest, plan)
        return _Request(vm, point, store, manifest, shape, plan)

    def _check_replace(
        self,
        vm: VmItem,
        point: RecoveryPoint,
        store: VaultStore,
        manifest: Manifest,
        shape: DomainShape,
    ) -> _Request:
        uri = self._host(vm, None)
        live = self.driver.domain(uri, vm.uuid)
        if live is None:
            raise RestoreVmNotDefined(vm=vm.label, host=uri)
        if live.snapshots:
            raise RestoreVmHasSnapshots(vm=live.name, snapshots=", ".join(live.snapshots))
        current = self.driver.inspect(live.xml)
        problems = {n.index: self.driver.nic_problem(uri, n) for n in shape.nics}
        plan = plan_replace(
            shape, point.disks, current=current, host_uri=uri, nic_problems=problems
        )
        strangers = [d.path for d in plan.disks if d.previous is None and d.path.exists()]
        if strangers:
            raise RestoreTargetExists(target=", ".join(str(p) for p in strangers))
        for parent in sorted({d.path.parent for d in plan.disks}):
            problem = self.driver.dir_problem(parent)
            if problem:
                raise RestoreDirUnusable(path=parent, why=problem)
        self._check_space(store, manifest, plan)
        return _Request(vm, point, store, manifest, shape, plan, live=live)

    def _check_space(self, store: VaultStore, manifest: Manifest, plan: RestorePlan) -> None:
        """The staged images are written next to their targets: per file system, the point's
        non-zero data must fit (plus the qcow2 metadata)."""
        needs = []
        where: dict[int, Path] = {}
        for d in plan.disks:
            index = store.read_point_index(manifest, d.target)
            need = sum(index.chunk_length(i) for i, c in enumerate(index.ids) if c != ZERO_ID)
            if d.fmt == "qcow2":
                need += QCOW2_OVERHEAD
            probe = d.staging.parent
            while not probe.exists():
                probe = probe.parent
            dev = probe.stat().st_dev
            where.setdefault(dev, probe)
            needs.append((dev, need))
        for dev, need in space_by_device(needs).items():
            free = shutil.disk_usage(where[dev]).free
            if free < need:
                raise InsufficientSpace(path=where[dev], need=need, free=free)

    # --- the job -------------------------------------------------------------------------------

    def _run(self, req: _Request, shutdown_timeout: float, ctx: JobContext) -> RestoreReport:
        plan = req.plan
        ctx.log(
            f"restore of point {req.point.id} ({req.point.consistency.value}, "
            f"{req.point.created_at.isoformat(timespec='seconds')}) of {req.vm.label}: "
            f"{plan.mode.value} as {plan.name} ({plan.uuid}) on {plan.host_uri}"
        )
        for note in plan.notes:
            ctx.log(note)
        for warning in plan.warnings:
            ctx.warn(warning)
        report = RestoreReport(plan.mode, req.point.id, plan.name, plan.uuid, plan.host_uri)
        report.nics = list(plan.nics)
        report.files = dict(plan.files)
        self._stage(req, report, ctx)
        try:
            if plan.mode is RestoreMode.REPLACE:
                ctx.phase("switching")  # the last cancel point: the VM is touched from here on
                self._replace(req, report, shutdown_timeout, ctx)
            else:
                ctx.phase("defining")  # the last cancel point (a test: see "testing")
                self._new(req, report, ctx)
        finally:
            for d in plan.disks:
                if d.staging.exists():
                    d.staging.unlink()
        with self.uow() as uow:
            current = uow.jobs.get(ctx.job.id)
        if current is not None and current.state is JobState.CANCELLING:
            ctx.log("cancel requested after the restore was in place: ignored, it is complete")
        return report

    def _stage(self, req: _Request, report: RestoreReport, ctx: JobContext) -> None:
        """Restore and verify every disk into its staging file; on failure remove them all."""
        plan = req.plan
        ctx.phase("reading")
        indexes = {d.target: req.store.read_point_index(req.manifest, d.target) for d in plan.disks}
        total = sum(
            sum(ix.chunk_length(i) for i, c in enumerate(ix.ids) if c != ZERO_ID)
            for ix in indexes.values()
        )
        base = 0
        made_dirs: list[Path] = []
        try:
            ctx.phase("writing")
            for d in plan.disks:
                made_dirs += _make_dirs(d.path.parent)
                index = indexes[d.target]
                if index.disk_size != d.size:
                    raise RestoreVerifyFailed(
                        target=d.target,
                        why=f"its index holds {index.disk_size} B, the point {d.size} B",
                    )

                def progress(n: int, _todo: int, offset: int = base) -> None:
                    ctx.progress(offset + n, total)

                ctx.log(f"restoring {d.target} ({index.disk_size:,} B, {d.fmt}) to {d.staging}")
                res = restore_disk(
                    req.store,
                    index,
                    d.staging,
                    fmt=d.fmt,
                    workers=self.workers,
                    overwrite=True,
                    progress=progress,
                    cancel=ctx.cancelled,
                )
                base += res.bytes_written
                size = self.driver.image_size(d.staging, d.fmt, d.target)
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
                report.disks.append(
                    RestoredDisk(d.target, d.path, d.link, res.bytes_written, res.seconds)
                )
        except BaseException:
            for d in plan.disks:
                d.staging.unlink(missing_ok=True)
            for directory in reversed(made_dirs):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            who = req.live.name if req.live else req.vm.label
            ctx.log(f"staged images removed; nothing was changed ({who} untouched)")
            raise

    # --- a new VM (and the restore test) ------------------------------------------------------

    def _new(self, req: _Request, report: RestoreReport, ctx: JobContext) -> None:
        plan = req.plan
        uri = plan.host_uri
        made: list[Path] = []
        defined = False
        try:
            for d in plan.disks:
                os.replace(d.staging, d.path)
                made.append(d.path)
            for directory in {d.path.parent for d in plan.disks}:
                fsync_dir(directory)
            for link, target in plan.links:
                os.symlink(target, link)
                made.append(link)
                ctx.log(f"symlink {link} -> {target}")
            made += [Path(p) for p in plan.files.values()]
            self._copy_nvram(req, ctx)
            xml = self.driver.render(req.manifest.domain_xml, plan)
            self.driver.define(uri, xml)
            defined = True
            self.driver.refresh_default_pool(uri)
            ctx.log(f"defined {plan.name} ({plan.uuid}) with disks in {plan.directory}")
            for old_file, new_file in plan.files.items():
                ctx.log(f"file of {req.shape.name} {old_file} -> {new_file}")
            for nic in plan.nics:
                state = "connected" if nic.connected else "disconnected"
                down = ", link down" if nic.link_down else ""
                ctx.log(f"NIC {nic.mac} ({nic.type} {nic.source}): {state}{down}")
            if plan.mode is RestoreMode.TEST:
                try:
                    self._test(req, report, ctx)
                finally:
                    self._remove_test_vm(req, made, ctx)
                    defined = False
                    made = []
                return
            if req.start:
                self._start(plan, req.shape, report, ctx, fail_on_agent=False)
            ctx.log(
                f"{plan.name} is not registered: 'vmvault discover' finds it, "
                f"'vmvault register {plan.name}' protects it"
            )
        except BaseException:
            if defined:
                with contextlib.suppress(Exception):
                    self.driver.remove(uri, plan.uuid)
            for p in made:
                with contextlib.suppress(OSError):
                    p.unlink()
            if made or defined:
                ctx.log(f"{plan.name} and its files were removed again")
            raise

    def _copy_nvram(self, req: _Request, ctx: JobContext) -> None:
        """UEFI variables are not in the point; the new VM gets a copy of the original's
        current ones (boot entries), or libvirt makes fresh ones from the template."""
        for f in req.shape.files:
            if f.kind is not FileKind.NVRAM or f.path not in req.plan.files:
                continue
            new = Path(req.plan.files[f.path])
            try:
                shutil.copyfile(f.path, new)
                ctx.log(f"NVRAM: copy of {f.path} (not in the point) as {new}")
            except OSError:
                ctx.log(f"NVRAM: {f.path} not readable; libvirt creates {new} from its template")

    def _start(
        self,
        plan: RestorePlan,
        shape: DomainShape,
        report: RestoreReport,
        ctx: JobContext,
        *,
        fail_on_agent: bool,
    ) -> None:
        t0 = time.monotonic()
        self.driver.start(plan.host_uri, plan.uuid)
        report.started = True
        if not shape.agent_channel:
            ctx.log(f"{plan.name} started (no guest agent channel: not waiting for it)")
            return
        if self.driver.wait_for_agent(plan.host_uri, plan.uuid, self.boot_timeout):
            report.boot_seconds = time.monotonic() - t0
            ctx.log(
                f"{plan.name} started; its guest agent answered after {report.boot_seconds:.1f} s"
            )
        elif fail_on_agent:
            raise RestoreStartFailed("the guest agent never answered", vm=plan.name)
        else:
            ctx.warn(
                f"{plan.name} started but its guest agent did not answer within "
                f"{self.boot_timeout:g} s"
            )

    def _test(self, req: _Request, report: RestoreReport, ctx: JobContext) -> None:
        plan = req.plan
        uri = plan.host_uri
        recorded = req.manifest.extra.get("fsinfo")
        left_out = {d.target for d in req.point.disks if d.excluded} | set(plan.drop_disks)
        expected = expected_mounts(recorded or [], left_out)
        if recorded is None:
            ctx.warn(
                "the point holds no list of the guest's file systems (taken offline or without "
                "an agent): the test checks only that the guest boots and its agent answers"
            )
        result = RestoreTestResult(self.clock(), False, None, ctx.job.id, expected)
        problem: str | None = None
        try:
            if not req.shape.agent_channel:
                problem = "the VM has no guest agent channel: nothing can answer the test"
            else:
                ctx.phase("testing")
                t0 = time.monotonic()
                self.driver.start(uri, plan.uuid)
                report.started = True
                if self._wait_for_agent(uri, plan.uuid, ctx):
                    result.boot_seconds = report.boot_seconds = time.monotonic() - t0
                    result.mounted, result.missing = self._wait_for_mounts(uri, plan.uuid, expected)
                    if result.missing:
                        problem = "not mounted after boot: " + ", ".join(result.missing)
                else:
                    problem = f"the guest agent did not answer within {self.boot_timeout:g} s"
        except RestoreStartFailed as exc:
            problem = exc.text
        result.ok = problem is None
        result.problem = problem
        report.test = result
        with self.uow() as uow:
            uow.points.record_restore_test(req.point.id, result.to_json())
            uow.commit()
        ctx.log(result.summary)
        if problem is not None:
            tail = self.driver.console_tail(uri, plan.uuid)
            if tail:
                ctx.log("console of the test VM (last lines):\n" + tail)
            raise RestoreTestFailed(point=req.point.id, why=problem)

    def _wait_for_agent(self, uri: str, uuid: str, ctx: JobContext) -> bool:
        """The driver's wait, in slices of :data:`CANCEL_SLICE` s: a cancel is seen in time."""
        deadline = time.monotonic() + self.boot_timeout
        while True:
            step = max(0.0, min(CANCEL_SLICE, deadline - time.monotonic()))
            t0 = time.monotonic()
            if self.driver.wait_for_agent(uri, uuid, step):
                return True
            if ctx.cancelled():
                raise Cancelled(operation=f"restore test (job {ctx.job.id})")
            now = time.monotonic()
            if now >= deadline or now - t0 < step:  # out of time, or the domain stopped
                return False

    def _wait_for_mounts(
        self, uri: str, uuid: str, expected: list[str]
    ) -> tuple[list[str], list[str]]:
        deadline = time.monotonic() + self.mount_wait
        while True:
            mounted, missing = judge_test(expected, self.driver.guest_filesystems(uri, uuid))
            if not missing or time.monotonic() > deadline:
                return mounted, missing
            time.sleep(0.5)

    def _remove_test_vm(self, req: _Request, made: list[Path], ctx: JobContext) -> None:
        plan = req.plan
        self.driver.remove(plan.host_uri, plan.uuid)
        for p in made:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.driver.refresh_default_pool(plan.host_uri)
        ctx.log(f"test VM {plan.name} destroyed and undefined, its files deleted")

    # --- replace -------------------------------------------------------------------------------

    def _replace(
        self, req: _Request, report: RestoreReport, shutdown_timeout: float, ctx: JobContext
    ) -> None:
        plan = req.plan
        uri, uuid, name = plan.host_uri, plan.uuid, plan.name
        live = self.driver.domain(uri, uuid)
        if live is None:
            raise RestoreVmNotDefined(vm=req.vm.label, host=uri)
        was = live.power
        tag = str(ctx.job.id)
        t_down = time.monotonic()
        moved: list[tuple[Path, Path]] = []  # (final, pre-restore)
        placed: list[Path] = []
        # what start-up recovery needs to put the VM back if this process dies in the switch
        ctx.log(SWITCH_LINE.format(name=name, power=was.value, xml=live.xml))
        how = self.driver.shutdown(uri, uuid, shutdown_timeout)
        ctx.log(f"{name} ({was.value}) shut off: {how}")
        try:
            self.driver.undefine(uri, uuid)
            ctx.log(
                f"{name} undefined with its checkpoint metadata "
                f"({', '.join(live.checkpoints) or 'none'}); NVRAM and TPM state kept"
            )
            for d in plan.disks:
                if d.previous is not None and d.previous.exists():
                    pre = pre_restore_path(d.previous, tag)
                    os.replace(d.previous, pre)
                    moved.append((d.path, pre))
                os.replace(d.staging, d.path)
                placed.append(d.path)
            for directory in {d.path.parent for d in plan.disks}:
                fsync_dir(directory)
            for final, pre in moved:
                ctx.log(f"{final}: restored image in place, previous one at {pre}")
            self.driver.define(uri, self.driver.render(req.manifest.domain_xml, plan))
        except BaseException:
            self._roll_back(req, live, moved, placed, ctx)
            raise
        ctx.log(f"{name} defined from point {req.point.id} (same name, uuid and MAC addresses)")
        self._reset_chain(req.vm, ctx)
        keep = req.keep_previous
        try:
            if req.start:
                self._start(plan, req.shape, report, ctx, fail_on_agent=False)
            elif was in (PowerState.RUNNING, PowerState.PAUSED, PowerState.BLOCKED):
                ctx.log(f"{name} was {was.value}; it stays shut off (--start starts it)")
            report.downtime_seconds = time.monotonic() - t_down
            if report.started:
                ctx.log(f"downtime of {name}: {report.downtime_seconds:.1f} s")
        except BaseException:
            keep = True  # the VM did not come back: keep what it was
            raise
        finally:
            for _final, pre in moved:
                if keep:
                    report.previous.append(pre)
                    ctx.log(f"previous image kept: {pre}")
                else:
                    pre.unlink(missing_ok=True)
            if moved and not keep:
                ctx.log("previous images removed")

    def _roll_back(
        self,
        req: _Request,
        live: LiveDomain,
        moved: list[tuple[Path, Path]],
        placed: list[Path],
        ctx: JobContext,
    ) -> None:
        """Put the VM back as it was: its images, its definition, its running state."""
        uri, uuid = req.plan.host_uri, req.plan.uuid
        ctx.log("replace failed after the VM was shut off: putting it back")
        back = {final for final, _ in moved}
        for final, pre in moved:
            try:
                os.replace(pre, final)
            except OSError as exc:
                ctx.log(f"could not move {pre} back to {final}: {exc}")
        for p in placed:
            if p not in back:
                p.unlink(missing_ok=True)
        try:
            if self.driver.domain(uri, uuid) is None:
                self.driver.define(uri, live.xml)
            if live.power in (PowerState.RUNNING, PowerState.PAUSED, PowerState.BLOCKED):
                self.driver.start(uri, uuid)
            ctx.log(f"{live.name} is back as it was ({live.power.value})")
        except Exception as exc:  # report, but keep the original error
            ctx.log(f"could not put {live.name} back: {exc}; its definition was:\n{live.xml}")

    def _reset_chain(self, vm: VmItem, ctx: JobContext) -> None:
        with self.uow() as uow:
            records = uow.checkpoints.for_vm(vm.uuid)
            for rec in records:
                uow.checkpoints.delete(rec.name)
            uow.commit()
        names = ", ".join(r.name for r in records) or "none recorded"
        ctx.log(
            f"{vm.label} keeps its registration; its checkpoint chain is reset ({names}): "
            "the next backup reads every disk in full, deduplicated against the vault"
        )


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents (0755: QEMU must traverse them); returns the
    directories made, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)  # whatever the umask
    return list(reversed(missing))


def _uuid4() -> str:
    return str(uuid.uuid4())
