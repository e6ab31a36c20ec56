"""Recovery points and the decisions a backup makes before it reads a byte.

A *recovery point* is a point-in-time copy of one VM: its domain XML, one disk index per
backed-up disk (kept in the vault), the consistency level, the method, the frozen window and
sizes.  Every point holds a full index of each disk, so deleting any other point never breaks
it (docs/backup.md, "Recovery points").

Decisions made here, all pure:

* the **method** (docs/backup.md, step 2): ``guest-quiesce`` when the VM runs and its agent
  may freeze; ``saved-state`` (pause for the instant the point is taken) when it runs without
  a usable agent; ``offline`` when it is shut off;
* the **consistency** that follows from what actually happened;
* per disk, whether the read is **incremental** (only the dirty extents since the previous
  point's checkpoint) or **full**, and why.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from vmvault.domain.vm import PowerState

#: Checkpoints vmvault creates are named ``vmvault-<point id>``; others are never touched.
CHECKPOINT_PREFIX = "vmvault-"


class Consistency(StrEnum):
    APPLICATION = "application-consistent"
    FILE_SYSTEM = "file-system-consistent"
    CRASH = "crash-consistent"


class Method(StrEnum):
    GUEST_QUIESCE = "guest-quiesce"
    SAVED_STATE = "saved-state"
    OFFLINE = "offline"


@dataclass(frozen=True)
class PointDisk:
    target: str
    size: int
    format: str | None = None
    excluded: bool = False
    reason: str | None = None  # why excluded, or why a full read was needed
    incremental: bool = False
    bytes_read: int = 0
    bytes_new: int = 0


@dataclass
class RecoveryPoint:
    id: str
    vault: str
    vm_uuid: str
    vm_name: str
    created_at: datetime
    consistency: Consistency
    method: Method
    frozen_ms: int
    checkpoint: str | None
    disks: list[PointDisk]
    set_id: str | None = None
    job_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: retention leaves the point alone until then (ad-hoc ``backup --keep-until``)
    keep_until: datetime | None = None
    #: pinned by the user: never pruned
    protected: bool = False

    @property
    def bytes_logical(self) -> int:
        return sum(d.size for d in self.disks if not d.excluded)

    @property
    def bytes_read(self) -> int:
        return sum(d.bytes_read for d in self.disks)

    @property
    def bytes_new(self) -> int:
        return sum(d.bytes_new for d in self.disks)


@dataclass(frozen=True)
class CheckpointRecord:
    """A libvirt checkpoint vmvault created, with the XML to redefine it if libvirt loses it."""

    name: str
    vm_uuid: str
    point_id: str
    created_at: datetime
    xml: str


def new_point_id(now: datetime) -> str:
    """Sortable, unique, filename- and checkpoint-name-safe: ``20261122T031500Z-3f9a1c``."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def checkpoint_name(point_id: str) -> str:
    return CHECKPOINT_PREFIX + point_id


def is_our_checkpoint(name: str) -> bool:
    """True for a checkpoint vmvault made (``vmvault-<something>``, as :func:`checkpoint_name`
    writes them): the one rule for which checkpoints vmvault may delete, redefine or count as
    stray.  The bare prefix is nobody's; every other checkpoint is left alone."""
    return name.startswith(CHECKPOINT_PREFIX) and len(name) > len(CHECKPOINT_PREFIX)


@dataclass(frozen=True)
class MethodChoice:
    method: Method
    quiesce: str  # "freeze" | "pause" | "none"
    reason: str


def choose_method(
    power: PowerState, agent_channel: bool, crash_consistent_only: bool
) -> MethodChoice:
    """Which method this backup uses, and why (the reason is recorded in the job)."""
    if power is PowerState.SHUT_OFF:
        return MethodChoice(Method.OFFLINE, "none", "VM is shut off: its images are read directly")
    if power is PowerState.PAUSED:
        return MethodChoice(
            Method.SAVED_STATE, "none", "VM is paused: taken as it is, and left paused"
        )
    if agent_channel and not crash_consistent_only:
        return MethodChoice(Method.GUEST_QUIESCE, "freeze", "guest agent freezes the file systems")
    why = "no guest agent channel" if not agent_channel else "registered crash-consistent only"
    return MethodChoice(
        Method.SAVED_STATE, "pause", f"{why}: VM paused while the point in time is taken"
    )


def consistency_of(frozen: bool, app_hooks_ran: bool = False) -> Consistency:
    if frozen and app_hooks_ran:
        return Consistency.APPLICATION
    if frozen:
        return Consistency.FILE_SYSTEM
    return Consistency.CRASH


@dataclass(frozen=True)
class DiskRead:
    target: str
    incremental: bool
    reason: str  # why full, or "dirty extents since <checkpoint>"


def plan_reads(
    disks: list[tuple[str, str | None, int]],
    previous: RecoveryPoint | None,
    checkpoint_usable: bool,
    checkpoint_problem: str | None = None,
) -> list[DiskRead]:
    """Decide, per disk ``(target, format, size)``, between an incremental and a full read.

    A disk is read incrementally only when the previous point exists, carries a checkpoint
    that is still usable (in libvirt and as a bitmap in every image), and had the same disk
    with the same size.  Raw disks cannot carry a bitmap: always full (deduplicated).
    """
    prev = {d.target: d for d in previous.disks if not d.excluded} if previous else {}
    out = []
    for target, fmt, size in disks:
        if fmt != "qcow2":
            out.append(DiskRead(target, False, f"{fmt} disk: no checkpoints, full read"))
        elif previous is None or previous.checkpoint is None:
            out.append(DiskRead(target, False, "first backup: full read"))
        elif not checkpoint_usable:
            why = checkpoint_problem or "checkpoint of the previous point unusable"
            out.append(DiskRead(target, False, f"chain broken ({why}): full read"))
        elif target not in prev:
            out.append(DiskRead(target, False, "disk added since the previous point: full read"))
        elif prev[target].size != size:
            out.append(DiskRead(target, False, "disk resized since the previous point: full read"))
        else:
            out.append(DiskRead(target, True, f"dirty extents since {previous.checkpoint}"))
    return out
