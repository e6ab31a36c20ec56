"""Restoring a VM from a recovery point (docs/restore.md): the plan and the rules that need
no libvirt.

A restore that defines a VM (``--as-new``, ``--replace``, the restore test) is planned here
before a byte is written.  The plan says, for every backed-up disk, where its image is staged,
where it ends up, which file it displaces (``--replace``) and which symlink points at it from
the host's default directory; for every NIC whether it stays connected; which files of the
original VM (console logs, NVRAM, TPM state) get new paths; and what is left out.

The libvirt adapter reads a domain XML into a :class:`DomainShape` and renders the plan back
into XML; everything in between is decided here, so it is unit-tested without a hypervisor.

Rules, each with its reason:

* **staging next to the target** (``.<name>.vmvault-staging``): the final move is a rename on
  the same file system, so it is atomic and needs no second copy of the data;
* ``--replace`` moves the VM's current images aside to ``<name>.pre-restore-<job>`` in the
  same directory and removes them only when the job has finished (``--keep-previous`` keeps
  them), so a failure after the switch can always go back;
* a **new VM** gets a new name, uuid and MAC addresses (``52:54:00`` + 3 random bytes, like
  libvirt's own); its disks are called ``<name>-<target>.<fmt>``; a file of the original VM
  moves next to them, renamed after the new VM; files that are read-only by design (kernel,
  initrd, loader, CD-ROM images) stay shared;
* a NIC whose network or bridge is missing (or not active) on the target host stays in the
  XML, disconnected and with its link down, and the job names it in a warning; the restore
  test sets every link down (the copy must not talk to the original's peers);
* a new VM drops the disks that were not backed up and are not read-only (pass-through LUNs,
  network disks: still the original's storage) and host devices (one device, one VM).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from vmvault.domain.errors import RestoreUnsupportedDisk
from vmvault.domain.inputs import check_text
from vmvault.domain.recovery_point import PointDisk
from vmvault.domain.vm import PowerState

#: Prefix of the MAC addresses given to NICs of a new VM (QEMU/KVM's OUI, as libvirt uses).
MAC_PREFIX = "52:54:00"
STAGING_SUFFIX = ".vmvault-staging"
PRE_RESTORE = ".pre-restore-"
#: Where a host keeps VM images when libvirt has no storage pool named ``default``.
FALLBACK_DEFAULT_DIR = Path("/var/lib/libvirt/images")

_VM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")


class RestoreMode(StrEnum):
    AS_NEW = "as-new"
    REPLACE = "replace"
    TEST = "test"  # a new VM that is booted isolated, checked, then removed


class FileKind(StrEnum):
    """Files a domain XML names that belong to that one VM (they never stay shared)."""

    LOG = "log"  # <serial|console|channel><log file=…> and file-backed char devices
    NVRAM = "nvram"  # <os><nvram>: UEFI variables
    TPM = "tpm"  # <tpm><backend type='emulator'><source path>: swtpm state
    CHANNEL = "channel"  # <channel type='unix'><source path>: libvirt makes a new one


@dataclass(frozen=True)
class XmlDisk:
    """One ``<disk>`` of a domain XML, in document order."""

    target: str
    type: str  # file | block | network | volume …
    device: str  # disk | cdrom | lun | floppy
    format: str | None
    path: str | None
    readonly: bool = False
    shareable: bool = False


@dataclass(frozen=True)
class XmlNic:
    """One ``<interface>`` of a domain XML, in document order (``index``)."""

    index: int
    mac: str | None
    type: str  # network | bridge | direct | user | ethernet …
    source: str | None  # network, bridge or device name


@dataclass(frozen=True)
class XmlFile:
    kind: FileKind
    path: str


@dataclass(frozen=True)
class DomainShape:
    """What a restore needs to know about a domain XML."""

    name: str
    uuid: str
    disks: list[XmlDisk]
    nics: list[XmlNic]
    files: list[XmlFile]
    hostdevs: int = 0
    agent_channel: bool = False
    tpm_emulator: bool = False
    cluster_managed: str | None = None  # the domain's cluster marker (docs/backup.md)


@dataclass(frozen=True)
class LiveDomain:
    """A domain as it is defined on a host now."""

    uuid: str
    name: str
    power: PowerState
    xml: str  # the persistent (inactive) definition
    snapshots: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FreeSpace:
    """The file system a path is on (or will be on, once made), as the host reports it."""

    fs: int  # equal for two paths on the same file system (``st_dev``)
    free: int  # bytes an unprivileged writer may still use
    at: Path  # the nearest existing ancestor of the path (the path itself if it exists)


# --- names and paths ---------------------------------------------------------------------------


def check_vm_name(name: str) -> str:
    """Names of new VMs: 1–63 letters, digits, ``. _ + -``, starting with a letter or digit."""
    return check_text(
        name,
        _VM_NAME,
        "VM name",
        "use 1-63 letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
    )


def disk_file_name(vm_name: str, target: str, fmt: str) -> str:
    return f"{vm_name}-{target}.{fmt}"


def staging_path(final: Path) -> Path:
    """Where a disk is restored and verified before it is renamed to ``final``."""
    return final.with_name(f".{final.name}{STAGING_SUFFIX}")


def pre_restore_path(current: Path, tag: str) -> Path:
    """Where ``--replace`` keeps the image it displaced (same directory: a rename)."""
    return current.with_name(f"{current.name}{PRE_RESTORE}{tag}")


def renamed_file(path: str, old_name: str, new_name: str, directory: Path) -> Path:
    """The new home of a file of the original VM: the new VM's directory, named after it.

    ``/var/lib/libvirt/qemu/nvram/web_VARS.fd`` (VM ``web`` → ``web2``) → ``DIR/web2_VARS.fd``;
    a name without the old VM's name gets the new one as a prefix
    (``…/web/console.log`` → ``DIR/web2-console.log``).
    """
    base = Path(path).name
    if old_name and old_name in base:
        base = base.replace(old_name, new_name)
    else:
        base = f"{new_name}-{base}"
    return directory / base


def new_mac(taken: set[str], rand: Callable[[int], bytes] = os.urandom) -> str:
    """A MAC address in ``52:54:00:xx:xx:xx`` that is not in ``taken`` (lower case)."""
    for _ in range(1000):
        tail = rand(3)
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in tail)
        if mac not in taken:
            return mac
    raise RuntimeError("no free MAC address found")  # pragma: no cover - 1000 collisions


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskTarget:
    """One backed-up disk of the point and where its restored image goes."""

    target: str
    fmt: str  # qcow2 | raw: the image format written (the disk's own)
    size: int  # virtual size of the disk at the point
    path: Path  # the final image
    staging: Path  # restored and verified here first
    previous: Path | None = None  # --replace: the current image, moved aside on the switch
    link: Path | None = None  # symlink in the default directory (non-default DIR)


@dataclass(frozen=True)
class NicPlan:
    index: int
    mac: str | None  # the MAC the restored VM gets
    original_mac: str | None
    type: str
    source: str | None
    connected: bool  # False: network/bridge unusable → disconnected (type ethernet)
    link_down: bool
    problem: str | None = None  # why it is disconnected


@dataclass
class RestorePlan:
    mode: RestoreMode
    name: str  # of the VM defined
    uuid: str
    host_uri: str
    directory: Path | None  # where the disks go (None for --replace: where they were)
    disks: list[DiskTarget]
    nics: list[NicPlan]
    files: dict[str, str] = field(default_factory=dict)  # old path → new path
    drop_disks: dict[str, str] = field(default_factory=dict)  # target → why left out
    drop_hostdevs: bool = False
    drop_channel_paths: bool = False
    keep_identity: bool = False  # --replace: same name/uuid/MACs/files
    notes: list[str] = field(default_factory=list)  # logged
    warnings: list[str] = field(default_factory=list)  # the job's warnings

    @property
    def disk_paths(self) -> dict[str, tuple[Path, str]]:
        return {d.target: (d.path, d.fmt) for d in self.disks}

    @property
    def links(self) -> list[tuple[Path, Path]]:
        return [(d.link, d.path) for d in self.disks if d.link is not None]


def backed_up(disks: Sequence[PointDisk]) -> list[PointDisk]:
    return [d for d in disks if not d.excluded]


def plan_new(
    mode: RestoreMode,
    shape: DomainShape,
    point_disks: Sequence[PointDisk],
    *,
    name: str,
    uuid: str,
    host_uri: str,
    directory: Path,
    default_dir: Path,
    nic_problems: Mapping[int, str | None],
    taken_macs: set[str] | None = None,
    rand: Callable[[int], bytes] = os.urandom,
) -> RestorePlan:
    """Plan a new VM (``--as-new`` or the restore test) from the point's domain XML."""
    if mode is RestoreMode.REPLACE:
        raise ValueError("plan_new plans a new VM")
    xml_disks = {d.target: d for d in shape.disks}
    plan = RestorePlan(mode, name, uuid, host_uri, directory, [], [])
    same_dir = _same_dir(directory, default_dir)
    for pd in backed_up(point_disks):
        fmt = pd.format or (xml_disks[pd.target].format if pd.target in xml_disks else None)
        fmt = fmt if fmt in ("qcow2", "raw") else "raw"
        final = directory / disk_file_name(name, pd.target, fmt)
        link = None
        if mode is RestoreMode.AS_NEW and not same_dir:
            link = default_dir / final.name
        plan.disks.append(
            DiskTarget(pd.target, fmt, pd.size, final, staging_path(final), None, link)
        )
    restored = {d.target for d in plan.disks}
    left_out = {pd.target: pd.reason for pd in point_disks if pd.excluded and pd.reason}
    for d in shape.disks:
        if d.target in restored:
            continue
        if d.readonly or d.device in ("cdrom", "floppy"):
            plan.notes.append(f"disk {d.target} ({d.device}, read-only) stays shared: {d.path}")
            continue
        why = left_out.get(d.target) or _left_out(d)
        plan.drop_disks[d.target] = why
        plan.warnings.append(
            f"disk {d.target} ({why}) is not part of the point and still belongs to "
            f"{shape.name}: left out of {name}"
        )
    if shape.hostdevs:
        plan.drop_hostdevs = True
        plan.warnings.append(
            f"{shape.hostdevs} host device(s) passed through to {shape.name} left out of {name} "
            "(a device serves one VM)"
        )
    for f in shape.files:
        if f.kind is FileKind.CHANNEL:
            plan.drop_channel_paths = True
            continue
        new = renamed_file(f.path, shape.name, name, directory)
        plan.files[f.path] = str(new)
    if shape.tpm_emulator:
        plan.warnings.append(
            f"the TPM state of {shape.name} is not in the point: {name} starts with an empty TPM "
            "(secrets sealed to the TPM, e.g. disk encryption keys, need their recovery keys)"
        )
    taken = {m.lower() for m in (taken_macs or set())}
    taken |= {n.mac.lower() for n in shape.nics if n.mac}
    for nic in shape.nics:
        mac = new_mac(taken, rand)
        taken.add(mac)
        plan.nics.append(
            decide_nic(nic, mac, nic_problems.get(nic.index), isolate=mode is RestoreMode.TEST)
        )
    plan.warnings += [_nic_warning(n, name) for n in plan.nics if n.problem]
    return plan


