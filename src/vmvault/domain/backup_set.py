"""Backup sets: several VMs backed up as one all-or-nothing point in time (docs/sets.md).

A set job (type ``backup-set``) runs one child ``backup`` job per VM.  Its phases:

1. every VM is frozen (or paused) and its backup job begun with its checkpoint; each waits,
   still held, until every VM of the set holds its point in time (or one failed);
2. all are released at once — the set's *instant* is when the last VM reached its point;
3. each VM's data is read (a bounded number at a time); no manifest is written before every
   VM's indexes are, and no catalog row before every VM's manifest is: then every VM's row
   and the set's ``set-published`` step are committed in one catalog transaction.

What is pure about that lives here: the set's journal steps and what recovery reads from
them (:func:`unfinished_set`), the set's window (:func:`set_window_ms`), the ids, and the
:class:`SetMember` protocol through which one VM's backup takes part in a set.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vmvault.domain.job import JournalStep
from vmvault.domain.recovery_point import RecoveryPoint, TakenPoint


class SetStep:
    """The set job's journal steps (docs/sets.md, "Journal")."""

    #: ``{set_id, vms: [{job, vm, name}]}`` — the child jobs exist from here on
    PLANNED = "set-planned"
    #: ``{points: [...]}`` — every child's indexes are written; manifests and rows follow
    PUBLISHING = "set-publishing"
    #: ``{points, window_ms, instant}`` — committed in the same catalog transaction as every
    #: point's row: the set exists
    PUBLISHED = "set-published"
    #: ``{points}`` — removing the points a failed set had published already
    ROLLING_BACK = "set-rolling-back"
    #: ``{removed}`` — nothing of the set is left (not written while anything is: a later
    #: recovery, or the next set, retries a rollback that has no ``set-rolled-back``)
    ROLLED_BACK = "set-rolled-back"


def new_set_id(now: datetime) -> str:
    """Sortable and unique: ``set-20261202T051500Z-3f9a1c``."""
    return "set-" + now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Hold:
    """When one VM of the set was held: ``start`` (monotonic seconds, the guest just frozen or
    paused) and for how long (``window_ms``: freeze returned → thaw returned)."""

    vm: str
    start: float
    window_ms: int

    @property
    def end(self) -> float:
        return self.start + self.window_ms / 1000.0


def set_window_ms(holds: Sequence[Hold]) -> int:
    """The set's window: first freeze (or pause) to last thaw (or resume), in ms."""
    if not holds:
        return 0
    return max(0, round((max(h.end for h in holds) - min(h.start for h in holds)) * 1000))


class SetMember(Protocol):
    """How one VM's backup (:class:`~vmvault.services.backups.BackupService`) takes part in
    a set.  Each call is a place where the set may have failed: it then raises (a
    :class:`~vmvault.domain.errors.VmvaultError`), and the backup undoes itself as any failed
    backup does."""

    @property
    def set_id(self) -> str: ...

    def ready(self) -> None:
        """Planned, about to freeze: wait (bounded) until every VM is (so the freezes start
        together and the first frozen guest waits least)."""

    def in_window(self) -> None:
        """The guest was just frozen or paused (in memory only)."""

    def after_begin(self) -> None:
        """Inside the window, the backup job begun: wait (bounded) until every VM holds its
        point in time.  No catalog I/O."""

    def released(self, taken: TakenPoint) -> None:
        """The guest is released; ``taken`` says for how long it was held."""

    def read_slot(self) -> AbstractContextManager[None]:
        """Held while the VM's disks are read (bounds how many VMs read at once)."""

    def before_publish(self, point_id: str) -> datetime:
        """The VM's indexes are written: wait until every VM's are, then return the set's
        instant (every point of the set carries it as its ``created_at``)."""

    def manifest_extra(self) -> dict[str, Any]:
        """What the manifest says about the set (id, instant, window, its VMs)."""

    def publish(self, point_id: str, rows: Callable[[Any], None]) -> None:
        """The VM's manifest is written; ``rows`` writes its catalog rows into a catalog
        transaction.  Wait until every VM's manifest is written: the last one commits every
        VM's rows and the set's ``set-published`` step in ONE transaction.  Raises (the
        set failed) when any VM's manifest was not written: then no row is committed."""


@dataclass(frozen=True)
class SetChild:
    job_id: int
    vm_uuid: str
    vm_name: str

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "vm": self.vm_uuid, "name": self.vm_name}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SetChild:
        return cls(int(doc["job"]), str(doc["vm"]), str(doc["name"]))


@dataclass(frozen=True)
class UnfinishedSet:
    """What a set job that did not end says in its journal."""

    job_id: int
    set_id: str
    children: tuple[SetChild, ...]
    published: bool
    rolled_back: bool
    points: tuple[str, ...] = ()  # points named by set-publishing / set-rolling-back

    @property
    def needs_rollback(self) -> bool:
        """Not every point was published: whatever of the set exists must go."""
        return not self.published and not self.rolled_back


def unfinished_set(job_id: int, steps: Sequence[JournalStep]) -> UnfinishedSet | None:
    """Read a set job's journal (None: it planned nothing, so it began nothing)."""
    by_name = {s.step: s for s in steps}
    planned = by_name.get(SetStep.PLANNED)
    if planned is None:
        return None
    points: list[str] = []
    for name in (SetStep.PUBLISHING, SetStep.ROLLING_BACK):
        if name in by_name:
            points += [str(p) for p in by_name[name].data.get("points", [])]
    rolling = SetStep.ROLLING_BACK in by_name
    return UnfinishedSet(
        job_id=job_id,
        set_id=str(planned.data["set_id"]),
        children=tuple(SetChild.from_json(c) for c in planned.data.get("vms", [])),
        published=SetStep.PUBLISHED in by_name and not rolling,
        rolled_back=SetStep.ROLLED_BACK in by_name,
        points=tuple(dict.fromkeys(points)),
    )


@dataclass
class SetResult:
    """A set that completed: its points (one per VM, sharing ``set_id`` and ``instant``)."""

    set_id: str
    instant: datetime
    window_ms: int
    points: list[RecoveryPoint] = field(default_factory=list)
