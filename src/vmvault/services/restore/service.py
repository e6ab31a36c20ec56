"""The restore service: its entry points, and the job that runs the steps in order."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from functools import partial

from vmvault.dataplane.restore import restore_disk
from vmvault.domain.errors import InvalidInput, PointNotFound
from vmvault.domain.inputs import check_seconds
from vmvault.domain.job import Job, JobState, JobType, JournalStep
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.restore import RestoreMode, check_vm_name
from vmvault.domain.restore_test import (
    RestoreTestResult,
)
from vmvault.domain.vm import VmItem
from vmvault.services import holdings
from vmvault.services.context import Service, ServiceContext
from vmvault.services.exports import ExportService
from vmvault.services.healing import Healing
from vmvault.services.jobs import JobContext, JobOutcome
from vmvault.services.paths import user_path
from vmvault.services.ports import DiskWriter, HostFiles, Hypervisor, InstantDriver, RestoreDriver
from vmvault.services.restore import checks, clean_up, journal, new_vm, staging, switch
from vmvault.services.restore.instant import run_instant
from vmvault.services.restore.model import RestoreReport, RestoreRequest

#: The longest graceful shutdown ``--replace`` waits for before forcing the VM off (1 day).
MAX_SHUTDOWN = 86400.0


class RestoreService(Service):
    """Restores of whole VMs; ``driver``, ``files`` and ``write_disk`` are the host's side
    (libvirt and the local file system, or the in-memory fakes)."""

    def __init__(
        self,
        ctx: ServiceContext,
        driver: RestoreDriver,
        *,
        hypervisor: Hypervisor,
        files: HostFiles,
        write_disk: DiskWriter = restore_disk,
        instant: InstantDriver | None = None,
        exports: ExportService | None = None,
        shutdown_timeout: float = 60.0,
        boot_timeout: float = 180.0,
        mount_wait: float = 10.0,
        instant_poll: float = 0.5,
    ) -> None:
        super().__init__(ctx)
        self.driver = driver
        #: what discovery asks: a ``--replace`` checks cluster ownership as discovery sees it
        self.hypervisor = hypervisor
        self.files = files
        self.write_disk = write_disk
        self.shutdown_timeout = shutdown_timeout
        self.boot_timeout = boot_timeout
        self.mount_wait = mount_wait
        self._instant = instant
        self._exports = exports
        #: how often an instant restore looks at its block copies
        self.instant_poll = instant_poll
        #: called with (job, step) once an instant restore's VM runs (``started``, its agent
        #: waited for) and once its copies run (``copying``): tests act on the guest there
        self.instant_observers: list[Callable[[Job, str], None]] = []

    @property
    def instant(self) -> InstantDriver:
        """The hypervisor's side of ``--instant`` (the composition root gives it)."""
        assert self._instant is not None, "an instant restore needs an InstantDriver"
        return self._instant

    @property
    def exports(self) -> ExportService:
        assert self._exports is not None, "an instant restore needs the ExportService"
        return self._exports

    def journal_of(self, ctx: JobContext) -> journal.RestoreJournal:
        """The running job's journal, read back."""
        return journal.RestoreJournal.read(ctx.steps())

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
        from_vault: str | None = None,
        instant: bool = False,
    ) -> JobOutcome[RestoreReport]:
        """Restore ``point_id`` of ``vm_ref`` (``--as-new``, ``--replace`` or a test), read
        from ``from_vault`` (any vault that holds the point or a copy; default its own);
        ``instant``: run it from the point's export at once, copy its disks while it runs.

        Bad input is refused before the job starts, with nothing changed.
        """
        return self.prepare(
            vm_ref, point_id, mode, name=name, directory=directory, host=host, start=start,
            keep_previous=keep_previous, shutdown_timeout=shutdown_timeout,
            from_vault=from_vault, instant=instant,
        )()  # fmt: skip

    def prepare(
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
        from_vault: str | None = None,
        instant: bool = False,
    ) -> Callable[[], JobOutcome[RestoreReport]]:
        """Every check of :meth:`restore` (nothing changed; a bad target raises), and the
        checked restore, to run (``restore --set`` checks every VM before the first runs)."""
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
        if instant and mode is RestoreMode.TEST:
            raise InvalidInput("a restore test is not instant", what="--instant")
        if instant and from_vault is not None:
            raise InvalidInput(
                "an instant restore serves the point from its own vault (healing from copies)",
                what="--instant with --from-vault",
            )
        if shutdown_timeout is not None:
            check_seconds(shutdown_timeout, "--shutdown-timeout", MAX_SHUTDOWN)
        if name is not None:
            check_vm_name(name)
        target_dir = user_path(directory, "--dir") if directory is not None else None
        vm, point = self.vm_and_point(vm_ref, point_id)
        checks.known_host(self, host)
        operation = "restore test" if mode is RestoreMode.TEST else "restore"
        self.require_node(host or vm.host_uri, vm.label, operation)  # before the vault is read
        with self.uow() as uow:
            source = holdings.vault_holding(uow, point, from_vault)
        # POINT_DAMAGED: refused here (unless another vault holds it intact: read from there)
        reading = Healing(self.ctx).reading_store(point, source, named=from_vault is not None)
        vault = self.vaults.resolve(reading.vault)
        store = reading.store
        manifest = store.read_manifest(point.id)
        shape = self.driver.inspect(manifest.domain_xml)
        if mode is RestoreMode.REPLACE:
            req = checks.check_replace(self, vm, point, store, manifest, shape)
        else:
            if mode is RestoreMode.TEST and not name:
                name = f"{vm.name[:50]}-rtest-{secrets.token_hex(3)}"
            assert name is not None
            req = checks.check_new(
                self, mode, vm, point, store, manifest, shape, name, target_dir, host
            )
        req.start = start or instant
        req.keep_previous = keep_previous
        req.instant = instant
        if instant:
            checks.check_instant(self, req)
        timeout = self.shutdown_timeout if shutdown_timeout is None else shutdown_timeout

        def work(ctx: JobContext) -> RestoreReport:
            if reading.note:
                ctx.log(reading.note)
            try:
                return self._run(req, timeout, ctx)
            finally:
                Healing(self.ctx).report(reading, point, ctx)

        return partial(self.runner.run, JobType.RESTORE, vault.name, vm.uuid, vm.label, work)

    def restore_test(
        self,
        vm_ref: str,
        point_id: str,
        directory: str | None = None,
        from_vault: str | None = None,
    ) -> JobOutcome[RestoreReport]:
        """Boot the point as a throw-away VM (isolated), check it, record the result."""
        return self.restore(
            vm_ref, point_id, RestoreMode.TEST, directory=directory, from_vault=from_vault
        )

    def last_test(self, point_id: str) -> RestoreTestResult | None:
        """The result of the latest restore test of a point, if it was ever tested."""
        with self.uow() as uow:
            if uow.points.get(point_id) is None:
                raise PointNotFound(point=point_id, path="the catalog")
            doc = uow.points.restore_test(point_id)
        return RestoreTestResult.from_json(doc) if doc else None

    def vm_and_point(self, vm_ref: str, point_id: str) -> tuple[VmItem, RecoveryPoint]:
        """The VM and one of its points, or the error that refuses the request."""
        return checks.vm_and_point(self, vm_ref, point_id)

    def clean_up(
        self,
        job: Job,
        steps: Iterable[JournalStep],
        still_ours: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Undo what restore job ``job``, whose process died, left behind (from its journal
        ``steps``); returns what was done.  See :mod:`vmvault.services.restore.clean_up`."""
        return clean_up.clean_up(self, job, steps, still_ours)

    # --- the job -------------------------------------------------------------------------------

    def _run(self, req: RestoreRequest, shutdown_timeout: float, ctx: JobContext) -> RestoreReport:
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
        if req.instant:
            run_instant(self, req, report, shutdown_timeout, ctx)
        else:
            staging.stage(self, req, report, ctx)
            try:
                if plan.mode is RestoreMode.REPLACE:
                    switch.replace(self, req, report, shutdown_timeout, ctx)
                else:
                    new_vm.define_new(self, req, report, ctx)
            finally:
                staging.unstage(self, req)
        with self.uow() as uow:
            current = uow.jobs.get(ctx.job.id)
        if current is not None and current.state is JobState.CANCELLING:
            ctx.log("cancel requested after the restore was in place: ignored, it is complete")
        return report
