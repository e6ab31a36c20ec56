"""Aggregates for ``/metrics``: counted in SQL, so a scrape never loads every job."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from vmvault.domain.job import JobState, JobType
from vmvault.domain.metrics import LastBackup
from vmvault.persistence import tables as t
from vmvault.persistence.times import utc

_GOOD = (JobState.COMPLETED.value, JobState.COMPLETED_WITH_WARNINGS.value)
_ENDED = (*_GOOD, JobState.FAILED.value, JobState.CANCELLED.value)


class SqlStats:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def job_counts(self) -> dict[tuple[str, str], int]:
        j = t.jobs.c
        q = select(j.type, j.state, func.count()).group_by(j.type, j.state)
        return {(r[0], r[1]): int(r[2]) for r in self.conn.execute(q)}

    def last_backups(self) -> list[LastBackup]:
        """One row per VM that has an ended backup job: its newest one, and the end of its
        newest good one (completed, with or without warnings)."""
        j = t.jobs.c
        backup = (j.type == JobType.BACKUP.value) & j.vm_uuid.is_not(None)
        newest = select(func.max(j.id)).where(backup, j.state.in_(_ENDED)).group_by(j.vm_uuid)
        good = (
            select(j.vm_uuid, func.max(j.ended_at).label("at"))
            .where(backup, j.state.in_(_GOOD))
            .group_by(j.vm_uuid)
            .subquery()
        )
        q = (
            select(j.vm_uuid, j.vm_name, j.state, j.started_at, j.ended_at, j.bytes_done, good.c.at)
            .outerjoin(good, good.c.vm_uuid == j.vm_uuid)
            .where(j.id.in_(newest))
            .order_by(j.vm_name, j.vm_uuid)
        )
        return [
            LastBackup(r[0], r[1] or r[0], r[2], utc(r[3]), utc(r[4]), int(r[5] or 0), utc(r[6]))
            for r in self.conn.execute(q)
        ]
