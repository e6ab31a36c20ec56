"""Requests held for approval (domain/approval.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, not_, or_, select, update

from vmvault.domain.approval import ApprovalMode, ApprovalRequest, Kind, Operation, RequestState
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc

_A = t.approval_requests


def _request(r: Any) -> ApprovalRequest:
    return ApprovalRequest(
        id=r.id,
        operation=Operation(Kind(r.kind), r.vault, dict(r.args), r.summary),
        mode=ApprovalMode(r.mode),
        requested_by=r.requested_by,
        requested_at=req(r.requested_at),
        expires_at=utc(r.expires_at),
        due_at=utc(r.due_at),
        state=RequestState(r.state),
        decided_by=r.decided_by,
        decided_at=utc(r.decided_at),
        executed_at=utc(r.executed_at),
        outcome=r.outcome,
        error_code=r.error_code,
    )


def _changing(request: ApprovalRequest) -> dict[str, Any]:
    """The columns a transition writes."""
    return {
        "state": request.state.value,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at,
        "executed_at": request.executed_at,
        "outcome": request.outcome,
        "error_code": request.error_code,
    }


def _shown_as(shown: RequestState, now: datetime) -> ColumnElement[bool]:
    """The rows whose state as shown at ``now`` is ``shown``: the SQL of
    ``ApprovalRequest.shown_state`` (a pending request lapsed at its expiry is expired)."""
    now = now.astimezone(UTC)  # as the catalog stores times
    lapsed = and_(
        _A.c.state == RequestState.PENDING.value,
        _A.c.expires_at.is_not(None),
        _A.c.expires_at <= now,
    )
    if shown is RequestState.EXPIRED:
        return or_(_A.c.state == shown.value, lapsed)
    if shown is RequestState.PENDING:
        return and_(_A.c.state == shown.value, not_(lapsed))
    return _A.c.state == shown.value


class SqlApprovals:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, request: ApprovalRequest) -> ApprovalRequest:
        op = request.operation
        res = self.conn.execute(
            insert(_A).values(
                kind=op.kind.value,
                vault=op.vault,
                args=op.args,
                summary=op.summary,
                mode=request.mode.value,
                requested_by=request.requested_by,
                requested_at=request.requested_at,
                expires_at=request.expires_at,
                due_at=request.due_at,
                **_changing(request),
            )
        )
        assert res.inserted_primary_key is not None
        found = self.get(int(res.inserted_primary_key[0]))
        assert found is not None
        return found

    def get(self, request_id: int) -> ApprovalRequest | None:
        r = self.conn.execute(select(_A).where(_A.c.id == request_id)).first()
        return _request(r) if r else None

    def find(
        self, state: RequestState | None = None, vault: str | None = None
    ) -> list[ApprovalRequest]:
        q = select(_A).order_by(_A.c.id.desc())
        if state is not None:
            q = q.where(_A.c.state == state.value)
        if vault is not None:
            q = q.where(_A.c.vault == vault)
        return [_request(r) for r in self.conn.execute(q)]

    def page(
        self,
        shown: RequestState | None,
        vault: str | None,
        now: datetime,
        limit: int,
        offset: int,
    ) -> tuple[list[ApprovalRequest], int]:
        where: list[ColumnElement[bool]] = []
        if shown is not None:
            where.append(_shown_as(shown, now))
        if vault is not None:
            where.append(_A.c.vault == vault)
        total = self.conn.execute(select(func.count()).select_from(_A).where(*where)).scalar()
        q = select(_A).where(*where).order_by(_A.c.id.desc()).limit(limit).offset(offset)
        return [_request(r) for r in self.conn.execute(q)], int(total or 0)

    def transition(self, request: ApprovalRequest, expected: RequestState) -> bool:
        q = (
            update(_A)
            .where(_A.c.id == request.id, _A.c.state == expected.value)
            .values(**_changing(request))
        )
        return self.conn.execute(q).rowcount == 1
