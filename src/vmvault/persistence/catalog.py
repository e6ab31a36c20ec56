"""The unit of work over SQLAlchemy Core: one catalog transaction, with one repository per
aggregate (vaults.py, vms.py, jobs.py, points.py, policies.py, access.py, nodes.py in this
package).

Times are stored as UTC; SQLite drops the zone, so every read re-attaches UTC (times.py).
On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, WAL
readers unaffected, a 30 s busy timeout): a read-then-write never deadlocks between two
vmvault processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, event

from vmvault.persistence.access import SqlAudit, SqlTokens
from vmvault.persistence.approvals import SqlApprovals
from vmvault.persistence.held import SqlHeld
from vmvault.persistence.jobs import SqlJobs
from vmvault.persistence.nodes import SqlLeases, SqlNodes
from vmvault.persistence.notifications import SqlNotifications
from vmvault.persistence.points import SqlCheckpoints, SqlPointCopies, SqlPoints
from vmvault.persistence.policies import SqlPolicies, SqlSchedules
from vmvault.persistence.stats import SqlStats
from vmvault.persistence.vaults import SqlHosts, SqlVaults
from vmvault.persistence.vms import SqlVms


def configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout and IMMEDIATE transactions for SQLite engines."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")  # first: the next pragma may wait for a lock
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlUnitOfWork:
    """One catalog transaction; rolls back unless :meth:`commit` was called."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> SqlUnitOfWork:
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()
        self.vaults = SqlVaults(self.conn)
        self.hosts = SqlHosts(self.conn)
        self.vms = SqlVms(self.conn)
        self.jobs = SqlJobs(self.conn)
        self.points = SqlPoints(self.conn)
        self.checkpoints = SqlCheckpoints(self.conn)
        self.copies = SqlPointCopies(self.conn)
        self.policies = SqlPolicies(self.conn)
        self.schedules = SqlSchedules(self.conn)
        self.tokens = SqlTokens(self.conn)
        self.audit = SqlAudit(self.conn)
        self.approvals = SqlApprovals(self.conn)
        self.notifications = SqlNotifications(self.conn)
        self.stats = SqlStats(self.conn)
        self.held = SqlHeld(self.conn)
        self.nodes = SqlNodes(self.conn)
        self.leases = SqlLeases(self.conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.tx.is_active:
                self.tx.rollback()
        finally:
            self.conn.close()

    def commit(self) -> None:
        self.tx.commit()
        self.tx = self.conn.begin()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield
