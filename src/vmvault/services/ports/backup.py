"""What a backup needs from the hypervisor: the point in time and the disks' sources
(``vmvault.hypervisor.libvirt.backup_driver``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from vmvault.dataplane.source import ExtentSource
from vmvault.domain.recovery_point import (
    TakenPoint,
    UnfinishedBackup,
)
from vmvault.domain.vm import Disk


class Source(ExtentSource, Protocol):
    """A disk of the point in time: readable, and for an incremental, its dirty extents."""

    def dirty_extents(self) -> list[tuple[int, int]]: ...


class BackupDriver(Protocol):
    """What a backup needs from the hypervisor (``vmvault.hypervisor.libvirt.backup_driver``
    implements it over libvirt, ``vmvault.hypervisor.memory`` in memory)."""

    def checkpoints(self, uri: str, vm_uuid: str) -> list[str]:
        """The VM's checkpoints, oldest first."""

    def checkpoint_xml(self, uri: str, vm_uuid: str, name: str) -> str: ...
    def redefine_checkpoint(self, uri: str, vm_uuid: str, xml: str) -> None:
        """Bring back a checkpoint whose metadata was lost; MUST refuse
        (``CHECKPOINT_MISSING``) one whose bitmaps are gone."""

    def delete_checkpoint(self, uri: str, vm_uuid: str, name: str) -> None:
        """Delete one of vmvault's checkpoints (a missing one is a no-op)."""

    def checkpoint_problems(
        self, uri: str, vm_uuid: str, name: str, targets: list[str]
    ) -> list[str]:
        """Why checkpoint ``name`` cannot serve an incremental of ``targets`` ([] = it can)."""

    def disk_sizes(self, uri: str, vm_uuid: str) -> dict[str, int]:
        """Virtual size (capacity) of every disk of the domain, by target."""

    def domain_xml(self, uri: str, vm_uuid: str) -> str: ...
    def take_point(
        self,
        uri: str,
        vm_uuid: str,
        disks: list[Disk],
        *,
        checkpoint: str | None,
        incremental_from: str | None,
        quiesce: str,
        cancel: Callable[[], bool],
        in_window: Callable[[], None] | None = None,
        allow_pause: bool = True,
        after_begin: Callable[[], None] | None = None,
        before_pause: Callable[[str], None] | None = None,
        pull_tls: str | None = None,
        point: str | None = None,
    ) -> PointSession:
        """The point in time of a running or paused VM, taken when the session is entered.

        With ``quiesce="freeze"`` a freeze that fails or times out is never fatal by itself
        and never yields a ``guest-quiesce`` point: the guest is thawed (verified with
        ``guest-fsfreeze-status`` when the agent answers), then — if ``allow_pause`` —
        ``before_pause(reason)`` is called (the guest is released: it may journal) and the
        point is taken ``saved-state`` (pause → backup job → resume).  ``allow_pause=False``
        (a VM a cluster manager owns): the VM MUST NOT be paused — ``quiesce='pause'`` is
        refused with ``CLUSTER_MANAGED_NO_PAUSE`` before anything is begun, and a failed
        freeze MUST raise ``FREEZE_REQUIRED`` with nothing left behind.

        ``cancel()`` is asked before the guest is frozen or paused and again once it is
        released (it may read the catalog) — never inside the window.  ``in_window()`` MUST
        be called with the guest frozen (or paused) just before the backup job begins, and
        nowhere else; it does no I/O.  ``after_begin()`` MUST be called with the guest still
        frozen (or paused) right after the backup job has begun (its checkpoint created), and
        nowhere else; it does no catalog I/O but may block for a bounded time (a backup
        set waits there until every VM of the set holds its point in time).  When either hook
        or ``cancel()`` raises, the guest MUST be thawed / resumed first, and no job or
        checkpoint left behind (a job begun is aborted, its new checkpoint deleted).

        ``pull_tls`` (a VM of a host no node runs on, domain/pull.py): the disks MUST be read
        over the host's NBD export with TLS required, with the client certificates of that
        directory — never in plain text; a TLS failure is ``PULL_TLS_FAILED``; a disk that is
        not an image file is refused before the guest is touched (``PULL_DISK_NOT_FILE``).
        ``point`` (the recovery point's id, in the ``planned`` journal record) names the
        pull job's exports, so that :meth:`cleanup_stale` given that backup ends that job
        and no other (a pull job is never ended without its ``left``)."""

    def offline(self, disks: list[Disk], bitmap: str | None) -> PointSession: ...
    def cleanup_stale(
        self, uri: str, vm_uuid: str, left: UnfinishedBackup | None = None
    ) -> list[str]:
        """End what a dead vmvault process left on the VM (its backup job, a frozen or paused
        guest, work files, offline exports); what was done, one line each.  ``left`` is what
        the dead backup's journal says (None: unknown).  MUST do nothing while a live process
        is backing the VM up.  Leaves checkpoints alone."""


class PointSession(Protocol):
    """A point in time being read: a context manager yielding per-disk sources.

    After ``__enter__``, :attr:`taken` says how the point was taken (the typed hand-off: method
    and reason, frozen window, warnings, log notes, fsinfo).  :attr:`released` is False while
    the guest may still be frozen or paused because a thaw / resume failed (``__exit__``
    tries once more)."""

    @property
    def taken(self) -> TakenPoint: ...
    @property
    def released(self) -> bool: ...

    def __enter__(self) -> PointSession: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def source(self, target: str) -> Source: ...
