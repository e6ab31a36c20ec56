"""Running work as jobs, and reading them back.

:meth:`JobRunner.run` is the single way an operation executes: it claims the job's conflict
key (one active job per VM, one discovery per vault — refused otherwise with the holder's id),
runs the work with a :class:`JobContext` that persists log lines, warnings and progress as they
happen, and ends the job in exactly one final state.  Expected failures
(:class:`~vmvault.domain.errors.VmvaultError`) become the job's code/message/remedy; anything
else becomes ``INTERNAL_ERROR`` with the traceback in the job log, never on the user's screen.

A job left active by a node that died is detected when its key is next claimed (its lease
has passed, or its process on this machine is gone: domain/node.py) and closed as failed with
``JOB_INTERRUPTED``; ``vmvault serve`` closes every such job at
start-up and cleans its VM up (services/recovery.py).  A job may also start *queued*
(services/queue.py): a worker claims it and :meth:`JobRunner.adopt` makes the service's
:meth:`JobRunner.run` execute that job instead of creating another.

Jobs enter named phases (:meth:`JobContext.phase`); each is a cancel point.  A cancel is a
state (``cancelling``) written by whoever asks; the catalog never lets a progress update of
the running job turn it back into ``in-progress``.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from vmvault.domain.errors import (
    Cancelled,
    DiscoveryInProgress,
    InternalError,
    InvalidInput,
    JobInterrupted,
    JobNotActive,
    JobNotFound,
    OperationInProgress,
    VmvaultError,
)
from vmvault.domain.inputs import MAX_DURATION, check_id, check_seconds
from vmvault.domain.job import (
    Job,
    JobConflict,
    JobState,
    JobType,
    JournalStep,
    conflict_key,
    final_state,
)
from vmvault.domain.node import LEASE, orphaned
from vmvault.services.nodes import NodeService
from vmvault.services.ports import UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")
log = logging.getLogger(__name__)
#: How long a job's end is tried again while the catalog is away: within a lease (the
#: heartbeat renews it meanwhile; domain/node.py), about two restarts of PostgreSQL.
END_RETRY = LEASE * 2 / 3
#: The longest ``jobs wait --timeout`` (30 days).
MAX_WAIT = 30 * 86400.0


class JobContext:
    """Handed to the work function: log lines and warnings are persisted at once; progress
    at most every :data:`PROGRESS_EVERY` seconds (it is called per chunk)."""

    PROGRESS_EVERY = 0.5
    CANCEL_POLL_EVERY = 1.0

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self._runner = runner
        self.job = job
        self._progress_at = 0.0
        self._cancel_at = 0.0
        self._cancelled = False

    def log(self, line: str) -> None:
        self.log_lines([line])

    def log_lines(self, lines: Sequence[str]) -> None:
        """Append ``lines`` to the job's log in one transaction (discovery's line per VM of a
        fleet: one statement, not a transaction per line)."""
        if not lines:
            return
        with self._runner.uow() as uow:
            uow.jobs.append_logs(self.job.id, list(lines), self._runner.clock())
            uow.commit()

    def warn(self, message: str) -> None:
        self.job.warnings.append(message)
        with self._runner.uow() as uow:
            uow.jobs.append_log(self.job.id, f"WARNING {message}", self._runner.clock())
            self._save(uow)
            uow.commit()

    def progress(self, done: int, total: int) -> None:
        self.job.bytes_done, self.job.bytes_total = done, total
        for observer in self._runner.observers:
            observer(self.job)
        now = time.monotonic()
        if now - self._progress_at < self.PROGRESS_EVERY and done < total:
            return
        self._progress_at = now
        try:
            with self._runner.uow() as uow:
                self._save(uow)
                uow.commit()
        except Exception as exc:  # the catalog away for a moment: the next report writes it
            log.warning("job %s: progress not written (%s)", self.job.id, _first_line(exc))

    def _save(self, uow: UnitOfWork) -> None:
        """Persist the job without undoing a cancel another process asked for meanwhile
        (its state ``cancelling`` is kept, and seen)."""
        current = uow.jobs.get(self.job.id)
        if current is not None and current.state is JobState.CANCELLING:
            self.job.state = JobState.CANCELLING
            self._cancelled = True
        if not uow.jobs.update(self.job):  # ended by another process (recovery): stop
            self._cancelled = True

    def record(self, step: str, /, **data: Any) -> None:
        """Append ``step`` with ``data`` (JSON values) to the job's journal.

        The journal is what recovery reads after a kill (``uow.jobs.steps``); the log is text
        for people.  Never call it while a guest is frozen or paused: it writes the catalog.
        """
        self._write_step(step, data, None)

    def _write_step(self, step: str, data: dict[str, Any], line: str | None) -> None:
        doc = json.loads(json.dumps(data))  # refuse what JSON cannot hold, here and not later
        with self._runner.uow() as uow:
            now = self._runner.clock()
            if line is not None:
                uow.jobs.append_log(self.job.id, line, now)
            uow.jobs.record_step(self.job.id, step, doc, now)
            uow.commit()

    def steps(self) -> list[JournalStep]:
        """This job's journal so far."""
        with self._runner.uow() as uow:
            return uow.jobs.steps(self.job.id)

    def phase(self, name: str, /, **data: Any) -> None:
        """Enter a named phase (``freezing``, ``reading``, ``writing``, ``committing`` …):
        logged and journaled (with ``data``) in one transaction, shown to the phase
        observers, and a cancel point — a cancel asked before this moment raises
        :class:`Cancelled` here, whatever the poll interval."""
        self._write_step(name, data, f"phase: {name}")
        for observer in self._runner.phase_observers:
            observer(self.job, name)
        self._cancel_at = 0.0
        if self.cancelled():
            raise Cancelled(operation=f"{self.job.type.value} job {self.job.id} (before {name})")

    def cancelled(self) -> bool:
        """True once someone asked to cancel this job (state ``cancelling`` in the catalog), or
        another process ended it (recovery closed it as interrupted: its lease had run out)."""
        now = time.monotonic()
        if self._cancelled or now - self._cancel_at < self.CANCEL_POLL_EVERY:
            return self._cancelled
        self._cancel_at = now
        try:
            with self._runner.uow() as uow:
                current = uow.jobs.get(self.job.id)
        except Exception as exc:  # the catalog away for a moment: asked again at the next poll
            log.warning("job %s: cancel not polled (%s)", self.job.id, _first_line(exc))
            return self._cancelled
        # cancelling, or ended by another process (recovery took it for a dead one's): stop
        self._cancelled = current is None or current.state is not JobState.IN_PROGRESS
        return self._cancelled


