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

And the values a backup passes around: :class:`TakenPoint` (what the hypervisor adapter
reports about the point in time it took), the backup journal's step names
(:class:`BackupStep`) and :class:`UnfinishedBackup` (what a dead backup's journal says it
left, read by :func:`unfinished_backup` for the clean-up).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from vmvault.domain.consistency import NOT_RUN, HookOutcome
from vmvault.domain.consistency import Consistency as Consistency  # re-exported
from vmvault.domain.consistency import consistency_of as consistency_of  # re-exported
from vmvault.domain.job import JournalStep
from vmvault.domain.soft_delete import Deletion
from vmvault.domain.vm import PowerState

#: Checkpoints vmvault creates are named ``vmvault-<point id>``; others are never touched.
CHECKPOINT_PREFIX = "vmvault-"


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


@dataclass(frozen=True)
class DamagedDisk:
    """What verify found damaged in one disk of a point and could not heal from a copy:
    byte ranges ``[start, end)`` of the disk whose chunks are missing or corrupt."""

    disk: str
    ranges: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        """``disk vda bytes [0, 65536), [131072, 196608)`` — for logs, errors and the CLI."""
        spans = ", ".join(f"[{a}, {b})" for a, b in self.ranges)
        return f"disk {self.disk} bytes {spans}"

    def to_json(self) -> dict[str, object]:
        return {"disk": self.disk, "ranges": [list(r) for r in self.ranges]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DamagedDisk:
        return cls(str(doc["disk"]), tuple((int(a), int(b)) for a, b in doc["ranges"]))


def describe_damage(damage: Iterable[DamagedDisk]) -> str:
    """Every damaged disk of a point, ``; ``-separated."""
    return "; ".join(d.describe() for d in damage)


@dataclass(frozen=True)
class PointCopy:
    """A recovery point held in a vault other than the one it was taken into."""

    point_id: str
    vault: str
    created_at: datetime
    job_id: int | None = None
    damaged: tuple[DamagedDisk, ...] | None = None
    #: None while the copy is held normally; set when soft-deleted from ``vault``
    deleted: Deletion | None = None


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
    #: why this method, and for a point below file-system-consistent why not frozen
    method_reason: str | None = None
    #: how long vmvault paused the VM for the point (saved-state), ms
    paused_ms: int = 0
    #: what the guest's application hooks reported for the freeze (None: before 0008)
    hooks: HookOutcome | None = None
    job_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: retention leaves the point alone until then (ad-hoc ``backup --keep-until``)
    keep_until: datetime | None = None
    #: pinned by the user: never pruned
    protected: bool = False
    #: None when intact; what verify found damaged (in this vault) and could not heal
    damaged: tuple[DamagedDisk, ...] | None = None
    #: None while held normally in its own vault; set when soft-deleted there (the copies
    #: carry their own: :attr:`PointCopy.deleted`)
    deleted: Deletion | None = None
    #: not deleted before then in an immutable vault (docs/immutability.md); None: no date
    retain_until: datetime | None = None

    @property
    def bytes_logical(self) -> int:
        return sum(d.size for d in self.disks if not d.excluded)

    @property
    def bytes_read(self) -> int:
        return sum(d.bytes_read for d in self.disks)

    @property
    def bytes_new(self) -> int:
        return sum(d.bytes_new for d in self.disks)


@dataclass
class HeldTotals:
    """The points a vault holds, in aggregate (the dashboard's storage figures)."""

    points: int = 0
    logical_bytes: int = 0
    #: how many points per consistency level (its value)
    by_consistency: dict[str, int] = field(default_factory=dict)


@dataclass
class BinnedTotals:
    """The points soft-deleted in a vault, in aggregate: how many, their logical bytes, the
    earliest purge due."""

    points: int = 0
    logical_bytes: int = 0
    next_purge_at: datetime | None = None


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


def pause_reason(agent_channel: bool, crash_consistent_only: bool) -> str | None:
    """Why a backup of a *running* VM pauses it (None: the guest agent freezes it instead)."""
    if not agent_channel:
        return "no guest agent channel"
    if crash_consistent_only:
        return "registered crash-consistent only"
    return None


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
    why = pause_reason(agent_channel, crash_consistent_only)
    if why is None:
        return MethodChoice(Method.GUEST_QUIESCE, "freeze", "guest agent freezes the file systems")
    return MethodChoice(
        Method.SAVED_STATE, "pause", f"{why}: VM paused while the point in time is taken"
    )


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


# --- the point in time, as the hypervisor adapter hands it over ------------------------------


@dataclass(frozen=True)
class TakenPoint:
    """How the point in time of a backup was taken (the adapter's report to the service).

    ``warnings`` end the job "completed with warnings" (a freeze that failed: the point is
    crash-consistent); ``notes`` are job-log lines.  ``frozen_ms`` is the freeze window (fsFreeze
    returned → fsThaw returned) — or, for a saved-state point taken after a failed freeze, the
    failed attempt (fsFreeze called → thaw verified); ``paused_ms`` the pause window of a VM
    vmvault paused.  ``hooks`` is what the guest's application hooks reported for the freeze
    (:mod:`vmvault.domain.consistency`).  ``released`` is False when the thaw or resume failed
    even after its retries: the guest may still be frozen or paused (a clean-up tries again)."""

    method: Method
    reason: str
    frozen: bool = False
    fs_frozen: int = 0
    frozen_ms: int = 0
    paused_ms: int = 0
    released: bool = True
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: ``guest-get-fsinfo`` taken just before the point (None: offline, no agent, no answer)
    fsinfo: tuple[Mapping[str, Any], ...] | None = None
    #: target → why the disk is read in full although the backup is incremental
    full_disks: Mapping[str, str] = field(default_factory=dict)
    hooks: HookOutcome = NOT_RUN

    @property
    def window_ms(self) -> int:
        """How long the guest was held still (frozen, or paused after a failed attempt)."""
        return self.frozen_ms + self.paused_ms

    @property
    def consistency(self) -> Consistency:
        return consistency_of(self.frozen, self.hooks)


# --- the backup job's journal ------------------------------------------------------------------


class BackupStep(StrEnum):
    """The steps of a backup job's journal, in order (docs/backup.md, "Journal").

    Phases (``JobContext.phase``: a log line, the phase observers, a cancel point) and plain
    records (``JobContext.record``).  Nothing is recorded while the guest is frozen or
    paused: ``freezing`` is entered before the window, ``point-taken`` after it."""

    PLANNED = "planned"  # record: point, checkpoint, incremental_from, method, quiesce, ...
    FREEZING = "freezing"  # phase: the point in time is being taken (window next)
    #: record: the freeze failed, the guest is thawed (verified); the VM is paused next for a
    #: saved-state point (a kill from here to ``point-taken`` leaves it paused: resume it)
    PAUSING = "pausing"
    POINT_TAKEN = "point-taken"  # record: the guest is released (or not: released=false)
    READING = "reading"  # phase
    WRITING = "writing"  # phase
    INDEXES_WRITTEN = "indexes-written"  # record
    COMMITTING = "committing"  # phase: the last cancel point
    MANIFEST_WRITTEN = "manifest-written"  # record: the point exists in the vault
    COMMITTED = "committed"  # record, in the catalog row's transaction: the backup is complete
    CLEANED_UP = "cleaned-up"  # record, by whoever cleaned up after the job
    #: record: a failed backup could not delete what it wrote (``point``, ``manifest``: its
    #: manifest was written); the VM's next backup or recovery finishes it
    DISCARD_FAILED = "discard-failed"


@dataclass(frozen=True)
class UnfinishedBackup:
    """What a backup that did not finish left behind, according to its journal.

    The hypervisor adapter's clean-up takes it as it is (it knows no catalog): which
    checkpoint the backup was creating, how it held the guest still, whether the VM was
    paused before it started (then it stays paused), and whether the window was entered and
    released."""

    job_id: int
    point: str
    checkpoint: str | None
    quiesce: str  # "freeze" | "pause" | "none"
    was_paused: bool
    offline: bool
    #: the ``freezing`` step was recorded: the guest may have been frozen or paused
    window_entered: bool
    #: ``point-taken`` was recorded (the window is over, backupBegin succeeded)
    point_taken: bool
    #: ``point-taken`` says the guest was thawed / resumed
    released: bool
    #: the last step recorded
    last_step: str
    #: ``manifest-written`` was recorded: the point exists in the vault
    manifest_written: bool = False
    #: ``committed`` was recorded: the catalog has the point
    committed: bool = False
    #: the vault the point was written to
    vault: str | None = None
    #: the failed backup could not delete its point (``discard-failed``)
    discard_failed: bool = False
    #: the plan per disk: target → {"incremental": bool, "reason": str, "format": str}
    disks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``pausing`` was recorded: after a failed freeze the VM was (about to be) paused
    fallback_pause: bool = False

    @property
    def may_hold_guest(self) -> bool:
        """The guest may still be frozen or paused by this backup."""
        return self.window_entered and not self.released

    @property
    def may_have_paused(self) -> bool:
        """This backup may have left the VM paused (planned pause, or saved-state fallback);
        never a VM that was paused before it started."""
        return (
            self.may_hold_guest
            and not self.was_paused
            and (self.quiesce == "pause" or self.fallback_pause)
        )

    @property
    def left_guest_held(self) -> bool:
        """The backup went on, but its thaw / resume failed: the guest may still be held."""
        return self.point_taken and not self.released


def unfinished_backup(job_id: int, steps: Sequence[JournalStep]) -> UnfinishedBackup | None:
    """Read a backup job's journal: None when it planned nothing (nothing to undo), when it
    committed with the guest released, or when someone already cleaned up after it."""
    by_name = {s.step: s for s in steps}
    planned = by_name.get(BackupStep.PLANNED)
    if planned is None or BackupStep.CLEANED_UP in by_name:
        return None
    taken = by_name.get(BackupStep.POINT_TAKEN)
    released = taken is not None and bool(taken.data.get("released", True))
    if BackupStep.COMMITTED in by_name and released:
        return None
    data = planned.data
    return UnfinishedBackup(
        job_id=job_id,
        point=str(data["point"]),
        checkpoint=data.get("checkpoint"),
        quiesce=str(data.get("quiesce", "none")),
        was_paused=bool(data.get("was_paused", False)),
        offline=bool(data.get("offline", False)),
        window_entered=BackupStep.FREEZING in by_name,
        point_taken=taken is not None,
        released=released,
        last_step=steps[-1].step,
        manifest_written=BackupStep.MANIFEST_WRITTEN in by_name,
        committed=BackupStep.COMMITTED in by_name,
        vault=data.get("vault"),
        disks=data.get("disks") or {},
        discard_failed=BackupStep.DISCARD_FAILED in by_name,
        fallback_pause=BackupStep.PAUSING in by_name,
    )
