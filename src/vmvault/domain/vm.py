"""VM items: what discovery records about a libvirt domain, and which of its disks we can back up.

A VM item is identified by its libvirt uuid.  Its *name* is not unique: two hosts (or two
groups) may each have a ``web-1``; every listing therefore shows host and group, and
:func:`vmvault.domain.inventory.match_vm` resolves ``uuid``, ``NAME``, ``HOST/NAME`` or
``GROUP/NAME``.

Protection states (docs/architecture.md, "Protection and retention") are ``discovered`` →
``registered`` → ``protected`` → ``protection-stopped``.  Power states are libvirt's, spelled
as ``virsh domstate`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from vmvault.domain.vm_states import PowerState as PowerState  # their own module (see there)
from vmvault.domain.vm_states import VmState as VmState

#: Disk formats whose images can carry persistent dirty bitmaps, hence libvirt checkpoints.
CHECKPOINT_FORMATS = frozenset({"qcow2"})
#: Formats we can read through an NBD export for a full backup.
BACKUP_FORMATS = frozenset({"qcow2", "raw"})
#: The reason a point and ``vm show`` give for a disk the operator left out (``--exclude-disk``).
EXCLUDED_BY_USER = "excluded by user"


@dataclass(frozen=True)
class Disk:
    """One ``<disk>`` of a domain as discovery saw it."""

    target: str  # vda, sdb …
    type: str  # file | block | network | volume | dir | nvme
    device: str  # disk | lun | cdrom | floppy
    format: str | None  # qcow2 | raw | … (driver type)
    path: str | None  # source file/dev, or protocol://name for network disks
    bus: str | None = None
    readonly: bool = False
    excluded: bool = False
    reason: str | None = None

    @property
    def supports_checkpoints(self) -> bool:
        return not self.excluded and self.format in CHECKPOINT_FORMATS


def classify_disk(disk: Disk) -> Disk:
    """Decide whether a disk can be backed up; excluded disks carry the reason.

    Pass-through LUNs, network disks and removable media are left out of every backup
    (docs/backup.md, "Selective disks"); formats other than qcow2/raw are not read either.
    A ``type='block' device='disk'`` (an LV, a whole host disk) is emulated by QEMU, not
    passed through: it is backed up, as raw.  Disks the operator excludes are applied on top
    (:func:`with_exclusions`).
    """
    reason: str | None = None
    if disk.device in ("cdrom", "floppy"):
        reason = f"{disk.device} media"
    elif disk.device == "lun":
        reason = "pass-through LUN (device='lun')"
    elif disk.type == "network":
        reason = f"network disk ({disk.path or 'remote'})"
    elif disk.type not in ("file", "block", "volume"):
        reason = f"disk type '{disk.type}' not supported"
    elif disk.path is None:
        reason = "no source (empty drive)"
    elif disk.format not in BACKUP_FORMATS:
        reason = f"format '{disk.format}' not supported (qcow2 or raw only)"
    if reason is None and not disk.excluded and disk.reason is None:
        return disk  # already as classified (no copy: a fleet's discovery has thousands)
    return replace(disk, excluded=reason is not None, reason=reason)


def with_exclusions(disks: Iterable[Disk], excluded: Collection[str]) -> list[Disk]:
    """``disks`` with those whose target the operator excluded marked ``excluded by user``
    (a disk already left out automatically keeps its own reason)."""
    return [
        replace(d, excluded=True, reason=EXCLUDED_BY_USER)
        if d.target in excluded and not d.excluded
        else d
        for d in disks
    ]


@dataclass(frozen=True)
class Nic:
    mac: str | None
    type: str  # network | bridge | direct | user …
    source: str | None  # network or bridge name
    model: str | None = None


def fields_of(item: Disk | Nic) -> dict[str, Any]:
    """A disk's or NIC's fields as a dict: what ``dataclasses.asdict`` gives for these flat
    dataclasses, without its deep copy (a fleet's discovery and listings ask it thousands of
    times: asdict was a third of a discovery of 2,000 VMs)."""
    return dict(vars(item))


@dataclass(frozen=True)
class DomainFacts:
    """What a hypervisor reports about one domain at one moment (input to discovery)."""

    uuid: str
    name: str
    host_uri: str
    hostname: str
    group: str
    power_state: PowerState
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    agent_channel: bool
    persistent: bool = True
    fingerprint: str = ""  # hash of the parts of the XML we record; changes mean "changed"
    #: why a cluster manager owns the domain (its metadata marker, a pacemaker resource)
    cluster_managed: str | None = None
    #: why ownership could not be read (the cluster's configuration query failed): the
    #: catalog's previous ``cluster_managed`` is kept, never taken as "not cluster-managed"
    cluster_unknown: str | None = None


@dataclass
class VmItem:
    """A VM that discovery has recorded, with its protection state."""

    uuid: str
    name: str
    host_uri: str
    hostname: str
    group: str
    power_state: PowerState
    disks: list[Disk]
    nics: list[Nic]
    agent_channel: bool
    fingerprint: str
    first_seen: datetime
    last_seen: datetime
    state: VmState = VmState.DISCOVERED
    vanished_at: datetime | None = None
    vault: str | None = None
    registered_at: datetime | None = None
    agent_version: str | None = None
    crash_consistent_only: bool = False
    registration_warnings: list[str] = field(default_factory=list)
    #: the policy of a protected (or protection-stopped) VM
    policy: str | None = None
    #: when protection (with its current policy) was configured
    protected_since: datetime | None = None
    #: targets the operator excluded from backups (``--exclude-disk``), kept across discoveries
    excluded_targets: list[str] = field(default_factory=list)
    #: why a cluster manager owns the VM (None: it does not); vmvault never pauses, shuts
    #: off, undefines or replaces such a VM (docs/backup.md, "VMs owned by a cluster manager")
    cluster_managed: str | None = None

    @property
    def effective_disks(self) -> list[Disk]:
        """The disks as backups see them: discovery's view plus the operator's exclusions."""
        return with_exclusions(self.disks, self.excluded_targets)

    @property
    def backup_disks(self) -> list[Disk]:
        return [d for d in self.effective_disks if not d.excluded]

    @property
    def excluded_disks(self) -> list[Disk]:
        return [d for d in self.effective_disks if d.excluded]

    @property
    def label(self) -> str:
        """How the VM is named in messages: unique even when names repeat."""
        return f"{self.hostname}/{self.name}"

    def apply(self, facts: DomainFacts, now: datetime) -> None:
        """Take the latest facts from discovery (the protection state is kept)."""
        self.name = facts.name
        self.host_uri = facts.host_uri
        self.hostname = facts.hostname
        self.group = facts.group
        self.power_state = facts.power_state
        self.disks = list(facts.disks)
        self.nics = list(facts.nics)
        self.agent_channel = facts.agent_channel
        self.fingerprint = facts.fingerprint
        if facts.cluster_managed is not None or facts.cluster_unknown is None:
            self.cluster_managed = facts.cluster_managed  # unknown: the previous value stays
        self.last_seen = now
        self.vanished_at = None

    @classmethod
    def from_facts(cls, facts: DomainFacts, now: datetime) -> VmItem:
        return cls(
            uuid=facts.uuid,
            name=facts.name,
            host_uri=facts.host_uri,
            hostname=facts.hostname,
            group=facts.group,
            power_state=facts.power_state,
            disks=list(facts.disks),
            nics=list(facts.nics),
            agent_channel=facts.agent_channel,
            fingerprint=facts.fingerprint,
            first_seen=now,
            last_seen=now,
            cluster_managed=facts.cluster_managed,
        )


@dataclass(frozen=True)
class WatchedVm:
    """What the attention rule (services/dashboard.py) reads of a protected VM: its name,
    policy, since when it is protected and whether it vanished — read alone for a fleet's
    dashboard, without the disks and NICs of :class:`VmItem`."""

    uuid: str
    name: str
    hostname: str
    policy: str | None
    protected_since: datetime | None
    vanished_at: datetime | None

    @property
    def label(self) -> str:
        return f"{self.hostname}/{self.name}"

    @classmethod
    def of(cls, vm: VmItem) -> WatchedVm:
        return cls(vm.uuid, vm.name, vm.hostname, vm.policy, vm.protected_since, vm.vanished_at)