def plan_replace(
    shape: DomainShape,
    point_disks: Sequence[PointDisk],
    *,
    current: DomainShape,
    host_uri: str,
    nic_problems: Mapping[int, str | None],
) -> RestorePlan:
    """Plan ``--replace``: the point's definition under the VM's current name and uuid.

    Each disk goes back where the VM has that disk now (or, for a disk the VM no longer has,
    where it was at the point); the current image is moved aside to ``pre-restore`` when
    the switch happens.  Disks of the VM that the point does not have stay untouched: one
    the point left out (excluded by user, pass-through …) stays attached as the VM has it now
    (its current source), or is left out of the definition when the VM no longer has it.
    """
    now_disks = {d.target: d for d in current.disks}
    xml_disks = {d.target: d for d in shape.disks}
    plan = RestorePlan(
        RestoreMode.REPLACE, current.name, current.uuid, host_uri, None, [], [], keep_identity=True
    )
    for pd in backed_up(point_disks):
        now = now_disks.get(pd.target)
        then = xml_disks.get(pd.target)
        fmt = pd.format or (then.format if then else None) or "raw"
        where = now if now is not None else then
        if where is None or where.type != "file" or not where.path:
            kind = f"{where.type} disk" if where is not None else "disk without a source"
            raise RestoreUnsupportedDisk(target=pd.target, vm=current.name, kind=kind)
        final = Path(where.path)
        previous = final if now is not None else None
        plan.disks.append(
            DiskTarget(pd.target, fmt, pd.size, final, staging_path(final), previous, None)
        )
    restored = {d.target for d in plan.disks}
    for pd in point_disks:
        if not pd.excluded or pd.target not in xml_disks:
            continue
        now, then = now_disks.get(pd.target), xml_disks[pd.target]
        if now is None:
            plan.drop_disks[pd.target] = pd.reason or "not in the point"
            plan.warnings.append(
                f"disk {pd.target} ({pd.reason}) is not in the point and {current.name} no "
                "longer has it: left out of the restored definition"
            )
            continue
        if then.path and now.path and then.path != now.path:
            plan.files[then.path] = now.path
        plan.notes.append(
            f"disk {pd.target} ({pd.reason}) is not in the point: {current.name} keeps its "
            f"current {pd.target} ({now.path}) attached, untouched"
        )
    for d in current.disks:
        if d.target not in restored and d.target not in xml_disks and d.path:
            plan.warnings.append(
                f"disk {d.target} ({d.path}) was added to {current.name} after the point: "
                "not in the restored definition, its file is left untouched"
            )
    for nic in shape.nics:
        plan.nics.append(decide_nic(nic, nic.mac, nic_problems.get(nic.index), isolate=False))
    plan.warnings += [_nic_warning(n, current.name) for n in plan.nics if n.problem]
    if shape.name != current.name:
        plan.notes.append(f"the VM was called {shape.name} at the point; it keeps {current.name}")
    return plan


