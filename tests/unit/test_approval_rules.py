"""The pure rules of multi-user authorization (domain/approval.py, docs/approvals.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmvault.domain.access import Principal, Role
from vmvault.domain.approval import (
    ApprovalMode,
    ApprovalRequest,
    ApprovalSetting,
    Grant,
    Kind,
    Operation,
    RequestState,
    changed_setting,
    check_approver,
    check_rejecter,
    counts_lowered,
    decided,
    new_request,
    requester_name,
    soft_delete_reduced,
)
from vmvault.domain.errors import (
    ApprovalExpired,
    ApprovalNotPending,
    ApprovalSelf,
    InvalidInput,
    RoleRequired,
)
from vmvault.domain.soft_delete import SoftDelete, SoftDeleteMode

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
OP = Operation(Kind.VAULT_DELETE, "main", {"vault": "main"}, "delete vault 'main'")
ALICE = Principal("alice", Role.ADMIN)
BOB = Principal("bob", Role.ADMIN)
OFF, DELAY, SECOND = ApprovalMode.OFF, ApprovalMode.DELAY, ApprovalMode.SECOND_ADMIN


def _pending(setting: ApprovalSetting = ApprovalSetting(SECOND)) -> ApprovalRequest:
    return new_request(OP, setting, "alice", NOW)


@pytest.mark.parametrize(
    ("current", "new", "weaker"),
    [
        (ApprovalSetting(SECOND), ApprovalSetting(DELAY), True),
        (ApprovalSetting(SECOND), ApprovalSetting(OFF), True),
        (ApprovalSetting(DELAY), ApprovalSetting(OFF), True),
        (ApprovalSetting(DELAY, 24), ApprovalSetting(DELAY, 23), True),
        (ApprovalSetting(DELAY, 24), ApprovalSetting(DELAY, 48), False),
        (ApprovalSetting(OFF), ApprovalSetting(SECOND), False),
        (ApprovalSetting(DELAY), ApprovalSetting(SECOND, 1), False),
        # the expiry is no protection: a shorter one only lets requests lapse sooner
        (ApprovalSetting(SECOND, 24, 72), ApprovalSetting(SECOND, 24, 1), False),
        (ApprovalSetting(SECOND, 24), ApprovalSetting(SECOND, 1), False),
    ],
)
def test_what_weakens_the_setting(
    current: ApprovalSetting, new: ApprovalSetting, weaker: bool
) -> None:
    assert current.weakened_by(new) is weaker


@pytest.mark.parametrize(
    ("current", "new", "reduced"),
    [
        (SoftDelete(SoftDeleteMode.ON, 14), SoftDelete(SoftDeleteMode.OFF, 14), True),
        (SoftDelete(SoftDeleteMode.ON, 14), SoftDelete(SoftDeleteMode.ON, 13), True),
        (SoftDelete(SoftDeleteMode.ALWAYS, 14), SoftDelete(SoftDeleteMode.ALWAYS, 1), True),
        (SoftDelete(SoftDeleteMode.ON, 14), SoftDelete(SoftDeleteMode.ALWAYS, 14), False),
        (SoftDelete(SoftDeleteMode.OFF, 14), SoftDelete(SoftDeleteMode.ON, 14), False),
        (SoftDelete(SoftDeleteMode.OFF, 14), SoftDelete(SoftDeleteMode.OFF, 3), True),
        (SoftDelete(SoftDeleteMode.ON, 14), SoftDelete(SoftDeleteMode.ON, 30), False),
    ],
)
def test_what_reduces_soft_delete(current: SoftDelete, new: SoftDelete, reduced: bool) -> None:
    assert soft_delete_reduced(current, new) is reduced


def test_a_lower_retention_count_is_a_reduction_a_higher_or_absent_one_is_not() -> None:
    now = {"daily": 7, "weekly": 4, "monthly": 0, "yearly": 0}
    assert counts_lowered(now, {"daily": 6})
    assert counts_lowered(now, {"daily": 9, "weekly": 3})
    assert not counts_lowered(now, {"daily": 7, "monthly": 12})
    assert not counts_lowered(now, {"daily": None, "weekly": None})
    assert not counts_lowered(now, {})


def test_a_request_lapses_in_second_admin_mode_and_is_due_in_delay_mode() -> None:
    second = _pending(ApprovalSetting(SECOND, expiry_hours=2))
    assert (second.expires_at, second.due_at) == (NOW + timedelta(hours=2), None)
    assert not second.lapsed(NOW + timedelta(hours=1, minutes=59))
    assert second.lapsed(NOW + timedelta(hours=2))
    assert second.shown_state(NOW + timedelta(hours=2)) is RequestState.EXPIRED
    assert not second.due(NOW + timedelta(days=30))

    delay = _pending(ApprovalSetting(DELAY, delay_hours=6))
    assert (delay.expires_at, delay.due_at) == (None, NOW + timedelta(hours=6))
    assert not delay.due(NOW + timedelta(hours=5, minutes=59))
    assert delay.due(NOW + timedelta(hours=6))
    assert not delay.lapsed(NOW + timedelta(days=300))  # a delay request never lapses
    done = decided(delay, RequestState.REJECTED, "bob", NOW)
    assert not done.due(NOW + timedelta(days=1))


def test_only_another_admin_approves_a_pending_request() -> None:
    request = _pending()
    with pytest.raises(ApprovalSelf):
        check_approver(request, ALICE, NOW)
    with pytest.raises(RoleRequired):
        check_approver(request, Principal("carol", Role.CONTRIBUTOR), NOW)
    check_approver(request, BOB, NOW)
    check_approver(request, Principal("local:root", Role.ADMIN), NOW)
    with pytest.raises(ApprovalExpired):
        check_approver(request, BOB, NOW + timedelta(hours=72))
    for state in (RequestState.APPROVED, RequestState.EXECUTED, RequestState.REJECTED):
        with pytest.raises(ApprovalNotPending):
            check_approver(decided(request, state, "bob", NOW), BOB, NOW)


def test_any_admin_rejects_the_requester_too() -> None:
    request = _pending()
    check_rejecter(request, ALICE, NOW)
    check_rejecter(request, BOB, NOW)
    with pytest.raises(RoleRequired):
        check_rejecter(request, Principal("olga", Role.OPERATOR), NOW)
    with pytest.raises(ApprovalNotPending):
        check_rejecter(decided(request, RequestState.REJECTED, "bob", NOW), ALICE, NOW)


def test_the_setting_refuses_bad_values_and_keeps_what_is_not_given() -> None:
    current = ApprovalSetting(DELAY, 24, 72)
    assert changed_setting(current, "second-admin", None, None) == ApprovalSetting(SECOND, 24, 72)
    assert changed_setting(current, None, 48, 5) == ApprovalSetting(DELAY, 48, 5)
    assert changed_setting(current, " Second-Admin ", None, None).mode is SECOND
    for bad in [("sometimes", None, None), (None, 0, None), (None, None, 721), (None, None, None)]:
        with pytest.raises(InvalidInput):
            changed_setting(current, *bad)


def test_who_asked() -> None:
    assert requester_name(ALICE) == "alice"
    assert requester_name(Grant(3, "alice")) == "alice"
    assert requester_name(None) == "unnamed"
