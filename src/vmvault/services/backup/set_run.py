"""One running backup set: what the threads of its child backups share (docs/sets.md).

:class:`SetRun` holds the set's gate, its instant, each VM's hold and point, the catalog rows
the children hand over and the one transaction that commits them with ``set-published``;
:class:`Member` is one VM's part in it (the :class:`~vmvault.domain.backup_set.SetMember`
protocol its backup calls); :func:`sigint_cancels` turns a Ctrl-C in the main thread into a
cancel of the set.  :class:`~vmvault.services.backup_sets.BackupSetService` runs them.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vmvault.domain.backup_set import Hold, SetStep, set_window_ms
from vmvault.domain.recovery_point import TakenPoint
from vmvault.domain.vm import VmItem
from vmvault.services.backup.set_gate import HELD, PUBLISHED, READY, WRITTEN, SetGate
from vmvault.services.jobs import JobContext
from vmvault.services.ports import UnitOfWork

if TYPE_CHECKING:
    from vmvault.services.backup_sets import BackupSetService


class SetRun:
    """What the threads of one running set share."""

    def __init__(
        self, ctx: BackupSetService, job: JobContext, set_id: str, vms: Sequence[VmItem]
    ) -> None:
        self.service = ctx
        self.job = job
        self.set_id = set_id
        self.vms = list(vms)
        self.gate = SetGate([vm.label for vm in vms])
        self.slots = threading.BoundedSemaphore(max(1, ctx.parallel))
        self.lock = threading.Lock()
        self.holds: list[Hold] = []
        self.points: dict[str, str] = {}  # VM label → point id
        self.rows: dict[str, Callable[[UnitOfWork], None]] = {}  # VM label → its catalog rows
        self.instant: datetime | None = None
        #: every row and ``set-published`` committed (the ``published`` stage's action)
        self.published: list[str] | None = None
        #: Ctrl-C (SIGINT) arrived while the set ran in the main thread
        self.interrupted = threading.Event()

    def all_held(self) -> None:
        """Every VM holds its point in time: the set's instant (guests held: no I/O)."""
        self.instant = self.service.clock()

    def all_written(self) -> None:
        """Every VM's indexes are written: journal what is about to be published."""
        with self.lock:
            points = [self.points[vm.label] for vm in self.vms]
        self.job.record(SetStep.PUBLISHING, points=points)

    def all_published(self) -> None:
        """Every VM's manifest is written: commit every VM's catalog rows and the set job's
        ``set-published`` in ONE transaction — the set appears whole, or not at all."""
        with self.lock:
            points = [self.points[vm.label] for vm in self.vms]
            rows = [self.rows[vm.label] for vm in self.vms]
        assert self.instant is not None
        data = {"points": points, "window_ms": self.window_ms, "instant": self.instant.isoformat()}
        now = self.service.clock()
        with self.service.uow() as uow:
            for write in rows:
                write(uow)
            uow.jobs.record_step(self.job.job.id, SetStep.PUBLISHED, data, now)
            uow.commit()
        self.published = points

    @property
    def window_ms(self) -> int:
        with self.lock:
            return set_window_ms(self.holds)


class Member:
    """One VM's part in the set (:class:`~vmvault.domain.backup_set.SetMember`)."""

    def __init__(self, run: SetRun, vm: VmItem) -> None:
        self.run = run
        self.vm = vm.label
        self.start = 0.0

    @property
    def set_id(self) -> str:
        return self.run.set_id

    def ready(self) -> None:
        self.run.gate.wait(READY, self.vm, self.run.service.ready_timeout)

    def in_window(self) -> None:
        self.start = time.monotonic()

    def after_begin(self) -> None:
        self.run.gate.wait(HELD, self.vm, self.run.service.hold_timeout, self.run.all_held)

    def released(self, taken: TakenPoint) -> None:
        with self.run.lock:
            self.run.holds.append(Hold(self.vm, self.start, taken.window_ms))

    @contextmanager
    def read_slot(self) -> Iterator[None]:
        with self.run.slots:
            yield

    def before_publish(self, point_id: str) -> datetime:
        with self.run.lock:
            self.run.points[self.vm] = point_id
        self.run.gate.wait(WRITTEN, self.vm, None, self.run.all_written)
        assert self.run.instant is not None  # set by the ``held`` stage
        return self.run.instant

    def publish(self, point_id: str, rows: Callable[[UnitOfWork], None]) -> None:
        with self.run.lock:
            self.run.rows[self.vm] = rows
        self.run.gate.wait(PUBLISHED, self.vm, None, self.run.all_published)

    def manifest_extra(self) -> dict[str, Any]:
        run = self.run
        return {
            "set": {
                "id": run.set_id,
                "instant": run.instant.isoformat() if run.instant else None,
                "window_ms": run.window_ms,
                "vms": [vm.uuid for vm in run.vms],
            }
        }


@contextmanager
def sigint_cancels(run: SetRun) -> Iterator[None]:
    """In the main thread (``vmvault backup --set`` in the foreground), Ctrl-C only sets
    :attr:`SetRun.interrupted`: the set job cancels the set as for ``jobs cancel``, waits
    for every child to undo itself and rolls back — a second Ctrl-C changes nothing — then
    raises ``KeyboardInterrupt`` (unless the set was already committed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        run.interrupted.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