def decide_nic(nic: XmlNic, mac: str | None, problem: str | None, *, isolate: bool) -> NicPlan:
    """Connected when its network/bridge is usable (``problem`` None), else disconnected."""
    return NicPlan(
        index=nic.index,
        mac=mac,
        original_mac=nic.mac,
        type=nic.type,
        source=nic.source,
        connected=problem is None,
        link_down=isolate or problem is not None,
        problem=problem,
    )


def _nic_warning(nic: NicPlan, vm: str) -> str:
    return (
        f"NIC {nic.mac or nic.index} of {vm}: {nic.problem}; it stays in the definition, "
        f"disconnected with its link down (reconnect it with 'virsh update-device' once the "
        f"{nic.type} '{nic.source}' exists)"
    )


def _left_out(d: XmlDisk) -> str:
    if d.device == "lun":
        return "pass-through LUN"
    if d.type == "network":
        return f"network disk {d.path or ''}".strip()
    return f"{d.type} disk {d.path or ''} not backed up".strip()


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:  # pragma: no cover
        return a.absolute() == b.absolute()


def space_by_device(needs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Sum ``(device, bytes)`` pairs per file system (``st_dev``)."""
    out: dict[int, int] = {}
    for dev, need in needs:
        out[dev] = out.get(dev, 0) + need
    return out
