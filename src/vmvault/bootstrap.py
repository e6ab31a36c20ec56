"""The composition root: the one place that picks adapters and builds the services.

Entry points (CLI, API, jobs) call :func:`bootstrap` and use the returned
:class:`Services`; tests of pure logic build services with fakes instead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from vmvault.clock import clock_of, utcnow
from vmvault.config import Settings
from vmvault.domain.approval import Kind, Requester
from vmvault.domain.host_uri import DEFAULT_HOST_URI
from vmvault.domain.inventory import RegistrationLimits
from vmvault.domain.vault import S3Location
from vmvault.hypervisor.host import pid_alive
from vmvault.hypervisor.libvirt.driver import LibvirtHypervisor
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.approvals import ApprovalService
from vmvault.services.audit import AuditService
from vmvault.services.backup_sets import BackupSetService
from vmvault.services.backups import BackupService
from vmvault.services.context import ServiceContext
from vmvault.services.copies import CopyService
from vmvault.services.dashboard import DashboardService
from vmvault.services.exports import ExportService
from vmvault.services.files import FileService
from vmvault.services.immutability import ImmutabilityService
from vmvault.services.inventory import InventoryService
from vmvault.services.job_outcomes import JobOutcomes
from vmvault.services.jobs import JobQueries, JobRunner
from vmvault.services.lab import LabService, StorageLabService
from vmvault.services.metrics import MetricsService
from vmvault.services.nodes import NodeIdentity, NodeService
from vmvault.services.notifications import NotificationService
from vmvault.services.point_listing import PointListing
from vmvault.services.points import PointService
from vmvault.services.policies import PolicyService
from vmvault.services.ports import (
    BackupDriver,
    HostFiles,
    Hypervisor,
    NotificationSender,
    RestoreDriver,
    UnitOfWorkFactory,
)
from vmvault.services.protected_calls import Executors, ProtectedCalls
from vmvault.services.protection import ProtectionService
from vmvault.services.queue import QueueService
from vmvault.services.recovery import RecoveryService
from vmvault.services.restore import RestoreService
from vmvault.services.scheduler import SchedulerService
from vmvault.services.soft_delete import SoftDeleteService
from vmvault.services.tokens import TokenService
from vmvault.services.vault_attach import VaultAttachService
from vmvault.services.vault_keys import VaultKeyService
from vmvault.services.vault_settings import VaultSettingsService
from vmvault.services.vaults import StorageFactory, VaultService
from vmvault.storage.backend import StorageBackend
from vmvault.storage.local import LocalBackend


def open_storage(where: Path | S3Location) -> StorageBackend:
    """A vault's storage backend: the directory, or the bucket and prefix on S3."""
    if isinstance(where, S3Location):
        from vmvault.storage.s3 import open_s3

        return open_s3(where)
    return LocalBackend(where)


@dataclass
class Adapters:
    """Adapters the composition root uses instead of the real ones (``None``: the real one).

    Tests of services pass in-memory ones here, and nowhere else: the catalog (any
    unit-of-work factory, e.g. SQLite in a temporary directory), the hypervisor's read-only
    view, the backup and restore drivers, the files of the restore's host, the vaults' storage.
    """

    uow: UnitOfWorkFactory | None = None
    hypervisor: Hypervisor | None = None
    backup_driver: BackupDriver | None = None
    restore_driver: RestoreDriver | None = None
    host_files: HostFiles | None = None
    #: opens a vault's storage backend from its path (default: the local directory)
    storage: StorageFactory | None = None
    #: delivers notifications (default: webhook over HTTP, e-mail over the settings' SMTP)
    notifier: NotificationSender | None = None


