"""What a restore job carries: the request checked up front, and the report it builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.restore import (
    DomainShape,
    LiveDomain,
    NicPlan,
    RestoreMode,
    RestorePlan,
)
from vmvault.domain.restore_test import (
    RestoreTestResult,
)
from vmvault.domain.vm import VmItem

#: Room for a qcow2's metadata on top of its data (L1/L2/refcount tables): generous.
QCOW2_OVERHEAD = 1 << 20
#: A restore test waits for its guest in slices this long, to see a cancel in between.
CANCEL_SLICE = 2.0


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
    instant: bool = False  # run from the export, copied while running, pivoted
    export_job: int | None = None  # --instant: the export job the VM ran from
    pivot_seconds: float | None = None  # --instant: from the job's start to the last pivot

    @property
    def bytes_written(self) -> int:
        return sum(d.bytes_written for d in self.disks)


@dataclass
class RestoreRequest:
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
    instant: bool = False
