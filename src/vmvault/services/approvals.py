"""Multi-user authorization (domain/approval.py, docs/approvals.md): hold, decide, execute.

**Holding.**  Each protected service method starts with one call, ``self.guard(kind, args,
by)`` (:meth:`ApprovalService.guard_call`; bootstrap sets it on the services, a service built
without bootstrap holds nothing).  The guard lets the call through when ``by`` is a
:class:`~vmvault.domain.approval.Grant` (the execution of an approved request), when the
vault's approvals are off, or when the call does not reduce protection (a longer retention, a
soft-delete purge whose period has ended…).  Otherwise it checks what the call would refuse
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
arguments and a grant; its outcome — what was done, or the error — is stored on the request
(``executed`` / ``failed``) and in the audit log.  A request found ``approved`` (a crash
between its approval and the end of its execution) is left so: whether the operation ran is
for an admin to check, and it is never run twice by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vmvault.domain.access import Principal
from vmvault.domain.approval import (
    DELAY_ACTOR,
    ApprovalMode,
    ApprovalRequest,
    ApprovalSetting,
    Grant,
    HeldForApproval,
    Kind,
    Operation,
    Requester,
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
    ApprovalNotFound,
    ApprovalNotPending,
    InvalidInput,
    VaultNotFound,
    VmvaultError,
    WrongProtectionState,
)
from vmvault.domain.inputs import check_count, check_id
from vmvault.domain.notification import approval_message
from vmvault.domain.retention import LEVELS, Retention
from vmvault.domain.soft_delete import change, parse_mode
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmState
from vmvault.services import holdings
from vmvault.services.context import Service, ServiceContext
from vmvault.services.vm_refs import MustBe, resolve_vms

if TYPE_CHECKING:
    from vmvault.services.audit import AuditService
    from vmvault.services.notifications import NotificationService
    from vmvault.services.policies import PolicyService
    from vmvault.services.protection import ProtectionService
    from vmvault.services.soft_delete import SoftDeleteService

log = logging.getLogger("vmvault.approvals")

#: ``remote`` of the audit entries the approvals write themselves (the request's life).
AUDIT_REMOTE = "approvals"
#: The CLI's exit code of a held operation: not done (yet), and not a failure.
EXIT_HELD = 4
#: The most requests one list answers.
MAX_LIST = 1000


@dataclass(frozen=True)
class Executors:
    """The services whose methods a request's execution calls (bootstrap gives them)."""

    soft_delete: Callable[[], SoftDeleteService]
    policies: Callable[[], PolicyService]
    protection: Callable[[], ProtectionService]


