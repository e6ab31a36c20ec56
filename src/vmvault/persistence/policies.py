"""Policies and the scheduler's per-schedule progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from vmvault.domain.errors import PolicyExists
from vmvault.domain.policy import Policy
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc
from vmvault.persistence.upsert import insert_new


@dataclass
class PolicyRow:
    """A stored policy (satisfies ``services.ports.PolicyRecord``)."""

    name: str
    vault: str
    policy: Policy
    created_at: datetime
    updated_at: datetime


class SqlPolicies:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> PolicyRow:
        policy = Policy.from_json(r.definition)
        return PolicyRow(r.name, r.vault, policy, req(r.created_at), req(r.updated_at))

    def get(self, name: str) -> PolicyRow | None:
        r = self.conn.execute(select(t.policies).where(t.policies.c.name == name)).first()
        return self._row(r) if r else None

    def all(self, vault: str | None = None) -> list[PolicyRow]:
        q = select(t.policies).order_by(t.policies.c.name)
        if vault is not None:
            q = q.where(t.policies.c.vault == vault)
        return [self._row(r) for r in self.conn.execute(q)]

    def add(self, vault: str, policy: Policy, now: datetime) -> PolicyRow:
        """:class:`PolicyExists` when the name is taken (also by another writer's policy
        committed meanwhile: persistence/upsert.py)."""
        policy_id = insert_new(
            self.conn,
            t.policies,
            "name",
            name=policy.name,
            vault=vault,
            definition=policy.to_json(),
            created_at=now,
            updated_at=now,
        )
        if policy_id is None:
            raise PolicyExists(name=policy.name)
        return PolicyRow(policy.name, vault, policy, now, now)

    def update(self, policy: Policy, now: datetime) -> None:
        self.conn.execute(
            update(t.policies)
            .where(t.policies.c.name == policy.name)
            .values(definition=policy.to_json(), updated_at=now)
        )

    def delete(self, name: str) -> None:
        self.conn.execute(delete(t.policies).where(t.policies.c.name == name))


class SqlSchedules:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def last(self, name: str) -> datetime | None:
        q = select(t.schedule_state.c.last_slot).where(t.schedule_state.c.name == name)
        return utc(self.conn.execute(q).scalar())

    def advance(
        self, name: str, old: datetime | None, new: datetime, key: str | None, now: datetime
    ) -> bool:
        tbl = t.schedule_state
        if old is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(
                        insert(tbl).values(name=name, last_slot=new, last_key=key, updated_at=now)
                    )
            except IntegrityError:
                return False
            return True
        res = self.conn.execute(
            update(tbl)
            .where(tbl.c.name == name, tbl.c.last_slot == old)
            .values(last_slot=new, last_key=key, updated_at=now)
        )
        return res.rowcount == 1
