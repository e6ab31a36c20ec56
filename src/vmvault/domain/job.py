"""Jobs: every operation vmvault performs is a persisted job (docs/architecture.md, "Jobs
and their exclusion").

A job has a type, an optional VM, a state, progress, times, warnings, a log and — when it
failed — the error's code, message and remedy.  At most one *active* job (queued,
in-progress or cancelling) may touch a VM, and at most one discovery may be active per vault;
:func:`conflict_key` gives the key that the catalog keeps unique among active jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vmvault.domain.inputs import parse_duration


class JobType(StrEnum):
    DISCOVERY = "discovery"
    REGISTER = "register"
    CONFIGURE_PROTECTION = "configure-protection"
    BACKUP = "backup"
    RESTORE = "restore"
    VERIFY = "verify"
    PRUNE = "prune"
    GC = "gc"
    STOP_PROTECTION = "stop-protection"
    UNREGISTER = "unregister"
    COPY = "copy"
    BACKUP_SET = "backup-set"
    EXPORT = "export"


class JobState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed-with-warnings"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES

    @property
    def final(self) -> bool:
        return not self.active


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.IN_PROGRESS, JobState.CANCELLING})


def conflict_key(job_type: JobType, vault: str, vm_uuid: str | None) -> str | None:
    """The key no two active jobs may share: ``vm:<uuid>`` or ``discovery:<vault>``.  An
    export only reads a point: it takes none (backups of the VM go on while it serves)."""
    if job_type is JobType.EXPORT:
        return None
    if vm_uuid is not None:
        return f"vm:{vm_uuid}"
    if job_type is JobType.DISCOVERY:
        return f"discovery:{vault}"
    return None


@dataclass
class Job:
    id: int
    type: JobType
    vault: str
    vm_uuid: str | None
    vm_name: str | None
    state: JobState
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    warnings: list[str] = field(default_factory=list)
    error_code: str | None = None
    message: str | None = None
    remedy: str | None = None
    log: list[str] = field(default_factory=list)
    pid: int | None = None
    #: What a queued job will do: ``{"op": "backup", "vm": uuid, ...}`` (see services/queue.py).
    request: dict[str, Any] | None = None
    #: Who asked for it: ``cli``, ``api``, ``policy NAME at SLOT``, ``gc schedule at SLOT``.
    origin: str | None = None
    #: The set job this job belongs to (a backup set's child; see services/backup_sets.py).
    parent_id: int | None = None
    #: The node that runs it (domain/node.py) and until when that node's heartbeat vouches
    #: for it: a job whose lease has passed is orphaned, whatever its pid.
    node: str | None = None
    lease_until: datetime | None = None

    @property
    def percent(self) -> float | None:
        if self.bytes_total <= 0:
            return 100.0 if self.state is JobState.COMPLETED else None
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.ended_at or self.started_at
        return end - self.started_at


@dataclass(frozen=True)
class JournalStep:
    """One entry of a job's journal: a typed step that recovery reads after a kill.

    The log is text for people; the journal is for the program.  A job records a step when
    it has done something that recovery must know about (the point it writes, the files it
    staged, the VM it is switching) — before the thing it describes can be left half done.
    ``data`` is a JSON object; each job type documents its steps and their keys
    (docs/backup.md, docs/restore.md).
    """

    job_id: int
    seq: int
    step: str
    data: dict[str, Any]
    at: datetime


def last_step(steps: list[JournalStep], *names: str) -> JournalStep | None:
    """The newest of ``steps`` named one of ``names`` (any step when none is given)."""
    for entry in reversed(steps):
        if not names or entry.step in names:
            return entry
    return None


class JobConflict(Exception):
    """A repository refused to create a job: its conflict key is held by ``holder``.

    Internal signal between the catalog and the job runner, which turns it into
    ``OPERATION_IN_PROGRESS`` or ``DISCOVERY_IN_PROGRESS``.
    """

    def __init__(self, holder: Job) -> None:
        super().__init__(f"held by job {holder.id}")
        self.holder = holder


def final_state(warnings: list[str], failed: bool, cancelled: bool = False) -> JobState:
    if cancelled:
        return JobState.CANCELLED
    if failed:
        return JobState.FAILED
    return JobState.COMPLETED_WITH_WARNINGS if warnings else JobState.COMPLETED


def parse_since(text: str) -> timedelta:
    """``--since``: how far back a job list reaches (``24h``, ``7d``; see
    :func:`~vmvault.domain.inputs.parse_duration`)."""
    return parse_duration(text, "--since")
