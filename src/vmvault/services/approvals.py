"""Multi-user authorization (domain/approval.py, docs/approvals.md): hold, decide, execute.

**Holding.**  Each protected service method starts with one call, ``self.guard(kind, args,
by)`` (:meth:`ApprovalService.guard_call`; bootstrap sets it on the services, a service built
without bootstrap holds nothing).  The guard lets the call through when ``by`` is a
:class:`~vmvault.domain.approval.Grant` (the execution of an approved request), when the
vault's approvals are off, or when the call does not reduce protection (a longer retention,
a soft-delete purge whose period has ended…: :mod:`vmvault.services.protected_calls` knows
each kind).  Otherwise it checks what the call would refuse
anyway (so a bad request is refused, not held), stores a *pending* request with the call's
arguments, writes it to the audit log, emits the ``approval`` notification to the vault's
targets and raises :class:`~vmvault.domain.approval.HeldForApproval`: the CLI prints the
request and exits 4, the API answers 202 with the request.

**Deciding.**  :meth:`approve` (an admin other than the requester) and :meth:`reject` (any
admin; the requester withdraws) change the state with a compare-and-set, so of two admins
deciding at once one wins and the other is refused (``APPROVAL_NOT_PENDING``).

**Executing** — one path, :meth:`_execute`: an approval runs the request at once; a delay-mode
request whose delay has passed is run by :meth:`run_due` (the notifier loop of ``vmvault
serve``, and ``vmvault approvals run-due``), which also records lapsed second-admin requests
as ``expired``.  Execution calls the same service method the direct path calls, with the held
arguments and a grant (``ProtectedCalls.run``); its outcome — what was done, or the error —
is stored on the request (``executed`` / ``failed``) and in the audit log.  A request found ``approved`` (a crash
between its approval and the end of its execution) is left so: whether the operation ran is
for an admin to check, and it is never run twice by itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vmvault.domain.access import Principal
from vmvault.domain.approval import (
    DELAY_ACTOR,
    EXIT_HELD,
    ApprovalRequest,
    Grant,
    HeldForApproval,
    Kind,
    Operation,
    Requester,
    RequestState,
    changed_setting,
    check_approver,
    check_rejecter,
    decided,
    new_request,
    requester_name,
)
from vmvault.domain.errors import (
    ApprovalNotFound,
    ApprovalNotPending,
    InvalidInput,
    VaultNotFound,
    VmvaultError,
)
from vmvault.domain.inputs import DEFAULT_PAGE, check_id, check_page
from vmvault.domain.notification import approval_message
from vmvault.domain.vault import Vault, validate_name
from vmvault.services.context import Service, ServiceContext

if TYPE_CHECKING:
    from vmvault.services.audit import AuditService
    from vmvault.services.notifications import NotificationService
    from vmvault.services.protected_calls import ProtectedCalls

log = logging.getLogger("vmvault.approvals")

#: ``remote`` of the audit entries the approvals write themselves (the request's life).
AUDIT_REMOTE = "approvals"


class ApprovalService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        audit: AuditService,
        notifications: NotificationService,
        calls: ProtectedCalls,
    ) -> None:
        super().__init__(ctx)
        self.audit = audit
        self.notifications = notifications
        #: what each kind of protected call reduces, and how it is run again
        self.calls = calls

    # --- the setting ------------------------------------------------------------------------

    def configure(
        self,
        vault_name: str,
        mode: str | None = None,
        delay_hours: int | None = None,
        expiry_hours: int | None = None,
        *,
        by: Requester = None,
    ) -> Vault:
        """``vault update NAME --approvals off|second-admin|delay --approval-delay H
        --approval-expiry H``; weakening it is itself held under the current setting."""
        self.guard(
            Kind.APPROVAL_SETTING,
            {"vault": vault_name, "mode": mode, "delay_hours": delay_hours,
             "expiry_hours": expiry_hours},
            by,
        )  # fmt: skip
        with self.uow() as uow:
            vault = uow.vaults.get(vault_name)
            if vault is None:
                raise VaultNotFound(name=vault_name)
            setting = changed_setting(vault.approvals, mode, delay_hours, expiry_hours)
            uow.vaults.set_approvals(vault.name, setting)
            uow.commit()
        return replace(vault, approvals=setting)

    # --- holding ----------------------------------------------------------------------------

    def guard_call(self, kind: Kind, args: dict[str, Any], by: Requester) -> None:
        """The guard: let the call through, or hold it (raises :class:`HeldForApproval`)."""
        if isinstance(by, Grant):
            return
        found = self.calls.assess(kind, args)
        if found is None:
            return
        vault, summary = found
        now = self.clock()
        held = new_request(Operation(kind, vault.name, args, summary), vault.approvals,
                           requester_name(by), now)  # fmt: skip
        with self.uow() as uow:
            request = uow.approvals.add(held)
            uow.commit()
        role = by.role.value if isinstance(by, Principal) else None
        self._audit(request.requested_by, role, "request", request, EXIT_HELD)
        self.notifications.emit(
            approval_message(vault.name, str(request.id), summary, request.requested_by)
        )
        raise HeldForApproval(request)

    # --- listing and deciding ---------------------------------------------------------------

    def list_requests(
        self,
        state: str | None = None,
        vault: str | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        """Newest first, a page of ``limit`` from ``offset``, and how many match; ``state`` as
        users see it (a lapsed request is ``expired``)."""
        check_page(limit, offset)
        wanted = _state(state) if state is not None else None
        if vault is not None:  # a deleted vault's requests stay listed: its name is enough
            validate_name(vault, "vault name")
        now = self.clock()
        with self.uow() as uow:  # filtered by the shown state and paged in the catalog
            found, total = uow.approvals.page(wanted, vault, now, limit, offset)
        return [replace(r, state=r.shown_state(now)) for r in found], total

    def get(self, request_id: int) -> ApprovalRequest:
        check_id(request_id, "request id")
        with self.uow() as uow:
            found = uow.approvals.get(request_id)
        if found is None:
            raise ApprovalNotFound(id=request_id)
        return replace(found, state=found.shown_state(self.clock()))

    def approve(self, request_id: int, who: Principal) -> ApprovalRequest:
        """Approve (an admin other than the requester) and execute at once; the request as
        it ended (``executed`` or ``failed``, with the outcome)."""
        request = self._stored(request_id)
        check_approver(request, who, self.clock())
        approved = self._decide(request, RequestState.APPROVED, who)
        return self._execute(approved)

    def reject(self, request_id: int, who: Principal) -> ApprovalRequest:
        """Reject (any admin; the requester withdraws its own request)."""
        request = self._stored(request_id)
        check_rejecter(request, who, self.clock())
        return self._decide(request, RequestState.REJECTED, who)

    def run_due(self) -> list[ApprovalRequest]:
        """Execute the delay-mode requests whose delay has passed; record the lapsed
        second-admin requests as expired.  What it did, oldest first."""
        now = self.clock()
        with self.uow() as uow:
            pending = uow.approvals.find(RequestState.PENDING, None)
        done = []
        for request in reversed(pending):
            if request.lapsed(now):
                expired = replace(request, state=RequestState.EXPIRED, decided_at=now)
                if self._transition(expired, RequestState.PENDING):
                    self._audit(request.requested_by, None, "expire", expired, 0)
                    done.append(expired)
            elif request.due(now):
                approved = decided(request, RequestState.APPROVED, DELAY_ACTOR, now)
                if self._transition(approved, RequestState.PENDING):
                    done.append(self._execute(approved))
        return done

    def _stored(self, request_id: int) -> ApprovalRequest:
        check_id(request_id, "request id")
        with self.uow() as uow:
            found = uow.approvals.get(request_id)
        if found is None:
            raise ApprovalNotFound(id=request_id)
        return found

    def _decide(
        self, request: ApprovalRequest, state: RequestState, who: Principal
    ) -> ApprovalRequest:
        changed = decided(request, state, who.name, self.clock())
        if not self._transition(changed, RequestState.PENDING):  # another admin was faster
            now = self._stored(request.id)
            raise ApprovalNotPending(id=request.id, state=now.state.value)
        action = "approve" if state is RequestState.APPROVED else "reject"
        self._audit(who.name, who.role.value, action, changed, 0)
        return changed

    def _transition(self, request: ApprovalRequest, expected: RequestState) -> bool:
        with self.uow() as uow:
            won = uow.approvals.transition(request, expected)
            uow.commit()
        return won

    # --- executing: the one path ------------------------------------------------------------

    def _execute(self, request: ApprovalRequest) -> ApprovalRequest:
        """Run an approved request's held call with a grant; store its outcome."""
        grant = Grant(request.id, request.requested_by)
        try:
            outcome, error = self.calls.run(request.operation, grant), None
        except VmvaultError as exc:
            outcome, error = f"{exc.code}: {exc.text}", exc.code
        except Exception as exc:  # a bug: recorded as such, the traceback in the log
            log.exception("approval request %s: execution failed", request.id)
            outcome, error = f"INTERNAL_ERROR: {type(exc).__name__}", "INTERNAL_ERROR"
        state = RequestState.FAILED if error else RequestState.EXECUTED
        ended = replace(
            request, state=state, executed_at=self.clock(), outcome=outcome, error_code=error
        )
        self._transition(ended, RequestState.APPROVED)
        self._audit(request.decided_by or "?", None, "execute", ended, 1 if error else 0)
        return ended

    def _audit(
        self, actor: str, role: str | None, action: str, request: ApprovalRequest, status: int
    ) -> None:
        target = f"request {request.id}: {request.operation.summary}"
        if request.outcome:
            target += f" -> {request.outcome}"
        try:
            self.audit.record(actor, role, f"approval {action}", target, status, AUDIT_REMOTE)
        except Exception:
            log.exception("audit entry of approval request %s not written", request.id)


def _state(text: str) -> RequestState:
    try:
        return RequestState(text.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in RequestState)
        raise InvalidInput(f"use one of {names}", what=f"state {text!r}") from None
