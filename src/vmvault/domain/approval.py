"""Multi-user authorization (docs/approvals.md): operations that reduce protection are held
as a *request* until a second admin approves it, or — on a single-user host — until a delay
has passed.

A vault's :class:`ApprovalSetting` says how its protection-reducing operations run:

===============  =================================================================================
``off``          at once (the default: vmvault before approvals)
``second-admin`` held until an admin other than the requester approves it; a request nobody
                 decides lapses (``expired``) after ``expiry_hours``
``delay``        held for ``delay_hours``, then run by ``vmvault serve`` (or ``approvals run-due``)
                 unless an admin rejects it first; another admin may approve it earlier
===============  =================================================================================

The operations (:class:`Kind`): turning soft delete off or shortening its days, lowering a
policy's retention (any count of it or of its copies), ``protection stop --delete-data``,
``vault delete``, purging a soft-deleted point before its period ends, and weakening this
setting itself (a mode lower in ``off < delay < second-admin``, or a shorter delay).

A request's life::

    pending ──approve (another admin) / delay passed──▶ approved ──▶ executed | failed
       │
       ├──reject (any admin, the requester too: a withdrawal)──▶ rejected
       └──second-admin, nobody decided within expiry_hours──▶ expired

Who asks is a :class:`~vmvault.domain.access.Principal` (an API token's name and role, or the
local CLI user ``local:<user>`` as an admin).  The requester never approves its own request
(``APPROVAL_SELF``).  An approved request runs the very service call that was held, with its
arguments, carrying a :class:`Grant` instead of a principal: the guard lets a grant through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import (
    ApprovalExpired,
    ApprovalNotPending,
    ApprovalSelf,
    InvalidInput,
    RoleRequired,
)
from vmvault.domain.retention import LEVELS
from vmvault.domain.soft_delete import SoftDelete

DEFAULT_DELAY_HOURS = 24
DEFAULT_EXPIRY_HOURS = 72
#: Delays and expiries: an hour to 30 days.
MIN_HOURS = 1
MAX_HOURS = 720
#: Who runs a delay-mode request when its delay has passed (audit log, ``decided_by``).
DELAY_ACTOR = "vmvault:delay"


class ApprovalMode(StrEnum):
    OFF = "off"
    DELAY = "delay"
    SECOND_ADMIN = "second-admin"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]


_STRENGTH = {ApprovalMode.OFF: 0, ApprovalMode.DELAY: 1, ApprovalMode.SECOND_ADMIN: 2}


@dataclass(frozen=True)
class ApprovalSetting:
    """A vault's approval setting (``vault update NAME --approvals MODE``)."""

    mode: ApprovalMode = ApprovalMode.OFF
    delay_hours: int = DEFAULT_DELAY_HOURS
    expiry_hours: int = DEFAULT_EXPIRY_HOURS

    @property
    def enabled(self) -> bool:
        return self.mode is not ApprovalMode.OFF

    def weakened_by(self, new: ApprovalSetting) -> bool:
        """Whether changing to ``new`` lowers the protection: a weaker mode, or (in delay
        mode) a shorter delay.  The expiry is not protection: a shorter one only lets requests
        lapse sooner."""
        if new.mode.strength != self.mode.strength:
            return new.mode.strength < self.mode.strength
        return self.mode is ApprovalMode.DELAY and new.delay_hours < self.delay_hours


def parse_approval_mode(text: str) -> ApprovalMode:
    try:
        return ApprovalMode(text.strip().lower())
    except ValueError:
        raise InvalidInput("use off, second-admin or delay", what=f"--approvals {text!r}") from None


def check_hours(hours: int, what: str) -> int:
    if isinstance(hours, bool) or not MIN_HOURS <= hours <= MAX_HOURS:
        raise InvalidInput(f"use {MIN_HOURS}-{MAX_HOURS} hours", what=f"{what} {hours}")
    return hours


def changed_setting(
    current: ApprovalSetting,
    mode: str | None,
    delay_hours: int | None,
    expiry_hours: int | None,
) -> ApprovalSetting:
    """The setting after ``vault update --approvals … --approval-delay H --approval-expiry H``
    (None: unchanged); bad values refused."""
    if mode is None and delay_hours is None and expiry_hours is None:
        raise InvalidInput(
            "give --approvals off|second-admin|delay, --approval-delay HOURS and/or "
            "--approval-expiry HOURS",
            what="approval setting",
        )
    return ApprovalSetting(
        parse_approval_mode(mode) if mode is not None else current.mode,
        check_hours(delay_hours, "--approval-delay")
        if delay_hours is not None
        else current.delay_hours,
        check_hours(expiry_hours, "--approval-expiry")
        if expiry_hours is not None
        else current.expiry_hours,
    )


# --- what reduces protection ------------------------------------------------------------------


def soft_delete_reduced(current: SoftDelete, new: SoftDelete) -> bool:
    """Turning soft delete off, or shortening its days."""
    return (current.enabled and not new.enabled) or new.days < current.days