@dataclass
class JobOutcome(Generic[T]):
    job: Job
    result: T | None
    error: VmvaultError | None


def record_change(
    uow: UnitOfWork,
    job_type: JobType,
    vault: str,
    vm: tuple[str, str],
    lines: list[str],
    now: datetime,
) -> Job:
    """Record a change made outside any job (``vm update``) as a completed job of the VM
    ``(uuid, label)`` with ``lines`` as its log, in the caller's transaction: it shows in
    ``vm history`` and ``jobs list`` like the changes jobs make.  No conflict key: it never
    ran, so it neither waits for nor blocks the VM's running job."""
    job = uow.jobs.create(job_type, vault, vm[0], vm[1], JobState.COMPLETED, now, None, None)
    job.started_at = job.ended_at = now
    uow.jobs.update(job)
    for line in lines:
        uow.jobs.append_log(job.id, line, now)
    uow.jobs.append_log(job.id, JobState.COMPLETED.value, now)
    return job


#: Called with the transaction that ends a job, before it commits.
EndHook = Callable[[UnitOfWork, Job], object]


def close_job(
    uow: UnitOfWork,
    job: Job,
    state: JobState,
    error: VmvaultError | None,
    now: datetime,
    on_end: Sequence[EndHook],
) -> bool:
    """End ``job`` in ``uow`` (the caller commits): its final ``state``, its error, the log
    line, then the end hooks (the notification outbox) in the same transaction.  The one way
    a job ends: JobRunner's jobs and those the scheduler creates already failed.  A hook that
    fails does not keep the job from ending: its failure is a line of the job's log (each hook
    runs in a savepoint, so a failed statement of its own leaves the transaction usable).

    A job whose end another process wrote first (recovery closed it as interrupted while its
    lease had run out) keeps that end: this one is a log line, the hooks do not run again,
    and False is returned."""
    ending = f"{state.value}: {error.text}" if error is not None else state.value
    job.state = state
    job.ended_at = now
    if error is not None:
        job.error_code, job.message, job.remedy = error.code, error.text, error.remedy_text
    if not uow.jobs.update(job):
        current = uow.jobs.get(job.id)
        ended = current.state.value if current is not None else "gone"
        uow.jobs.append_log(job.id, f"not ended {ending}: the job had already ended {ended}", now)
        if current is not None:
            job.state, job.ended_at = current.state, current.ended_at
            job.error_code, job.message, job.remedy = (
                current.error_code, current.message, current.remedy
            )  # fmt: skip
        return False
    uow.jobs.append_log(job.id, ending, now)
    for hook in on_end:
        try:
            with uow.savepoint():  # a hook's failed statement leaves the job's end to commit
                hook(uow, job)
        except Exception as exc:
            uow.jobs.append_log(job.id, f"after the end: {type(exc).__name__}: {exc}", now)
    return True