class ApprovalService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        audit: AuditService,
        notifications: NotificationService,
        executors: Executors,
    ) -> None:
        super().__init__(ctx)
        self.audit = audit
        self.notifications = notifications
        self.executors = executors

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
        found = self._assess(kind, args)
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

    def _assess(self, kind: Kind, args: dict[str, Any]) -> tuple[Vault, str] | None:
        """The vault whose setting applies and the request's summary, when the call reduces
        protection and that vault's approvals are on; None to let it through (the method
        itself then refuses what is wrong: an unknown vault, policy, point…)."""
        assess = {
            Kind.SOFT_DELETE_SETTING: self._assess_soft_delete,
            Kind.POLICY_RETENTION: self._assess_policy,
            Kind.STOP_DELETE_DATA: self._assess_stop,
            Kind.VAULT_DELETE: self._assess_vault_delete,
            Kind.POINT_PURGE: self._assess_purge,
            Kind.APPROVAL_SETTING: self._assess_setting,
        }[kind]
        return assess(args)

    def _assess_soft_delete(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        vault = self._vault(args["vault"])
        if vault is None or not vault.approvals.enabled:
            return None
        wanted = parse_mode(args["mode"]) if args.get("mode") is not None else None
        new = change(vault.name, vault.soft_delete, wanted, args.get("days"))
        if not soft_delete_reduced(vault.soft_delete, new):
            return None
        now = vault.soft_delete
        return vault, (
            f"set soft delete of vault '{vault.name}' to {new.mode.value}, {new.days} days "
            f"(now {now.mode.value}, {now.days} days)"
        )

    def _assess_vault_delete(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        vault = self._vault(args["vault"])
        if vault is None or not vault.approvals.enabled:
            return None
        self.vaults.check_deletable(vault.name, with_points=bool(args.get("with_points")))
        points = " with its points" if args.get("with_points") else ""
        return vault, f"delete vault '{vault.name}'{points}"

    def _assess_setting(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        vault = self._vault(args["vault"])
        if vault is None or not vault.approvals.enabled:
            return None
        wanted = changed_setting(
            vault.approvals, args.get("mode"), args.get("delay_hours"), args.get("expiry_hours")
        )
        if not vault.approvals.weakened_by(wanted):
            return None
        now = _setting(vault.approvals)
        return vault, f"weaken approvals of vault '{vault.name}' to {_setting(wanted)} ({now})"

    def _vault(self, name: str | None) -> Vault | None:
        with self.uow() as uow:
            return uow.vaults.get(name) if name else None

    def _assess_policy(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        with self.uow() as uow:
            record = uow.policies.get(args["name"])
        vault = self._vault(record.vault) if record is not None else None
        if record is None or vault is None or not vault.approvals.enabled:
            return None
        current = record.policy
        counts = args.get("counts") or {}
        copy_counts = args.get("copy_counts") or {}
        merged = current.retention.counts | {k: v for k, v in counts.items() if v is not None}
        Retention(**{lv: merged[lv] for lv in LEVELS})  # refused now, not at execution
        lowered = counts_lowered(current.retention.counts, counts)
        if current.copy is not None and copy_counts:
            kept = current.copy.retention or current.retention
            lowered = lowered or counts_lowered(kept.counts, copy_counts)
        if not lowered:
            return None
        given = ", ".join(
            f"{lv} {n}" for lv, n in {**counts, **copy_counts}.items() if n is not None
        )
        return vault, f"lower the retention of policy '{record.name}' ({given})"

    def _assess_stop(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        if args.get("retain_data", True):
            return None
        vault = self.vaults.resolve(args.get("vault"))
        if not vault.approvals.enabled:
            return None
        with self.uow() as uow:
            chosen = resolve_vms(uow, args["vms"], vault=vault, must_be=MustBe.REGISTERED)
        for vm in chosen:
            if vm.state is not VmState.PROTECTED:
                raise WrongProtectionState(
                    vm=vm.label, state=vm.state.value, action="stopped (it is not protected)"
                )
        args["vault"], args["vms"] = vault.name, [vm.uuid for vm in chosen]
        names = ", ".join(vm.label for vm in chosen)
        return vault, f"stop protection of {names} and delete their points in '{vault.name}'"

    def _assess_purge(self, args: dict[str, Any]) -> tuple[Vault, str] | None:
        now = self.clock()
        with self.uow() as uow:
            point = holdings.known(uow, args["point"])
            vaults = [args["vault"]] if args.get("vault") else [point.vault] + [
                c.vault for c in uow.copies.of_point(point.id, deleted=True)
            ]  # fmt: skip
            early = []
            for name in vaults:
                gone = holdings.deletion_in(uow, point, name)
                vault = uow.vaults.get(name)
                if gone is not None and not gone.expired(now) and vault is not None:
                    early.append(vault)
        guarded = [v for v in early if v.approvals.enabled]
        if not guarded:
            return None
        vault = max(guarded, key=lambda v: v.approvals.mode.strength)
        where = ", ".join(f"'{v.name}'" for v in early)
        return vault, f"purge soft-deleted point {point.id} of {point.vm_name} from {where} early"

    # --- listing and deciding ---------------------------------------------------------------

    def list_requests(
        self, state: str | None = None, vault: str | None = None, limit: int = 100
    ) -> list[ApprovalRequest]:
        """Newest first; ``state`` as users see it (a lapsed request is ``expired``)."""
        check_count(limit, "limit", 1, MAX_LIST)
        wanted = _state(state) if state is not None else None
        if vault is not None:
            self.vaults.resolve(vault)
        now = self.clock()
        with self.uow() as uow:
            found = uow.approvals.find(None, vault, MAX_LIST)
        shown = [replace(r, state=r.shown_state(now)) for r in found]
        return [r for r in shown if wanted is None or r.state is wanted][:limit]

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
            pending = uow.approvals.find(RequestState.PENDING, None, MAX_LIST)
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
            outcome, error = self._call(request.operation, grant), None
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

    def _call(self, op: Operation, grant: Grant) -> str:
        """The held call itself: the same service method, the same arguments."""
        a = op.args
        if op.kind is Kind.SOFT_DELETE_SETTING:
            v = self.executors.soft_delete().update_vault(
                a["vault"], a.get("mode"), a.get("days"), by=grant
            )
            return f"soft delete of vault '{v.name}' is {v.soft_delete.mode.value}, {v.soft_delete.days} days"
        if op.kind is Kind.POLICY_RETENTION:
            kw = {k: v for k, v in a.items() if k != "name"}
            view = self.executors.policies().update(a["name"], **kw, by=grant)
            return f"policy '{view.policy.name}' updated: {view.policy.retention}"
        if op.kind is Kind.STOP_DELETE_DATA:
            jobs = self.executors.protection().stop(
                a["vault"], a["vms"], retain_data=False, by=grant
            )
            failed = [o for o in jobs if o.error is not None]
            if failed:
                raise failed[0].error  # type: ignore[misc]
            return "stop-protection job(s) " + ", ".join(str(o.job.id) for o in jobs) + " completed"
        if op.kind is Kind.VAULT_DELETE:
            purged = self.vaults.delete(
                a["vault"], with_points=bool(a.get("with_points")), by=grant
            )
            return f"vault '{a['vault']}' deleted ({purged} point(s) purged)"
        if op.kind is Kind.POINT_PURGE:
            removed = self.executors.soft_delete().purge_point(a["point"], a.get("vault"), by=grant)
            return "; ".join(r.describe() for r in removed)
        v = self.configure(
            a["vault"], a.get("mode"), a.get("delay_hours"), a.get("expiry_hours"), by=grant
        )
        return f"approvals of vault '{v.name}': {_setting(v.approvals)}"

    # --- the audit log ----------------------------------------------------------------------

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


def _setting(s: ApprovalSetting) -> str:
    if s.mode is ApprovalMode.DELAY:
        return f"delay {s.delay_hours} h"
    if s.mode is ApprovalMode.SECOND_ADMIN:
        return f"second-admin (expiry {s.expiry_hours} h)"
    return "off"


def _state(text: str) -> RequestState:
    try:
        return RequestState(text.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in RequestState)
        raise InvalidInput(f"use one of {names}", what=f"state {text!r}") from None
