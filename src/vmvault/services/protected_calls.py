"""The operations that reduce protection (docs/approvals.md, "What is protected"): for each
kind of held call, whether a given call reduces protection (:meth:`ProtectedCalls.assess`,
asked by the guard) and how an approved one is run again (:meth:`ProtectedCalls.run`: the same
service method with the held arguments and a :class:`~vmvault.domain.approval.Grant`).

One table of knowledge per kind, so that adding a protected operation is one ``assess_*``
method, one branch of :meth:`ProtectedCalls.run` and the guard's call at the top of its
service method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmvault.domain.approval import (
    ApprovalMode,
    ApprovalSetting,
    Grant,
    Kind,
    Operation,
    changed_setting,
    counts_lowered,
    soft_delete_reduced,
)
from vmvault.domain.errors import WrongProtectionState
from vmvault.domain.retention import LEVELS, Retention
from vmvault.domain.soft_delete import change, parse_mode
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmState
from vmvault.services import holdings
from vmvault.services.context import Service, ServiceContext
from vmvault.services.vm_refs import MustBe, resolve_vms

if TYPE_CHECKING:
    from vmvault.services.approvals import ApprovalService
    from vmvault.services.policies import PolicyService
    from vmvault.services.protection import ProtectionService
    from vmvault.services.soft_delete import SoftDeleteService


@dataclass(frozen=True)
class Executors:
    """The services whose methods a request's execution calls (bootstrap gives them)."""

    soft_delete: Callable[[], SoftDeleteService]
    policies: Callable[[], PolicyService]
    protection: Callable[[], ProtectionService]
    approvals: Callable[[], ApprovalService]


class ProtectedCalls(Service):
    def __init__(self, ctx: ServiceContext, executors: Executors) -> None:
        super().__init__(ctx)
        self.executors = executors

    def assess(self, kind: Kind, args: dict[str, Any]) -> tuple[Vault, str] | None:
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
        now = setting_text(vault.approvals)
        return vault, f"weaken approvals of vault '{vault.name}' to {setting_text(wanted)} ({now})"

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

    def run(self, op: Operation, grant: Grant) -> str:
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
        v = self.executors.approvals().configure(
            a["vault"], a.get("mode"), a.get("delay_hours"), a.get("expiry_hours"), by=grant
        )
        return f"approvals of vault '{v.name}': {setting_text(v.approvals)}"


def setting_text(s: ApprovalSetting) -> str:
    if s.mode is ApprovalMode.DELAY:
        return f"delay {s.delay_hours} h"
    if s.mode is ApprovalMode.SECOND_ADMIN:
        return f"second-admin (expiry {s.expiry_hours} h)"
    return "off"