class JobRunner:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        pid: int,
        pid_alive: Callable[[int], bool],
        node: NodeService | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.pid = pid
        self.pid_alive = pid_alive
        #: This process as a node: its jobs carry its id and a lease its heartbeat renews
        #: while they run.  None (tests of one process): no node, liveness by pid alone.
        self.node = node
        #: Called with the job on every progress report (the CLI draws its bar from them).
        self.observers: list[Callable[[Job], None]] = []
        #: Called with the job and the phase's name each time a job enters a phase.
        self.phase_observers: list[Callable[[Job, str], None]] = []
        #: Called with the transaction that ends a job, before it commits (the notification
        #: outbox is written there: services/notifications.py).
        self.on_end: list[EndHook] = []
        self._adopted: Job | None = None

    def adopt(self, job: Job | None) -> None:
        """The next :meth:`start` of the same type runs ``job`` — a queued job a worker has
        claimed — instead of creating a new one (``None`` forgets it).  The job already holds
        its VM's conflict key: it was taken when the job was queued."""
        self._adopted = job

    @property
    def node_id(self) -> str | None:
        return self.node.identity.id if self.node is not None else None

    def lease_until(self) -> datetime | None:
        return self.node.lease_until() if self.node is not None else None

    def orphaned(self, uow: UnitOfWork, job: Job, now: datetime) -> bool:
        """Whether active ``job`` has no live node behind it (domain/node.py); never a job
        this process runs now, whatever its lease says (the catalog was away, the heartbeat
        has not renewed it yet)."""
        if self.node is not None and job.node == self.node.identity.id and self.node.runs(job.id):
            return False
        node = uow.nodes.get(job.node) if job.node is not None else None
        machine = self.node.identity.machine if self.node is not None else None

        def alive(pid: int) -> bool:
            # our own pid in the job of a node older than us: that process is gone (the pid
            # was reused, as in a container restarted)
            me = self.node.identity if self.node is not None else None
            reused = (
                me is not None
                and pid == self.pid
                and job.node != me.id
                and (node is None or node.started_at < me.started_at)
            )
            return self.pid_alive(pid) and not reused

        return orphaned(job, now, machine or (node.machine if node else ""), node, alive)

    @property
    def adopted(self) -> Job | None:
        """The claimed job no :meth:`start` has taken yet."""
        return self._adopted

    def start(
        self,
        job_type: JobType,
        vault: str,
        vm_uuid: str | None,
        vm_name: str | None,
        parent_id: int | None = None,
    ) -> Job:
        """Create the job in-progress, or refuse with the conflicting job's id.  ``parent_id``:
        the set job it belongs to (such a job is never an adopted queued one)."""
        adopted = self.adopted
        if adopted is not None and adopted.type is job_type and parent_id is None:
            self._adopted = None
            with self.uow() as uow:
                current = uow.jobs.get(adopted.id)
                uow.jobs.append_log(
                    adopted.id, f"{job_type.value} started (pid {self.pid})", self.clock()
                )
                uow.commit()
            return current or adopted
        key = conflict_key(job_type, vault, vm_uuid)
        now = self.clock()
        with self.uow() as uow:
            if key is not None:
                holder = uow.jobs.holder(key)
                if holder is not None and self.orphaned(uow, holder, now):
                    interrupted = JobInterrupted(pid=holder.pid)
                    close_job(uow, holder, JobState.FAILED, interrupted, now, self.on_end)
            try:
                job = uow.jobs.create(
                    job_type, vault, vm_uuid, vm_name, JobState.IN_PROGRESS, now, self.pid, key,
                    parent_id=parent_id, node=self.node_id, lease_until=self.lease_until(),
                )  # fmt: skip
            except JobConflict as conflict:
                h = conflict.holder
                if job_type is JobType.DISCOVERY and vm_uuid is None:
                    raise DiscoveryInProgress(vault=vault, job=h.id) from None
                raise OperationInProgress(
                    vm=vm_name or vm_uuid, job=h.id, job_type=h.type.value
                ) from None
            uow.jobs.append_log(job.id, f"{job_type.value} started (pid {self.pid})", now)
            uow.commit()
        return job

    def finish(self, job: Job, error: VmvaultError | None, cancelled: bool = False) -> Job:
        state = final_state(job.warnings, failed=error is not None, cancelled=cancelled)
        with self.uow() as uow:
            close_job(uow, job, state, error, self.clock(), self.on_end)
            uow.commit()
        return job

    def run(
        self,
        job_type: JobType,
        vault: str,
        vm_uuid: str | None,
        vm_name: str | None,
        work: Callable[[JobContext], T],
    ) -> JobOutcome[T]:
        return self.execute(self.start(job_type, vault, vm_uuid, vm_name), work)

    def execute(self, job: Job, work: Callable[[JobContext], T]) -> JobOutcome[T]:
        """Run ``work`` as ``job`` (started by :meth:`start`) and end it in one final state;
        the node's heartbeat renews its lease meanwhile."""
        if self.node is None:
            return self._execute(job, work)
        with self.node.hold(job.id):
            return self._execute(job, work)

    def _execute(self, job: Job, work: Callable[[JobContext], T]) -> JobOutcome[T]:
        ctx = JobContext(self, job)
        try:
            result = work(ctx)
        except Cancelled as exc:
            return JobOutcome(self._end(job, None, exc.text, cancelled=True), None, exc)
        except VmvaultError as exc:
            return JobOutcome(self._end(job, exc), None, exc)
        except KeyboardInterrupt:
            self.finish(job, None, cancelled=True)
            raise
        except Exception as exc:
            err = InternalError(f"{type(exc).__name__}: {exc}")
            return JobOutcome(
                self._end(job, err, "internal error:\n" + traceback.format_exc()), None, err
            )
        return JobOutcome(self._end(job, None), result, None)

    def _end(
        self, job: Job, error: VmvaultError | None, line: str | None = None, cancelled: bool = False
    ) -> Job:
        """:meth:`finish`, after log ``line``: both :func:`written`."""
        if line is not None:
            written(lambda: JobContext(self, job).log(line), f"job {job.id}: a log line")
        return written(lambda: self.finish(job, error, cancelled), f"job {job.id}: its end")


