"""Policies in the catalog: create, list, show, update, delete (``vmvault policy …``).

A policy belongs to one vault; its name is unique across vaults.  Validation is the domain's
(:class:`~vmvault.domain.policy.Policy`): a bad schedule, zone or retention is refused before
anything is written.  A policy that VMs use (protected or protection-stopped with retained
data) cannot be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from vmvault.domain.approval import Kind, Requester
from vmvault.domain.errors import (
    CopySameVault,
    InvalidInput,
    PolicyInUse,
    PolicyNotFound,
)
from vmvault.domain.immutability import check_retention_change, enabled
from vmvault.domain.inputs import DEFAULT_PAGE, check_page, page_of, quoted
from vmvault.domain.policy import CopyOption, Policy
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.retention import LEVELS, Decision, Retention, apply_retention, point_refs
from vmvault.domain.schedule import format_schedule, next_slot
from vmvault.domain.vault import Vault
from vmvault.services.context import Service
from vmvault.services.ports import PolicyRecord
from vmvault.services.vm_refs import resolve_vm


@dataclass
class PolicyView:
    """A stored policy with the VMs that use it (labels) and its warnings."""

    record: PolicyRecord
    vms: list[str]
    #: ``update`` only: False when the values given were the policy's already (nothing written).
    changed: bool = True

    @property
    def policy(self) -> Policy:
        return self.record.policy

    @property
    def warnings(self) -> list[str]:
        return self.record.policy.warnings()


#: The most slots a preview lists.
MAX_PREVIEW_RUNS = 100


@dataclass
class PolicyPreview:
    """A policy's next runs and, for one VM, its retention's decision on each point."""

    policy: Policy
    next_runs: list[datetime]
    #: the VM's points in the vault, newest first, each with retention's decision
    retention: list[tuple[RecoveryPoint, Decision]]


class PolicyService(Service):
    def create(
        self,
        vault_name: str | None,
        name: str,
        schedule: str,
        timezone: str,
        retention: Retention,
        copy_to: str | None = None,
        copy_counts: dict[str, int | None] | None = None,
        as_set: bool = False,
        require: str | None = None,
    ) -> PolicyView:
        """``copy_to``: copy every new point to that vault, whose copies ``copy_counts``
        prune (None or no count given: the policy's retention) — docs/copies.md.
        ``as_set``: each slot backs up the policy's VMs as one set (docs/sets.md).
        ``require``: the least consistency of the policy's points (docs/backup.md)."""
        vault = self.vaults.resolve(vault_name)
        policy = self._new(
            vault, name, schedule, timezone, retention, copy_to, copy_counts, as_set, require
        )
        with self.uow() as uow:  # PolicyExists from add when the name is taken
            record = uow.policies.add(vault.name, policy, self.clock())
            uow.commit()
        return PolicyView(record, [])

    def _new(
        self,
        vault: Vault,
        name: str,
        schedule: str,
        timezone: str,
        retention: Retention,
        copy_to: str | None,
        copy_counts: dict[str, int | None] | None,
        as_set: bool,
        require: str | None,
    ) -> Policy:
        """A new policy of ``vault`` from :meth:`create`'s words, checked (nothing stored)."""
        given = {lv: n for lv, n in (copy_counts or {}).items() if n is not None}
        if given and copy_to is None:
            raise InvalidInput("it goes with --copy-to VAULT", what="--copy-keep-*")
        copy = self._copy_option(vault.name, copy_to, given) if copy_to is not None else None
        return Policy.create(name, schedule, timezone, retention, copy, as_set, require)

    def preview(
        self,
        vault_name: str | None,
        schedule: str,
        timezone: str,
        retention: Retention,
        *,
        name: str = "preview",
        copy_to: str | None = None,
        copy_counts: dict[str, int | None] | None = None,
        as_set: bool = False,
        require: str | None = None,
        vm_ref: str | None = None,
        runs: int = 10,
    ) -> PolicyPreview:
        """What a policy with :meth:`create`'s words would do, nothing stored: its next
        ``runs`` slots after now, and — ``vm_ref`` — which of that VM's points in the vault
        its retention would keep, and why (:func:`~vmvault.domain.retention.apply_retention`,
        the rule every prune applies)."""
        if not 1 <= runs <= MAX_PREVIEW_RUNS:
            raise InvalidInput(f"use 1 to {MAX_PREVIEW_RUNS}", what=f"runs {runs}")
        vault = self.vaults.resolve(vault_name)
        policy = self._new(
            vault, name, schedule, timezone, retention, copy_to, copy_counts, as_set, require
        )
        now = self.clock()
        slots = [next_slot(policy.schedule, now)]
        while len(slots) < runs:
            slots.append(next_slot(policy.schedule, slots[-1]))
        decisions: list[tuple[RecoveryPoint, Decision]] = []
        if vm_ref is not None:
            with self.uow() as uow:
                vm = resolve_vm(uow, vm_ref)
                points = uow.points.for_vm(vm.uuid, vault.name)
            found = apply_retention(point_refs(points), policy.retention, now, policy.timezone)
            decisions = list(zip(points, found, strict=True))
        return PolicyPreview(policy, slots, decisions)

    def list_policies(
        self, vault_name: str | None, limit: int = DEFAULT_PAGE, offset: int = 0
    ) -> tuple[list[PolicyView], int]:
        """A page of the vault's policies by name (``limit`` after ``offset``: a vault's
        policies are read whole, they are few) with the VMs using each, and how many."""
        check_page(limit, offset)
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            records, total = page_of(uow.policies.all(vault.name), limit, offset)
            users = uow.vms.labels_by_policy([r.name for r in records])
        return [PolicyView(r, users.get(r.name, [])) for r in records], total

    def get(self, name: str) -> PolicyView:
        with self.uow() as uow:
            record = uow.policies.get(name)
            if record is None:
                raise PolicyNotFound(name=name)
            users = uow.vms.labels_by_policy([name]).get(name, [])
        return PolicyView(record, users)

    def update(
        self,
        name: str,
        *,
        schedule: str | None = None,
        timezone: str | None = None,
        counts: dict[str, int | None] | None = None,
        copy_to: str | None = None,
        copy_counts: dict[str, int | None] | None = None,
        no_copy: bool = False,
        as_set: bool | None = None,
        require: str | None = None,
        by: Requester = None,
    ) -> PolicyView:
        """Change the given parts; the others keep their values.  VMs follow at once.
        Lowering a retention count (of the policy or its copies) is held for approval where
        the vault's approvals are on (docs/approvals.md).

        ``copy_to`` sets (or changes) the copy vault, ``copy_counts`` the copies' retention
        (merged with the current one), ``no_copy`` stops copying (copies already made stay,
        and are no longer pruned).  ``require`` sets the least consistency of the points
        (``any``: none required).

        Nothing given is refused (``INVALID_INPUT``); values that are the policy's already
        write nothing (``changed`` False), so ``updated_at``, from which the scheduler counts
        a policy's slots, moves only when the policy does.  An empty schedule or zone is
        refused like any other bad one.
        """
        self.guard(
            Kind.POLICY_RETENTION,
            {"name": name, "schedule": schedule, "timezone": timezone, "counts": counts,
             "copy_to": copy_to, "copy_counts": copy_counts, "no_copy": no_copy,
             "as_set": as_set, "require": require},
            by,
        )  # fmt: skip
        given = {lv: n for lv, n in (counts or {}).items() if n is not None}
        copy_given = {lv: n for lv, n in (copy_counts or {}).items() if n is not None}
        nothing = (
            schedule is None
            and timezone is None
            and copy_to is None
            and as_set is None
            and require is None
        )
        if nothing and not (given or copy_given or no_copy):
            raise InvalidInput(
                "give at least one of --schedule, --tz, --daily, --weekly, --monthly, --yearly, "
                "--copy-to, --copy-keep-*, --no-copy, --as-set/--not-as-set, --require",
                what=f"update of policy {quoted(name)}",
            )
        if no_copy and (copy_to is not None or copy_given):
            raise InvalidInput("it cannot go with --copy-to or --copy-keep-*", what="--no-copy")
        view = self.get(name)
        current = view.policy
        merged = {lv: current.retention.counts[lv] for lv in LEVELS} | given
        zone = current.timezone.key if timezone is None else timezone
        text = format_schedule(current.schedule) if schedule is None else schedule
        copy = None if no_copy else current.copy
        if copy_to is not None or copy_given:
            if copy_to is None and copy is None:
                raise InvalidInput("it goes with --copy-to VAULT", what="--copy-keep-*")
            base = copy.retention.counts if copy is not None and copy.retention else {}
            copy = self._copy_option(
                view.record.vault,
                copy_to if copy_to is not None else copy.vault if copy else "",
                {**base, **copy_given},
            )
        grouped = current.as_set if as_set is None else as_set
        level = current.require.value if current.require is not None else None
        if require is not None:
            level = None if require == "any" else require
        policy = Policy.create(name, text, zone, Retention(**merged), copy, grouped, level)
        vault = self.vaults.resolve(view.record.vault)
        if enabled(vault.immutable):
            check_retention_change(vault.name, name, current.retention, policy.retention)
        if policy.to_json() == current.to_json():
            return replace(view, changed=False)
        with self.uow() as uow:
            if uow.policies.get(name) is None:
                raise PolicyNotFound(name=name)
            uow.policies.update(policy, self.clock())
            uow.commit()
        return self.get(name)

    def _copy_option(self, vault: str, copy_to: str, counts: dict[str, int]) -> CopyOption:
        """The copy option, its vault checked: known, and not the policy's own."""
        target = self.vaults.resolve(copy_to) if copy_to else None
        if target is None:
            raise InvalidInput("name a vault", what="--copy-to")
        if target.name == vault:
            raise CopySameVault(vault=vault)
        retention = None
        if counts:
            retention = Retention(**{lv: counts.get(lv, 0) or 0 for lv in LEVELS})
        return CopyOption(target.name, retention)

    def delete(self, name: str) -> None:
        """Refused while a VM uses the policy (checked in the deleting transaction)."""
        with self.uow() as uow:
            if uow.policies.get(name) is None:
                raise PolicyNotFound(name=name)
            users = sorted(v.label for v in uow.vms.all() if v.policy == name)
            if users:
                raise PolicyInUse(name=name, count=len(users), vms=", ".join(users))
            uow.policies.delete(name)
            uow.commit()
