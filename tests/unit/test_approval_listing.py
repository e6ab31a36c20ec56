"""``ApprovalService.list_requests`` pages in the catalog (SQL ``LIMIT``/``OFFSET`` over the
state *as shown*: a pending second-admin request past its expiry is listed as expired, not
pending) and gives the same pages as deriving every request's shown state first — the
domain's rule (``ApprovalRequest.shown_state``) is the reference. The real SQLite catalog,
more requests than a page, every state and vault filter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.approval import (
    ApprovalMode,
    ApprovalRequest,
    ApprovalSetting,
    Kind,
    Operation,
    RequestState,
    decided,
    new_request,
)
from vmvault.domain.errors import InvalidInput

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SECOND_ADMIN = ApprovalSetting(ApprovalMode.SECOND_ADMIN, expiry_hours=24)
DELAY = ApprovalSetting(ApprovalMode.DELAY, delay_hours=48)


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[Services]:
    s = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path)}), clock=lambda: NOW)
    try:
        yield s
    finally:
        s.close()


def _store(services: Services) -> list[ApprovalRequest]:
    """17 requests over two vaults, an hour apart, the oldest 30 h ago: second-admin ones
    lapsed (their 24 h expiry has passed: shown expired) and open, delay ones, and decided
    ones in each stored state."""
    stored = []
    ended = (RequestState.REJECTED, RequestState.EXECUTED, RequestState.FAILED,
             RequestState.APPROVED, RequestState.EXPIRED)  # fmt: skip
    with services._uow() as uow:
        for n in range(17):
            vault = "main" if n % 3 else "other"
            setting = DELAY if n % 4 == 0 else SECOND_ADMIN
            op = Operation(Kind.VAULT_DELETE, vault, {"vault": vault}, f"delete vault {n}")
            request = new_request(op, setting, "alice", NOW - timedelta(hours=30 - n))
            request = uow.approvals.add(request)
            if n % 5 == 4:
                request = decided(request, ended[n // 5], "bob", NOW)
                assert uow.approvals.transition(request, RequestState.PENDING)
            stored.append(request)
        uow.commit()
    return stored


@pytest.mark.parametrize("state", [None, *RequestState])
@pytest.mark.parametrize("vault", [None, "main", "other"])
def test_pages_match_the_shown_states(
    services: Services, state: RequestState | None, vault: str | None
) -> None:
    stored = _store(services)
    shown = [replace(r, state=r.shown_state(NOW)) for r in reversed(stored)]
    expected = [
        r
        for r in shown
        if (state is None or r.state is state) and (vault is None or r.operation.vault == vault)
    ]
    got: list[ApprovalRequest] = []
    for offset in range(0, len(stored) + 3, 3):
        page, total = services.approvals.list_requests(
            state.value if state else None, vault, limit=3, offset=offset
        )
        assert total == len(expected)
        assert len(page) == min(3, max(0, len(expected) - offset))
        got += page
    assert [(r.id, r.state) for r in got] == [(r.id, r.state) for r in expected]
    if state is None and vault is None:  # the filters did filter something
        states = {r.state for r in expected}
        assert {RequestState.PENDING, RequestState.EXPIRED} <= states
        lapsed = [r for r in stored if r.lapsed(NOW)]
        assert lapsed and all(r.state is RequestState.PENDING for r in lapsed)


def test_a_bad_state_or_page_is_refused(services: Services) -> None:
    with pytest.raises(InvalidInput):
        services.approvals.list_requests("lapsed")
    with pytest.raises(InvalidInput):
        services.approvals.list_requests(None, None, limit=0)
