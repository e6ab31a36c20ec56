"""Planning a backup before the VM is touched: the method, and per disk full or incremental.

:func:`plan_backup` checks the previous point's checkpoint (and redefines it from the catalog
when libvirt lost its metadata while the bitmaps survived in the images), decides each disk's
read (``domain.recovery_point.plan_reads``) and names the new point and checkpoint.  The
:class:`BackupPlan` it returns is what the ``planned`` journal step records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmvault.domain.cluster import refuse_pause
from vmvault.domain.consistency import Consistency
from vmvault.domain.errors import PullDiskNotFile, PullVmShutOff, VmvaultError
from vmvault.domain.recovery_point import (
    DiskRead,
    Method,
    MethodChoice,
    RecoveryPoint,
    checkpoint_name,
    choose_method,
    new_point_id,
    plan_reads,
)
from vmvault.domain.vault import Vault
from vmvault.domain.vm import Disk, VmItem
from vmvault.services.jobs import JobContext
from vmvault.services.ports import BackupDriver, UnitOfWorkFactory


@dataclass(frozen=True)
class ChainState:
    """Can the previous point's checkpoint serve an incremental (and was it repaired)?"""

    usable: bool
    problem: str | None
    repaired: str | None = None


@dataclass(frozen=True)
class BackupPlan:
    """Everything decided before the point in time is taken."""

    vault: Vault
    vm: VmItem
    point_id: str
    created_at: datetime
    choice: MethodChoice
    disks: tuple[Disk, ...]  # the disks read (excluded ones are in vm.excluded_disks)
    reads: Mapping[str, DiskRead]  # target → full or incremental, and why
    sizes: Mapping[str, int]  # target → capacity
    previous: RecoveryPoint | None
    incremental_from: str | None  # the previous point's checkpoint, when any disk uses it
    checkpoint: str | None  # the checkpoint this backup creates (None: offline, or no qcow2)
    #: the level the point must reach, or the backup fails (None: any; ``--require``)
    require: Consistency | None = None
    #: False for a cluster-managed VM: the hypervisor must never pause it — a failed freeze
    #: then fails the backup (``FREEZE_REQUIRED``) instead of taking a saved-state point
    allow_pause: bool = True
    #: a VM of a host vmvault pulls from (domain/pull.py): the client PKI directory
    pull_tls: str | None = None

    @property
    def offline(self) -> bool:
        return self.choice.method is Method.OFFLINE

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def journal(self) -> dict[str, Any]:
        """The ``planned`` step's data (docs/backup.md, "Journal")."""
        formats = {d.target: d.format for d in self.disks}
        return {
            "point": self.point_id,
            "vault": self.vault.name,
            "checkpoint": self.checkpoint,
            "incremental_from": self.incremental_from,
            "method": self.choice.method.value,
            "quiesce": self.choice.quiesce,
            "was_paused": self.choice.quiesce == "none" and not self.offline,
            "offline": self.offline,
            "require": self.require.value if self.require is not None else None,
            "allow_pause": self.allow_pause,
            "pull_tls": self.pull_tls,
            "disks": {
                t: {"incremental": r.incremental, "reason": r.reason, "format": formats.get(t)}
                for t, r in self.reads.items()
            },
        }


