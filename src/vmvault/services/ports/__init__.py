"""Ports: the contracts services need from adapters, one module per concept.

An adapter's author starts here: every contract is a :class:`typing.Protocol` with its
docstring; ``catalog`` (the repositories and the unit of work), ``hosts`` (discovery's view
of libvirt, the lab), ``nodes`` (nodes, leases, which node serves which host), ``backup``,
``restore`` and ``notify``.  The vault's storage contract
is ``vmvault.storage.backend``.  The real implementations live in ``vmvault.persistence``
and ``vmvault.hypervisor``; the in-memory ones, which unit tests of services pass to the
composition root, in ``vmvault.hypervisor.memory``.  Everything is re-exported here, so
``from vmvault.services.ports import X`` names any of them.
"""

from __future__ import annotations

from vmvault.services.ports.backup import BackupDriver, PointSession, Source
from vmvault.services.ports.catalog import (
    ApprovalRepository,
    AuditRepository,
    CatalogStats,
    CheckpointRepository,
    HostRepository,
    JobRepository,
    NotificationRepository,
    PointCopyRepository,
    PointRepository,
    PolicyRecord,
    PolicyRepository,
    ScheduleRepository,
    TokenRepository,
    UnitOfWork,
    UnitOfWorkFactory,
    VaultRepository,
    VmRepository,
)
from vmvault.services.ports.files import FileSystems
from vmvault.services.ports.hosts import CatalogLab, Hypervisor, LabDriver, ObjectStoreLab
from vmvault.services.ports.nodes import LeaseRepository, NodeDirectory, NodeRepository
from vmvault.services.ports.notify import NotificationSender
from vmvault.services.ports.restore import (
    DiskWriter,
    HostFiles,
    InstantDriver,
    RestoreDriver,
    WrittenImage,
)

__all__ = [
    "ApprovalRepository",
    "AuditRepository",
    "BackupDriver",
    "CatalogLab",
    "CatalogStats",
    "CheckpointRepository",
    "DiskWriter",
    "FileSystems",
    "HostFiles",
    "HostRepository",
    "Hypervisor",
    "InstantDriver",
    "JobRepository",
    "LabDriver",
    "LeaseRepository",
    "NodeDirectory",
    "NodeRepository",
    "NotificationRepository",
    "NotificationSender",
    "ObjectStoreLab",
    "PointCopyRepository",
    "PointRepository",
    "PointSession",
    "PolicyRecord",
    "PolicyRepository",
    "RestoreDriver",
    "ScheduleRepository",
    "Source",
    "TokenRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "VaultRepository",
    "VmRepository",
    "WrittenImage",
]
