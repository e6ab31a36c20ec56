"""Requests held for approval (domain/approval.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

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

    def transition(self, request: ApprovalRequest, expected: RequestState) -> bool:
        q = (
            update(_A)
            .where(_A.c.id == request.id, _A.c.state == expected.value)
            .values(**_changing(request))
        )
        return self.conn.execute(q).rowcount == 1
