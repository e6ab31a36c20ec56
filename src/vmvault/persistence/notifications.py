"""Notification targets and the outbox (tables ``notify_targets``, ``notify_outbox``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from vmvault.domain.notification import (
    Channel,
    Delivery,
    Event,
    Message,
    Outgoing,
    Target,
)
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc
from vmvault.persistence.upsert import insert_new


def _target(r: Any) -> Target:
    events = tuple(Event(e) for e in r.events)
    return Target(r.id, r.vault, Channel(r.channel), r.address, events, req(r.created_at))


class SqlNotifications:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- targets ---

    def add_target(
        self, vault: str, channel: Channel, address: str, events: Sequence[Event], now: datetime
    ) -> Target:
        values = {
            "vault": vault,
            "channel": channel.value,
            "address": address,
            "events": [e.value for e in events],
            "created_at": now,
        }
        new_id = self.conn.execute(insert(t.notify_targets).values(**values)).inserted_primary_key
        assert new_id is not None
        return Target(int(new_id[0]), vault, channel, address, tuple(events), now)

    def target(self, target_id: int) -> Target | None:
        q = select(t.notify_targets).where(t.notify_targets.c.id == target_id)
        r = self.conn.execute(q).first()
        return _target(r) if r else None

    def targets(self, vault: str | None = None) -> list[Target]:
        q = select(t.notify_targets).order_by(t.notify_targets.c.id)
        if vault is not None:
            q = q.where(t.notify_targets.c.vault == vault)
        return [_target(r) for r in self.conn.execute(q)]

    def remove_target(self, target_id: int) -> None:
        self.conn.execute(delete(t.notify_outbox).where(t.notify_outbox.c.target_id == target_id))
        self.conn.execute(delete(t.notify_targets).where(t.notify_targets.c.id == target_id))

    # --- outbox ---

    def enqueue(self, target: Target, message: Message, now: datetime) -> bool:
        """Add the message for ``target`` unless one with its key is there; True if added."""
        values = {
            "target_id": target.id,
            "key": message.key,
            "event": message.event.value,
            "vault": message.vault,
            "subject": message.subject,
            "body": message.text,
            "doc": message.doc,
            "state": Delivery.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        # one statement on both engines (persistence/upsert.py): two nodes checking the same
        # overdue episode at once write it once, neither failing on the (target, key) key
        return insert_new(self.conn, t.notify_outbox, ("target_id", "key"), **values) is not None

    def due(self, now: datetime, limit: int = 50) -> list[Outgoing]:
        """Pending messages whose next attempt is due, oldest first."""
        o = t.notify_outbox
        q = (
            select(o, t.notify_targets)
            .join(t.notify_targets, t.notify_targets.c.id == o.c.target_id)
            .where(o.c.state == Delivery.PENDING.value, o.c.next_attempt_at <= now)
            .order_by(o.c.next_attempt_at, o.c.id)
            .limit(limit)
        )
        return [self._outgoing(r) for r in self.conn.execute(q)]

    def outbox(self, limit: int = 100, target_id: int | None = None) -> list[Outgoing]:
        """The newest messages, newest first."""
        o = t.notify_outbox
        q = select(o, t.notify_targets).join(
            t.notify_targets, t.notify_targets.c.id == o.c.target_id
        )
        if target_id is not None:
            q = q.where(o.c.target_id == target_id)
        q = q.order_by(o.c.id.desc()).limit(limit)
        return [self._outgoing(r) for r in self.conn.execute(q)]

    def _outgoing(self, r: Any) -> Outgoing:
        m = r._mapping
        target = Target(
            m[t.notify_targets.c.id],
            m[t.notify_targets.c.vault],
            Channel(m[t.notify_targets.c.channel]),
            m[t.notify_targets.c.address],
            tuple(Event(e) for e in m[t.notify_targets.c.events]),
            req(m[t.notify_targets.c.created_at]),
        )
        o = t.notify_outbox.c
        message = Message(
            Event(m[o.event]), m[o.vault], m[o.key], m[o.subject], m[o.body], dict(m[o.doc])
        )
        return Outgoing(
            id=m[o.id],
            target=target,
            message=message,
            state=Delivery(m[o.state]),
            attempts=m[o.attempts],
            next_attempt_at=req(m[o.next_attempt_at]),
            last_error=m[o.last_error],
            created_at=req(m[o.created_at]),
            sent_at=utc(m[o.sent_at]),
        )

    def mark(
        self,
        outgoing_id: int,
        state: Delivery,
        attempts: int,
        next_attempt_at: datetime,
        error: str | None,
        sent_at: datetime | None,
    ) -> None:
        self.conn.execute(
            update(t.notify_outbox)
            .where(t.notify_outbox.c.id == outgoing_id)
            .values(
                state=state.value,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error,
                sent_at=sent_at,
            )
        )

    def prune(self, before: datetime) -> int:
        """Delete the sent and failed messages created before ``before``; how many."""
        o = t.notify_outbox.c
        done = o.state.in_([Delivery.SENT.value, Delivery.FAILED.value])
        return int(
            self.conn.execute(delete(t.notify_outbox).where(done, o.created_at < before)).rowcount
        )