class JobQueries:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def list_jobs(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: timedelta | None = None,
        vm_uuid: str | None = None,
        parent_id: int | None = None,
        *,
        limit: int = 500,
        offset: int = 0,
        vault: str | None = None,
    ) -> list[Job]:
        """Newest first: ``limit`` jobs after the first ``offset`` (a page of a listing);
        ``vault``: only that vault's jobs."""
        after = self._after(since)
        with self.uow() as uow:
            return uow.jobs.find(
                job_type=job_type,
                state=state,
                since=after,
                vm_uuid=vm_uuid,
                parent_id=parent_id,
                limit=limit,
                offset=offset,
                vault=vault,
            )

    def count_jobs(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: timedelta | None = None,
        vm_uuid: str | None = None,
        *,
        vault: str | None = None,
    ) -> int:
        """How many jobs :meth:`list_jobs` pages through with the same filters."""
        after = self._after(since)
        with self.uow() as uow:
            return uow.jobs.count(
                job_type=job_type, state=state, since=after, vm_uuid=vm_uuid, vault=vault
            )

    def _after(self, since: timedelta | None) -> datetime | None:
        if since is not None and not timedelta(0) <= since <= MAX_DURATION:
            raise InvalidInput(f"use 0 to {MAX_DURATION.days} days", what=f"since {since}")
        return self.clock() - since if since is not None else None

    def cancel(self, job_id: int) -> Job:
        """Ask a job to stop.  A running job sees ``cancelling`` at its next check (within a
        second or so), undoes what it started and ends ``cancelled``.  A set job passes the
        cancel on to its children (services/backup_sets.py)."""
        check_id(job_id, "job id")
        while True:
            with self.uow() as uow:
                job = uow.jobs.get(job_id)
                if job is None:
                    raise JobNotFound(job=job_id)
                if job.state.final:
                    raise JobNotActive(job=job_id, state=job.state.value)
                read = job.state
                if read is JobState.QUEUED:  # never started: nothing to undo
                    job.state, job.ended_at = JobState.CANCELLED, self.clock()
                    line = "cancelled before it started"
                elif read is JobState.IN_PROGRESS:
                    job.state, line = JobState.CANCELLING, "cancel requested"
                else:  # cancelling already
                    return job
                # written only over the state read: a worker may have claimed the job, or its
                # process ended it, since (PostgreSQL reads committed rows: a blind write
                # would turn an ended job back into an active one); then read it again
                if uow.jobs.update(job, expect=read):
                    uow.jobs.append_log(job.id, line, self.clock())
                    uow.commit()
                    return job

    def wait(
        self,
        job_id: int,
        on_update: Callable[[Job], None] | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
    ) -> Job:
        """Block until the job reaches a final state (or ``timeout`` seconds pass)."""
        check_id(job_id, "job id")
        if timeout is not None:
            check_seconds(timeout, "--timeout", MAX_WAIT)
        started = time.monotonic()
        while True:
            job, _ = self.show(job_id)
            if on_update is not None:
                on_update(job)
            if job.state.final:
                return job
            if timeout is not None and time.monotonic() - started > timeout:
                return job
            time.sleep(poll)

    def show(self, job_id: int) -> tuple[Job, list[str]]:
        check_id(job_id, "job id")
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
            if job is None:
                raise JobNotFound(job=job_id)
            return job, uow.jobs.log(job_id)


def written(write: Callable[[], T], what: str) -> T:
    """``write()`` — catalog writes that end a job — tried again while the catalog is away
    (a PostgreSQL restart cuts the work's transaction, then this one) for at most
    :data:`END_RETRY`: the heartbeat keeps the job's lease meanwhile, so no other node recovers
    it.  Still failing, it raises: the lease runs out and recovery closes the job
    (services/recovery.py), 30 to 60 s later."""
    deadline = time.monotonic() + END_RETRY.total_seconds()
    pause = 0.5
    while True:
        try:
            return write()
        except VmvaultError:
            raise  # an answer (the job is gone, not active...): asking again changes nothing
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s not written (%s); again in %.1f s", what, _first_line(exc), pause)
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def _first_line(exc: BaseException) -> str:
    """An exception's first line (a driver's error carries its SQL and a link after it)."""
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__