def counts_lowered(current: dict[str, int], given: dict[str, int | None]) -> bool:
    """Whether any retention count given is lower than the current one."""
    return any(n is not None and n < current.get(lv, 0) for lv, n in given.items() if lv in LEVELS)


# --- the operations and their requests --------------------------------------------------------


class Kind(StrEnum):
    SOFT_DELETE_SETTING = "soft-delete-setting"
    POLICY_RETENTION = "policy-retention"
    STOP_DELETE_DATA = "protection-stop-delete-data"
    VAULT_DELETE = "vault-delete"
    POINT_PURGE = "point-purge"
    APPROVAL_SETTING = "approval-setting"


@dataclass(frozen=True)
class Operation:
    """A held service call: its kind, the vault whose setting applies, the call's arguments
    (JSON: what the execution passes back to the same method) and a line for people."""

    kind: Kind
    vault: str
    args: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Grant:
    """The execution of approved request ``request``: what the guard lets through."""

    request: int
    requested_by: str


#: Who calls a protected service method: a principal, a grant, or None (an in-process
#: caller without identity, e.g. a test: held under :data:`UNNAMED` when approvals are on).
Requester = Principal | Grant | None
UNNAMED = "unnamed"


def requester_name(by: Requester) -> str:
    if isinstance(by, Principal):
        return by.name
    if isinstance(by, Grant):
        return by.requested_by
    return UNNAMED


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # being executed (or left so by a crash: docs/approvals.md)
    EXECUTED = "executed"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ApprovalRequest:
    id: int
    operation: Operation
    mode: ApprovalMode
    requested_by: str
    requested_at: datetime
    #: second-admin: when it lapses undecided; delay: None
    expires_at: datetime | None
    #: delay: when it runs; second-admin: None
    due_at: datetime | None
    state: RequestState = RequestState.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    executed_at: datetime | None = None
    #: what the execution did (executed) or its error (failed: ``CODE: message``)
    outcome: str | None = None
    error_code: str | None = None

    def lapsed(self, now: datetime) -> bool:
        """A pending second-admin request nobody decided in time."""
        return (
            self.state is RequestState.PENDING
            and self.expires_at is not None
            and now >= self.expires_at
        )

    def due(self, now: datetime) -> bool:
        """A pending delay-mode request whose delay has passed."""
        return self.state is RequestState.PENDING and self.due_at is not None and now >= self.due_at

    def shown_state(self, now: datetime) -> RequestState:
        """The state as users see it: a lapsed one is expired before the loop records it."""
        return RequestState.EXPIRED if self.lapsed(now) else self.state


def new_request(
    operation: Operation, setting: ApprovalSetting, requested_by: str, now: datetime
) -> ApprovalRequest:
    """A pending request (id 0 until stored) under the vault's ``setting`` (enabled)."""
    if setting.mode is ApprovalMode.DELAY:
        return ApprovalRequest(
            0, operation, setting.mode, requested_by, now, None,
            now + timedelta(hours=setting.delay_hours),
        )  # fmt: skip
    expires = now + timedelta(hours=setting.expiry_hours)
    return ApprovalRequest(0, operation, setting.mode, requested_by, now, expires, None)


def _check_open(request: ApprovalRequest, now: datetime) -> None:
    if request.lapsed(now):
        raise ApprovalExpired(id=request.id, at=_at(request.expires_at))
    if request.state is not RequestState.PENDING:
        raise ApprovalNotPending(id=request.id, state=request.state.value)


def _check_admin(who: Principal) -> None:
    if not who.role.allows(Role.ADMIN):
        raise RoleRequired(name=who.name, role=who.role.value, needed=Role.ADMIN.value)


def check_approver(request: ApprovalRequest, who: Principal, now: datetime) -> None:
    """``who`` may approve: an admin, not the requester, of a request still pending."""
    _check_admin(who)
    _check_open(request, now)
    if who.name == request.requested_by:
        raise ApprovalSelf(id=request.id, name=who.name)


def check_rejecter(request: ApprovalRequest, who: Principal, now: datetime) -> None:
    """``who`` may reject: any admin (the requester withdrawing its own request too), of a
    request still pending."""
    _check_admin(who)
    _check_open(request, now)


def decided(
    request: ApprovalRequest, state: RequestState, by: str, now: datetime
) -> ApprovalRequest:
    return replace(request, state=state, decided_by=by, decided_at=now)


def _at(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else "-"


#: The CLI's exit code of a held operation: not done (yet), and not a failure.
EXIT_HELD = 4


class HeldForApproval(Exception):
    """A protected call was held, not done: the CLI prints the request and exits 4, the API
    answers 202 with it.  Raised (not returned) so that no caller can take a held call for a
    done one, and the methods keep their return types."""

    def __init__(self, request: ApprovalRequest) -> None:
        self.request = request
        super().__init__(f"held for approval: request {request.id} ({request.operation.summary})")


#: The hook every protected service method calls first (services/approvals.py).
Guard = Callable[[Kind, dict[str, Any], Requester], None]


def no_guard(kind: Kind, args: dict[str, Any], by: Requester) -> None:
    """The guard of a service built without the composition root: holds nothing."""
