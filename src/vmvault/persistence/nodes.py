"""Nodes (the processes sharing the catalog) and named leases, in the catalog (domain/node.py).

A lease is taken with one conditional ``UPDATE`` (held by us, or expired) and, when there is
no row yet, an ``INSERT`` whose primary key lets one of two racing inserters win: the same on
SQLite (one writer at a time) and PostgreSQL (the row lock makes a second updater re-check
the condition after the first commits, so it sees the new holder)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from vmvault.domain.node import Node
from vmvault.persistence import tables as t
from vmvault.persistence.times import req
from vmvault.persistence.upsert import insert_of


class SqlNodes:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Node:
        return Node(r.id, r.host, r.machine, r.pid, req(r.started_at), req(r.heartbeat_at))

    def beat(self, node: Node) -> None:
        """Record ``node`` (its first beat inserts it) with ``node.heartbeat_at``.

        One ``INSERT … ON CONFLICT (id) DO UPDATE`` (persistence/upsert.py): two beats of one
        node racing — a server's worker and scheduler are two services of one node, whose
        first beats may meet — never both insert (an update then an insert did: the second
        insert failed on the primary key)."""
        ins = insert_of(self.conn, t.nodes).values(
            id=node.id,
            host=node.host,
            machine=node.machine,
            pid=node.pid,
            started_at=node.started_at,
            heartbeat_at=node.heartbeat_at,
        )
        self.conn.execute(
            ins.on_conflict_do_update(
                index_elements=[t.nodes.c.id], set_={"heartbeat_at": ins.excluded.heartbeat_at}
            )
        )

    def forget(self, before: datetime) -> int:
        """Delete the nodes whose last heartbeat is older than ``before``; how many."""
        res = self.conn.execute(delete(t.nodes).where(t.nodes.c.heartbeat_at < before))
        return int(res.rowcount)

    def get(self, node_id: str) -> Node | None:
        r = self.conn.execute(select(t.nodes).where(t.nodes.c.id == node_id)).first()
        return self._row(r) if r else None

    def all(self) -> list[Node]:
        q = select(t.nodes).order_by(t.nodes.c.heartbeat_at.desc())
        return [self._row(r) for r in self.conn.execute(q)]


class SqlLeases:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take or renew lease ``name`` for ``holder`` until ``until``; False when another
        holder's lease has not expired at ``now``."""
        c = t.leases.c
        res = self.conn.execute(
            update(t.leases)
            .where(c.name == name, or_(c.holder == holder, c.expires_at < now))
            .values(
                holder=holder,
                expires_at=until,
                acquired_at=case((c.holder == holder, c.acquired_at), else_=now),
            )
        )
        if res.rowcount == 1:
            return True
        if self.conn.execute(select(c.name).where(c.name == name)).first() is not None:
            return False  # held by another, not expired
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(t.leases).values(
                        name=name, holder=holder, acquired_at=now, expires_at=until
                    )
                )
        except IntegrityError:  # another inserted it first: theirs
            return False
        return True

    def holder(self, name: str, now: datetime) -> str | None:
        """Who holds lease ``name`` at ``now`` (None: nobody, or it expired)."""
        c = t.leases.c
        q = select(c.holder).where(c.name == name, c.expires_at >= now)
        return self.conn.execute(q).scalar()

    def release(self, name: str, holder: str) -> None:
        c = t.leases.c
        self.conn.execute(delete(t.leases).where(c.name == name, c.holder == holder))