@dataclass
class Services:
    settings: Settings
    #: Asked for an encrypted vault's passphrase when the settings have none (CLI: a prompt).
    passphrase_prompt: Callable[[], str | None] = lambda: None
    #: Asked for a new passphrase (key import, passphrase change) when the settings have none.
    new_passphrase_prompt: Callable[[], str | None] = lambda: None
    #: The clock every service reads (tests of the scheduler inject a simulated one).
    clock: Callable[[], datetime] = utcnow
    #: Adapters given instead of the real ones (:func:`bootstrap`'s keyword arguments).
    overrides: Adapters = field(default_factory=lambda: Adapters())

    def _passphrase(self) -> str | None:
        return self.settings.passphrase or self.passphrase_prompt()

    def close(self) -> None:
        """Close the catalog's connections, if any was opened (a process's last act)."""
        if "_engine" in self.__dict__:
            self._engine.dispose()

    @cached_property
    def _engine(self):  # type: ignore[no-untyped-def]
        return open_catalog(self.settings.catalog_url)

    @cached_property
    def _uow(self) -> UnitOfWorkFactory:
        if self.overrides.uow is not None:
            return self.overrides.uow
        engine = self._engine
        return lambda: SqlUnitOfWork(engine)

    @cached_property
    def _hypervisor(self) -> Hypervisor:
        return self.overrides.hypervisor or LibvirtHypervisor()

    @cached_property
    def node(self) -> NodeService:
        return NodeService(self._uow, self.clock, process_node(self.settings.node_host))

    @cached_property
    def runner(self) -> JobRunner:
        runner = JobRunner(self._uow, self.clock, os.getpid(), pid_alive, self.node)
        # the outbox is written in the transaction that ends the job (services/notifications.py)
        runner.on_end.append(lambda uow, job: self.notifications.job_ended(uow, job))
        return runner

    @cached_property
    def context(self) -> ServiceContext:
        """What every service shares (one per Services: one per worker in ``vmvault serve``)."""
        return ServiceContext(
            self._uow,
            self.runner,
            self.vaults,
            self.clock,
            self.settings.workers,
            self.node,
        )

    @cached_property
    def vault_keys(self) -> VaultKeyService:
        return VaultKeyService(
            self.vaults, lambda: self.settings.new_passphrase or self.new_passphrase_prompt()
        )

    @cached_property
    def vault_attach(self) -> VaultAttachService:
        return VaultAttachService(
            self.vaults, lambda: self.settings.new_passphrase or self.new_passphrase_prompt()
        )

    @cached_property
    def vaults(self) -> VaultService:
        s = self.settings
        service = VaultService(
            self._uow,
            self._hypervisor,
            self.clock,
            s.home,
            s.default_vault,
            self._passphrase,
            storage=self.overrides.storage or open_storage,
        )
        service.guard = self._guard
        return service

    @cached_property
    def inventory(self) -> InventoryService:
        s = self.settings
        limits = RegistrationLimits(max_disks=s.max_disks, min_agent_version=s.min_agent_version)
        return InventoryService(self.context, self._hypervisor, limits, s.agent_timeout)

    @cached_property
    def backups(self) -> BackupService:
        from vmvault.hypervisor.libvirt.backup_driver import LibvirtBackupDriver

        s = self.settings
        driver = self.overrides.backup_driver or LibvirtBackupDriver(
            s.work_dir, freeze_timeout=s.freeze_timeout
        )
        service = BackupService(self.context, self._hypervisor, driver)
        service.after_backup = self.protection.after_backup  # retention of protected VMs
        return service

    @cached_property
    def backup_sets(self) -> BackupSetService:
        return BackupSetService(
            self.context, self.backups, hold_timeout=float(self.settings.set_hold_timeout)
        )

    @cached_property
    def policies(self) -> PolicyService:
        service = PolicyService(self.context)
        service.guard = self._guard
        return service

    @cached_property
    def protection(self) -> ProtectionService:
        service = ProtectionService(self.context, lambda: self.backups)
        service.guard = self._guard
        service.copy_after_backup = lambda vault, vm, policy: self.queue.queue_policy_copy(
            vault, vm, policy
        )
        return service

    @cached_property
    def copies(self) -> CopyService:
        return CopyService(self.context)

    @cached_property
    def dashboard(self) -> DashboardService:
        return DashboardService(self.context)

    @cached_property
    def notifications(self) -> NotificationService:
        return NotificationService(self.context, self._notifier, self.dashboard)

    @cached_property
    def _notifier(self) -> NotificationSender:
        if self.overrides.notifier is not None:
            return self.overrides.notifier
        from vmvault.notify import EmailSender, Senders, SmtpConfig, WebhookSender

        s = self.settings
        smtp = SmtpConfig(
            s.smtp_host, s.smtp_port, s.smtp_from, s.smtp_starttls, s.smtp_user, s.smtp_password
        )
        return Senders(WebhookSender(), EmailSender(smtp))

    @cached_property
    def metrics(self) -> MetricsService:
        return MetricsService(self.context, self.dashboard)

    @cached_property
    def points(self) -> PointService:
        return PointService(self.context)

    @cached_property
    def point_listing(self) -> PointListing:
        return PointListing(self.context)

    @cached_property
    def exports(self) -> ExportService:
        return ExportService(self.context, self.settings.work_dir)

    @cached_property
    def files(self) -> FileService:
        from vmvault.hypervisor.filesystems import ChosenFileSystems

        fs = ChosenFileSystems(self.settings.work_dir / "exports")
        return FileService(self.context, self.exports, fs)

    @cached_property
    def soft_delete(self) -> SoftDeleteService:
        service = SoftDeleteService(self.context)
        service.guard = self._guard
        return service

    @cached_property
    def approvals(self) -> ApprovalService:
        executors = Executors(lambda: self.soft_delete, lambda: self.policies,
                              lambda: self.protection, lambda: self.approvals)  # fmt: skip
        calls = ProtectedCalls(self.context, executors)
        service = ApprovalService(self.context, self.audit, self.notifications, calls)
        service.guard = service.guard_call
        return service

    def _guard(self, kind: Kind, args: dict[str, Any], by: Requester) -> None:
        """The services' approval guard (built on first use: services/approvals.py)."""
        self.approvals.guard_call(kind, args, by)

    @cached_property
    def immutability(self) -> ImmutabilityService:
        return ImmutabilityService(self.context)

    @cached_property
    def vault_settings(self) -> VaultSettingsService:
        return VaultSettingsService(self.soft_delete, self.approvals, self.immutability)

    @cached_property
    def restores(self) -> RestoreService:
        from vmvault.hypervisor.files import LocalHostFiles
        from vmvault.hypervisor.libvirt.instant import LibvirtInstantDriver
        from vmvault.hypervisor.libvirt.restore import LibvirtRestoreDriver

        return RestoreService(
            self.context,
            self.overrides.restore_driver or LibvirtRestoreDriver(),
            hypervisor=self._hypervisor,
            files=self.overrides.host_files or LocalHostFiles(),
            instant=LibvirtInstantDriver(),
            exports=self.exports,
        )

    @cached_property
    def queue(self) -> QueueService:
        return QueueService(
            self.context,
            lambda: self.backups,
            lambda: self.points,
            lambda: self.restores,
            lambda: self.protection,
            lambda: self.copies,
            lambda: self.backup_sets,
        )

    @cached_property
    def scheduler(self) -> SchedulerService:
        gc = self.settings.parsed_gc_schedule()
        node = self.node.identity.id
        return SchedulerService(self._uow, self.clock, gc, self.runner.on_end, node=node)

    @cached_property
    def jobs(self) -> JobQueries:
        return JobQueries(self._uow, self.clock)

    @cached_property
    def job_outcomes(self) -> JobOutcomes:
        return JobOutcomes(self._uow, self.clock)

    @cached_property
    def tokens(self) -> TokenService:
        return TokenService(self._uow, self.clock)

    @cached_property
    def audit(self) -> AuditService:
        return AuditService(self._uow, self.clock)

    @cached_property
    def lab(self) -> LabService:
        # Imported here: only ``vmvault lab`` needs the image builder and lab VMs.
        from vmvault.hypervisor.lab import vms as lab_vms
        from vmvault.hypervisor.lab.driver import LocalLab

        s = self.settings
        state = s.lab_dir.parent / "daemons"
        driver = LocalLab(DEFAULT_HOST_URI, s.lab_dir, s.lab_cache, state)
        return LabService(driver, lab_vms.VARIANTS, state)

    @cached_property
    def lab_storage(self) -> StorageLabService:
        from vmvault.hypervisor.lab.ceph import CephCluster

        return StorageLabService(CephCluster(self.settings.lab_dir / "ceph"))

    @cached_property
    def lab_catalog(self) -> StorageLabService:
        from vmvault.hypervisor.lab.postgres import PostgresCluster

        return StorageLabService(PostgresCluster(self.settings.lab_dir / "postgres"))

    @cached_property
    def recovery(self) -> RecoveryService:
        service = RecoveryService(self.context, self.backups, self.restores)
        service.sets = self.backup_sets
        return service


_NODES: dict[tuple[int, str], NodeIdentity] = {}


def process_node(host: str) -> NodeIdentity:
    """This process's node: one identity per process (and host), whatever the number of
    :class:`Services` (``vmvault serve`` builds one per worker)."""
    key = (os.getpid(), host)
    if key not in _NODES:
        machine = socket.gethostname()
        node_id = f"{machine}-{os.getpid()}-{secrets.token_hex(3)}"
        _NODES[key] = NodeIdentity(node_id, host, machine, os.getpid(), utcnow())
    return _NODES[key]


def bootstrap(
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
    *,
    uow: UnitOfWorkFactory | None = None,
    hypervisor: Hypervisor | None = None,
    backup_driver: BackupDriver | None = None,
    restore_driver: RestoreDriver | None = None,
    host_files: HostFiles | None = None,
    storage: StorageFactory | None = None,
    notifier: NotificationSender | None = None,
) -> Services:
    """Build the services lazily: a command that needs no catalog never opens it.

    Every adapter is the real one unless given: tests pass in-memory adapters here."""
    adapters = Adapters(
        uow, hypervisor, backup_driver, restore_driver, host_files, storage, notifier
    )
    settings = settings or Settings.from_env()
    clock = clock or clock_of(settings.test_clock_file)
    return Services(settings, clock=clock, overrides=adapters)
