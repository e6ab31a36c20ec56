"""Policies in the catalog: create, list, show, update, delete (``vmvault policy …``).

A policy belongs to one vault; its name is unique across vaults.  Validation is the domain's
(:class:`~vmvault.domain.policy.Policy`): a bad schedule, zone or retention is refused before
anything is written.  A policy that VMs use (protected or protection-stopped with retained
data) cannot be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmvault.domain.errors import PolicyExists, PolicyInUse, PolicyNotFound
from vmvault.domain.policy import Policy
from vmvault.domain.retention import LEVELS, Retention
from vmvault.domain.schedule import format_schedule
from vmvault.services.context import Service
from vmvault.services.ports import PolicyRecord


@dataclass
class PolicyView:
    """A stored policy with the VMs that use it (labels) and its warnings."""

    record: PolicyRecord
    vms: list[str]

    @property
    def policy(self) -> Policy:
        return self.record.policy

    @property
    def warnings(self) -> list[str]:
        return self.record.policy.warnings()


class PolicyService(Service):
    def create(
        self,
        vault_name: str | None,
        name: str,
        schedule: str,
        timezone: str,
        retention: Retention,
    ) -> PolicyView:
        vault = self.vaults.resolve(vault_name)
        policy = Policy.create(name, schedule, timezone, retention)
        with self.uow() as uow:
            if uow.policies.get(name) is not None:
                raise PolicyExists(name=name)
            record = uow.policies.add(vault.name, policy, self.clock())
            uow.commit()
        return PolicyView(record, [])

    def list_policies(self, vault_name: str | None) -> list[PolicyView]:
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            records = uow.policies.all(vault.name)
            vms = uow.vms.all()
        return [PolicyView(r, sorted(v.label for v in vms if v.policy == r.name)) for r in records]

    def get(self, name: str) -> PolicyView:
        with self.uow() as uow:
            record = uow.policies.get(name)
            if record is None:
                raise PolicyNotFound(name=name)
            users = sorted(v.label for v in uow.vms.all() if v.policy == name)
        return PolicyView(record, users)

    def update(
        self,
        name: str,
        *,
        schedule: str | None = None,
        timezone: str | None = None,
        counts: dict[str, int | None] | None = None,
    ) -> PolicyView:
        """Change the given parts; the others keep their values.  VMs follow at once."""
        current = self.get(name).policy
        merged = {lv: current.retention.counts[lv] for lv in LEVELS}
        merged.update({lv: n for lv, n in (counts or {}).items() if n is not None})
        zone = timezone or current.timezone.key
        text = schedule or format_schedule(current.schedule)
        policy = Policy.create(name, text, zone, Retention(**merged))
        with self.uow() as uow:
            if uow.policies.get(name) is None:
                raise PolicyNotFound(name=name)
            uow.policies.update(policy, self.clock())
            uow.commit()
        return self.get(name)

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
