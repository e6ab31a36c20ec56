"""``vault update``: one change of a vault's settings, whoever asks (CLI or API).

A vault has three groups of settings, each with its own service and rules: soft delete
(docs/soft-delete.md), approvals (docs/approvals.md) and immutability (docs/immutability.md).
This module only says which of them a request changes: immutability in a request of its own
(half of a mixed change could be applied before the other is refused), soft delete and
approvals together, soft delete when nothing is named (its service then refuses the empty
change with its remedy).
"""

from __future__ import annotations

from vmvault.domain.approval import Requester
from vmvault.domain.errors import InvalidInput
from vmvault.domain.vault import SettingsChange, Vault
from vmvault.services.approvals import ApprovalService
from vmvault.services.immutability import ImmutabilityService
from vmvault.services.soft_delete import SoftDeleteService


class VaultSettingsService:
    def __init__(
        self,
        soft_delete: SoftDeleteService,
        approvals: ApprovalService,
        immutability: ImmutabilityService,
    ) -> None:
        self.soft_delete = soft_delete
        self.approvals = approvals
        self.immutability = immutability

    def update(self, name: str, change: SettingsChange, by: Requester = None) -> Vault:
        """Apply ``change`` to vault ``name``; the vault as it is afterwards."""
        named = [v for v in (*change.soft, *change.approval) if v is not None]
        if change.immutability:
            if named:
                raise InvalidInput(
                    "change immutability in a command or request of its own", what="--immutable"
                )
            return self.immutability.update_vault(name, change.immutable, change.lock)
        vault = None
        if any(v is not None for v in change.soft) or not named:
            vault = self.soft_delete.update_vault(name, *change.soft, by=by)
        if any(v is not None for v in change.approval):
            vault = self.approvals.configure(name, *change.approval, by=by)
        assert vault is not None
        return vault
