"""Jobs in the catalog: rows, conflict keys, claims, the log (text for people) and the journal
(typed steps recovery reads)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from vmvault.domain.job import ACTIVE_STATES, Job, JobConflict, JobState, JobType, JournalStep
from vmvault.domain.placement import DISKS_ONLY
from vmvault.persistence import tables as t
from vmvault.persistence.times import day_edges, per_day, req, utc

#: How many conflict keys one ``IN`` list of :meth:`SqlJobs.holders` holds (SQLite's limit of
#: bound parameters, 32766, is far above it).
_BATCH = 1000


class SqlJobs:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Job:
        return Job(
            id=r.id,
            type=JobType(r.type),
            vault=r.vault,
            vm_uuid=r.vm_uuid,
            vm_name=r.vm_name,
            state=JobState(r.state),
            created_at=req(r.created_at),
            started_at=utc(r.started_at),
            ended_at=utc(r.ended_at),
            bytes_done=r.bytes_done,
            bytes_total=r.bytes_total,
            warnings=list(r.warnings),
            error_code=r.error_code,
            message=r.message,
            remedy=r.remedy,
            pid=r.pid,
            request=r.request,
            origin=r.origin,
            parent_id=r.parent_id,
            node=r.node,
            lease_until=utc(r.lease_until),
        )

    def create(
        self,
        job_type: JobType,
        vault: str,
        vm_uuid: str | None,
        vm_name: str | None,
        state: JobState,
        now: datetime,
        pid: int | None,
        conflict_key: str | None,
        request: dict[str, Any] | None = None,
        origin: str | None = None,
        parent_id: int | None = None,
        node: str | None = None,
        lease_until: datetime | None = None,
    ) -> Job:
        values: dict[str, Any] = dict(
            type=job_type.value,
            vault=vault,
            vm_uuid=vm_uuid,
            vm_name=vm_name,
            state=state.value,
            created_at=now,
            started_at=now if state is JobState.IN_PROGRESS else None,
            bytes_done=0,
            bytes_total=0,
            warnings=[],
            pid=pid,
            conflict_key=conflict_key if state.active else None,
            request=request,
            origin=origin,
            parent_id=parent_id,
            node=node,
            lease_until=lease_until,
        )
        if conflict_key is not None and state.active:
            holder = self.holder(conflict_key)
            if holder is not None:
                raise JobConflict(holder)
        try:
            with self.conn.begin_nested():
                res = self.conn.execute(insert(t.jobs).values(**values))
        except IntegrityError:
            holder = self.holder(conflict_key) if conflict_key else None
            if holder is None:
                raise
            raise JobConflict(holder) from None
        assert res.inserted_primary_key is not None
        job = self.get(res.inserted_primary_key[0])
        assert job is not None
        return job

    def create_queued(self, rows: list[dict[str, Any]], now: datetime) -> list[Job] | None:
        """Insert many ``queued`` jobs at once, each with its first log line (``rows``: the
        columns ``type, vault, vm_uuid, vm_name, conflict_key, request, origin`` and ``log``),
        in a few statements whatever their number; the jobs, in the order of ``rows``.  None,
        with nothing inserted, when a conflict key is already held (the caller checked
        :meth:`holders` first: another process queued meanwhile) — then insert one by one.

        One ``executemany`` without ``RETURNING`` (SQLite's driver would insert row by row
        to keep the order of returned ids), then the new rows read back by their conflict
        keys, which active jobs hold alone."""
        if not rows:
            return []
        values = [
            {k: v for k, v in r.items() if k != "log"}
            | dict(
                state=JobState.QUEUED.value,
                created_at=now,
                bytes_done=0,
                bytes_total=0,
                warnings=[],
            )
            for r in rows
        ]
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(t.jobs), values)
        except IntegrityError:
            return None
        made = self.holders([r["conflict_key"] for r in rows])
        jobs = [made[r["conflict_key"]] for r in rows]
        logs = [dict(job_id=j.id, at=now, line=r["log"]) for j, r in zip(jobs, rows, strict=True)]
        self.conn.execute(insert(t.job_log), logs)
        return jobs

    def holders(self, conflict_keys: list[str]) -> dict[str, Job]:
        """The active job holding each of ``conflict_keys`` that one holds (batched queries)."""
        found: dict[str, Job] = {}
        for start in range(0, len(conflict_keys), _BATCH):
            batch = conflict_keys[start : start + _BATCH]
            q = select(t.jobs).where(t.jobs.c.conflict_key.in_(batch))
            for r in self.conn.execute(q):
                found[r.conflict_key] = self._row(r)
        return found

    def latest(self, job_type: JobType) -> dict[str, Job]:
        """Each VM's newest job of ``job_type``, by VM uuid (one query)."""
        c = t.jobs.c
        newest = select(func.max(c.id)).where(c.type == job_type.value, c.vm_uuid.is_not(None))
        q = select(t.jobs).where(c.id.in_(newest.group_by(c.vm_uuid)))
        return {r.vm_uuid: self._row(r) for r in self.conn.execute(q)}

    def last_ended(self, vault: str) -> datetime | None:
        """When the newest ended job of ``vault`` ended (None: none has): what tells a
        vault's stored bytes kept by any process that its chunks may have changed (index
        ``(vault, ended_at)``, migration 0021: one index lookup)."""
        c = t.jobs.c
        return utc(self.conn.execute(select(func.max(c.ended_at)).where(c.vault == vault)).scalar())

    def count_by_state(self, since: datetime, vault: str) -> dict[JobState, int]:
        """How many of ``vault``'s jobs created at ``since`` or later are in each state."""
        c = t.jobs.c
        q = select(c.state, func.count()).where(c.created_at >= since, c.vault == vault)
        return {JobState(s): int(n) for s, n in self.conn.execute(q.group_by(c.state))}

    def ended_by_day(
        self, job_type: JobType, start: datetime, days: int, vault: str
    ) -> list[tuple[int, int]]:
        """Per day from ``start`` (a UTC midnight), how many of ``vault``'s jobs of
        ``job_type`` created that day completed (with or without warnings) and failed: one
        row of sums (the dashboard's chart)."""
        asked = {"type": job_type.value, "vault": vault} | day_edges(start, days)
        row = [int(n) for n in self.conn.execute(_ended_by_day(days), asked).one()]
        return list(zip(row[:days], row[days:], strict=True))

    def get(self, job_id: int) -> Job | None:
        r = self.conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return self._row(r) if r else None

    def queued(self, limit: int = 100) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.state == JobState.QUEUED.value)
        return [self._row(r) for r in self.conn.execute(q.order_by(t.jobs.c.id).limit(limit))]

    def active(self) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.state.in_([s.value for s in ACTIVE_STATES]))
        return [self._row(r) for r in self.conn.execute(q.order_by(t.jobs.c.id))]

    def hold_starts(self) -> None:
        """PostgreSQL: ``LOCK TABLE jobs IN SHARE MODE`` (it waits for the transactions that
        are writing jobs, and makes every new write of a job wait for this one; reads go on).
        SQLite: nothing to do — the transaction's ``BEGIN IMMEDIATE`` already holds the one
        write lock (persistence/catalog.py)."""
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql("LOCK TABLE jobs IN SHARE MODE")

    def claim_next(
        self,
        pid: int,
        now: datetime,
        node: str | None = None,
        lease_until: datetime | None = None,
        host: str | None = None,
    ) -> Job | None:
        """The oldest queued job, moved to in-progress for ``node`` (process ``pid``).

        ``host``: the node's libvirt URI; then a job that touches its VM's disks (a backup, a
        restore but disks-only, a restore test, a backup set: domain/placement.py
        ``touches_disks``) is taken only if its host — the request's ``host`` (a set's host,
        a restore's ``--host``), else its VM's — is that host or one where no node runs (in
        ``nodes``): each node runs the disk jobs of its own host, and one node still serves
        hosts that have none; any other job is taken by any node.

        On PostgreSQL the row is taken with ``SELECT … FOR UPDATE SKIP LOCKED``: concurrent
        claimers on other nodes skip it instead of queueing behind its lock, and each job is
        claimed once.  SQLite has no row locks (SQLAlchemy renders no ``FOR UPDATE`` there):
        the transaction's ``BEGIN IMMEDIATE`` write lock serialises claimers instead.  The
        update still requires ``queued``, so a job cancelled meanwhile is never claimed."""
        pick = select(t.jobs.c.id).where(t.jobs.c.state == JobState.QUEUED.value)
        if host is not None:
            vm_host = (
                select(t.vms.c.host_uri).where(t.vms.c.uuid == t.jobs.c.vm_uuid).scalar_subquery()
            )
            job_host = func.coalesce(t.jobs.c.request["host"].as_string(), vm_host)
            mode = func.coalesce(t.jobs.c.request["mode"].as_string(), "")
            disk_types = [JobType.BACKUP.value, JobType.RESTORE.value, JobType.BACKUP_SET.value]
            pick = pick.where(
                or_(
                    t.jobs.c.type.not_in(disk_types),
                    and_(t.jobs.c.type == JobType.RESTORE.value, mode == DISKS_ONLY),
                    job_host.is_(None),
                    job_host == host,
                    job_host.not_in(select(t.nodes.c.host)),
                )
            )
        pick = pick.order_by(t.jobs.c.id).limit(1).with_for_update(skip_locked=True)
        job_id = self.conn.execute(pick).scalar()
        if job_id is None:
            return None
        res = self.conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.state == JobState.QUEUED.value)
            .values(
                state=JobState.IN_PROGRESS.value,
                pid=pid,
                started_at=now,
                node=node,
                lease_until=lease_until,
            )
        )
        return self.get(job_id) if res.rowcount == 1 else None

    def renew(self, node: str, job_ids: list[int], lease_until: datetime) -> int:
        """Extend the lease of the active jobs ``job_ids`` of ``node``; how many there were."""
        if not job_ids:
            return 0
        res = self.conn.execute(
            update(t.jobs)
            .where(
                t.jobs.c.node == node,
                t.jobs.c.id.in_(job_ids),
                t.jobs.c.state.in_([s.value for s in ACTIVE_STATES]),
            )
            .values(lease_until=lease_until)
        )
        return int(res.rowcount)

    def holder(self, conflict_key: str) -> Job | None:
        r = self.conn.execute(select(t.jobs).where(t.jobs.c.conflict_key == conflict_key)).first()
        return self._row(r) if r else None

    def find(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: datetime | None = None,
        vm_uuid: str | None = None,
        limit: int = 500,
        parent_id: int | None = None,
        offset: int = 0,
        vault: str | None = None,
    ) -> list[Job]:
        q = select(t.jobs).order_by(t.jobs.c.id.desc()).limit(limit).offset(offset)
        q = self._filtered(q, job_type, state, since, vm_uuid, parent_id, vault)
        return [self._row(r) for r in self.conn.execute(q)]

    def count(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: datetime | None = None,
        vm_uuid: str | None = None,
        parent_id: int | None = None,
        vault: str | None = None,
    ) -> int:
        q = select(func.count()).select_from(t.jobs)
        q = self._filtered(q, job_type, state, since, vm_uuid, parent_id, vault)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _filtered(
        q: Any,
        job_type: JobType | None,
        state: JobState | None,
        since: datetime | None,
        vm_uuid: str | None,
        parent_id: int | None,
        vault: str | None = None,
    ) -> Any:
        """``q`` narrowed to the jobs :meth:`find` and :meth:`count` select."""
        if job_type is not None:
            q = q.where(t.jobs.c.type == job_type.value)
        if state is not None:
            q = q.where(t.jobs.c.state == state.value)
        if since is not None:
            q = q.where(t.jobs.c.created_at >= since)
        if vm_uuid is not None:
            q = q.where(t.jobs.c.vm_uuid == vm_uuid)
        if parent_id is not None:
            q = q.where(t.jobs.c.parent_id == parent_id)
        if vault is not None:
            q = q.where(t.jobs.c.vault == vault)
        return q

    def update(self, job: Job, expect: JobState | None = None) -> bool:
        values: dict[str, Any] = dict(
            state=job.state.value,
            started_at=job.started_at,
            ended_at=job.ended_at,
            bytes_done=job.bytes_done,
            bytes_total=job.bytes_total,
            warnings=list(job.warnings),
            error_code=job.error_code,
            message=job.message,
            remedy=job.remedy,
        )
        if job.state.final:
            values["conflict_key"] = None
        q = update(t.jobs).where(t.jobs.c.id == job.id)
        if expect is not None:  # compare-and-set: the caller read ``expect`` and decided on it
            q = q.where(t.jobs.c.state == expect.value)
        elif job.state.final:  # a job's end is written once, never over another process's
            q = q.where(t.jobs.c.ended_at.is_(None))
        else:  # an ended job is never made active again by a stale copy
            q = q.where(t.jobs.c.state.in_(sorted(s.value for s in ACTIVE_STATES)))
        if job.state is JobState.IN_PROGRESS:
            # a cancel asked by another process meanwhile is never overwritten
            values["state"] = case(
                (t.jobs.c.state == JobState.CANCELLING.value, JobState.CANCELLING.value),
                else_=JobState.IN_PROGRESS.value,
            )
        return self.conn.execute(q.values(**values)).rowcount == 1

    def append_log(self, job_id: int, line: str, now: datetime) -> None:
        self.conn.execute(insert(t.job_log).values(job_id=job_id, at=now, line=line))

    def append_logs(self, job_id: int, lines: list[str], now: datetime) -> None:
        rows = [dict(job_id=job_id, at=now, line=line) for line in lines]
        self.conn.execute(insert(t.job_log), rows)

    def log(self, job_id: int) -> list[str]:
        q = select(t.job_log.c.at, t.job_log.c.line).where(t.job_log.c.job_id == job_id)
        rows = self.conn.execute(q.order_by(t.job_log.c.id))
        return [f"{req(r.at).strftime('%Y-%m-%d %H:%M:%S')} {r.line}" for r in rows]

    def record_step(self, job_id: int, step: str, data: dict[str, Any], now: datetime) -> None:
        self.conn.execute(insert(t.job_steps).values(job_id=job_id, step=step, data=data, at=now))

    def steps(self, job_id: int) -> list[JournalStep]:
        q = select(t.job_steps).where(t.job_steps.c.job_id == job_id).order_by(t.job_steps.c.id)
        return [
            JournalStep(job_id, r.id, r.step, dict(r.data or {}), req(r.at))
            for r in self.conn.execute(q)
        ]


@cache
def _ended_by_day(days: int) -> Select[Any]:
    """:meth:`SqlJobs.ended_by_day`'s statement (parameters ``type``, ``vault`` and
    :func:`~vmvault.persistence.times.day_edges`), built once per number of days."""
    c = t.jobs.c
    ok = (JobState.COMPLETED.value, JobState.COMPLETED_WITH_WARNINGS.value)
    good = case((c.state.in_(ok), 1), else_=0)
    bad = case((c.state == JobState.FAILED.value, 1), else_=0)
    sums = per_day(c.created_at, days, good) + per_day(c.created_at, days, bad)
    return select(*sums).where(
        c.type == bindparam("type"),
        c.created_at >= bindparam("day_0"),
        c.vault == bindparam("vault"),
    )
