"""API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from vmvault.domain.access import Role
from vmvault.domain.audit import AuditEntry
from vmvault.domain.errors import TokenExists
from vmvault.domain.tokens import ApiToken
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc
from vmvault.persistence.upsert import insert_new


class SqlTokens:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _token(r: Any) -> ApiToken:
        return ApiToken(
            name=r.name,
            role=Role(r.role),
            public_id=r.public_id,
            created_at=req(r.created_at),
            created_by=r.created_by,
            last_used_at=utc(r.last_used_at),
            revoked_at=utc(r.revoked_at),
        )

    def get(self, name: str) -> ApiToken | None:
        r = self.conn.execute(select(t.api_tokens).where(t.api_tokens.c.name == name)).first()
        return self._token(r) if r else None

    def by_public_id(self, public_id: str) -> tuple[ApiToken, str] | None:
        q = select(t.api_tokens).where(t.api_tokens.c.public_id == public_id)
        r = self.conn.execute(q).first()
        return (self._token(r), r.secret_sha256) if r else None

    def all(self) -> list[ApiToken]:
        q = select(t.api_tokens).order_by(t.api_tokens.c.name)
        return [self._token(r) for r in self.conn.execute(q)]

    def add(self, token: ApiToken, secret_sha256: str) -> None:
        """:class:`TokenExists` when the name is taken (also by another writer's token
        committed meanwhile: persistence/upsert.py)."""
        token_id = insert_new(
            self.conn,
            t.api_tokens,
            "name",
            name=token.name,
            role=token.role.value,
            public_id=token.public_id,
            secret_sha256=secret_sha256,
            created_at=token.created_at,
            created_by=token.created_by,
        )
        if token_id is None:
            raise TokenExists(name=token.name)

    def set_last_used(self, name: str, when: datetime) -> None:
        q = update(t.api_tokens).where(t.api_tokens.c.name == name).values(last_used_at=when)
        self.conn.execute(q)

    def set_revoked(self, name: str, when: datetime) -> None:
        q = update(t.api_tokens).where(t.api_tokens.c.name == name).values(revoked_at=when)
        self.conn.execute(q)


class SqlAudit:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, entry: AuditEntry) -> None:
        self.conn.execute(
            insert(t.audit_log).values(
                at=entry.at,
                actor=entry.actor,
                role=entry.role,
                action=entry.action,
                target=entry.target,
                status=entry.status,
                remote=entry.remote,
            )
        )

    def find(
        self, actor: str | None, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[AuditEntry], int]:
        a = t.audit_log
        where = []
        if actor is not None:
            where.append(a.c.actor == actor)
        if since is not None:
            where.append(a.c.at >= since)
        total = self.conn.execute(select(func.count()).select_from(a).where(*where)).scalar()
        q = select(a).where(*where).order_by(a.c.id.desc()).limit(limit).offset(offset)
        rows = [
            AuditEntry(
                at=req(r.at),
                actor=r.actor,
                role=r.role,
                action=r.action,
                target=r.target,
                status=r.status,
                remote=r.remote,
                id=r.id,
            )
            for r in self.conn.execute(q)
        ]
        return rows, int(total or 0)