def plan_backup(
    uow: UnitOfWorkFactory,
    driver: BackupDriver,
    clock: Callable[[], datetime],
    vault: Vault,
    vm: VmItem,
    ctx: JobContext,
    require: Consistency | None = None,
    pull_tls: str | None = None,
) -> BackupPlan:
    """Decide the method and each disk's read (logged), name the point and its checkpoint.
    ``pull_tls``: the VM's host is pulled from (domain/pull.py)."""
    disks = vm.backup_disks
    choice = choose_method(vm.power_state, vm.agent_channel, vm.crash_consistent_only)
    if pull_tls is not None:
        if choice.method is Method.OFFLINE:  # its images are read by path, on their host
            raise PullVmShutOff(vm=vm.label, uri=vm.host_uri)
        refuse_unpullable(vm, disks)
        ctx.log(f"pulled over NBD with TLS from {vm.host_uri} (client certificates {pull_tls})")
    allow_pause = not vm.cluster_managed
    if not allow_pause:
        if choice.quiesce == "pause":
            refuse_pause(vm, choice.reason)
        ctx.log(f"cluster-managed ({vm.cluster_managed}): never paused")
    ctx.log(f"method {choice.method.value}: {choice.reason}")
    with uow() as u:
        history = u.points.for_vm(vm.uuid, vault.name)
    previous = history[0] if history else None
    chain = check_chain(uow, driver, vm, previous, disks, ctx)
    capacity = driver.disk_sizes(vm.host_uri, vm.uuid)
    sizes = {d.target: capacity[d.target] for d in disks}
    reads = plan_reads(
        [(d.target, d.format, sizes[d.target]) for d in disks],
        previous,
        chain.usable,
        chain.problem,
    )
    for r in reads:
        ctx.log(f"disk {r.target}: {'incremental' if r.incremental else 'full'} ({r.reason})")
    now = clock()
    point_id = new_point_id(now)
    incremental = previous is not None and any(r.incremental for r in reads)
    checkpoint = None
    if choice.method is not Method.OFFLINE and any(d.format == "qcow2" for d in disks):
        checkpoint = checkpoint_name(point_id)
    return BackupPlan(
        vault=vault,
        vm=vm,
        point_id=point_id,
        created_at=now,
        choice=choice,
        disks=tuple(disks),
        reads={r.target: r for r in reads},
        sizes=sizes,
        previous=previous,
        incremental_from=previous.checkpoint if previous is not None and incremental else None,
        checkpoint=checkpoint,
        allow_pause=allow_pause,
        require=require,
        pull_tls=pull_tls,
    )


def refuse_unpullable(vm: VmItem, disks: Sequence[Disk]) -> None:
    """Before anything is planned: a pull's disks must be image files
    (``PULL_DISK_NOT_FILE``: its scratch file goes next to the image; the adapter checks the
    live XML again)."""
    refused = [f"{d.target} ({d.type}: {d.path})" for d in disks if d.type != "file"]
    if refused:
        raise PullDiskNotFile(vm=vm.label, uri=vm.host_uri, disks=", ".join(refused))


def check_chain(
    uow: UnitOfWorkFactory,
    driver: BackupDriver,
    vm: VmItem,
    previous: RecoveryPoint | None,
    disks: list[Disk],
    ctx: JobContext,
) -> ChainState:
    """Can the previous point's checkpoint serve an incremental?  Repair it if libvirt
    lost its metadata while the bitmaps survived in the images."""
    if previous is None or previous.checkpoint is None:
        return ChainState(False, None)
    name = previous.checkpoint
    repaired = None
    if name not in driver.checkpoints(vm.host_uri, vm.uuid):
        with uow() as u:
            records = {r.name: r for r in u.checkpoints.for_vm(vm.uuid)}
        record = records.get(name)
        if record is None:  # e.g. a catalog rebuilt by ``vault attach``: it keeps none
            why = "and not in the catalog to redefine it from"
            return ChainState(False, f"checkpoint {name} missing in libvirt {why}")
        try:
            driver.redefine_checkpoint(vm.host_uri, vm.uuid, record.xml)
        except VmvaultError as exc:
            return ChainState(False, f"checkpoint {name} missing in libvirt ({exc.text})")
        repaired = name
    # only disks the previous point backed up: a disk added or included since then is read
    # in full (plan_reads) and must not break the chain of the others
    before = {d.target for d in previous.disks if not d.excluded}
    qcow2 = [d.target for d in disks if d.format == "qcow2" and d.target in before]
    problems = driver.checkpoint_problems(vm.host_uri, vm.uuid, name, qcow2)
    if problems:
        return ChainState(False, "; ".join(problems))
    if repaired:
        ctx.log(f"checkpoint {name} was missing in libvirt: redefined from the catalog")
    return ChainState(True, None, repaired=repaired)
