"""``/protection``: registered VMs with a policy — protect, stop, resume, and their health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.models import ProtectedItemDoc, ProtectJobDoc
from vmvault.api.requests import ProtectRequest, ResumeRequest, StopRequest
from vmvault.api.routes.approvals import HELD
from vmvault.api.routes.common import (
    CONTRIBUTOR,
    PAGE,
    PREFIX,
    READER,
    Limit,
    Offset,
    paged,
    set_total,
)
from vmvault.bootstrap import Services
from vmvault.domain.access import Principal, Role
from vmvault.services.protection import ProtectResult


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["protection"])
    changes: dict[str, Any] = {
        "response_model": list[ProtectJobDoc],
        "responses": responses(404, 409),
        "dependencies": CONTRIBUTOR,
    }

    @router.get(
        "/protection",
        response_model=list[ProtectedItemDoc],
        responses={**paged("VMs registered with the vault"), **responses(404)},
        dependencies=READER,
    )
    def protection(
        response: Response, vault: str | None = None, limit: Limit = PAGE, offset: Offset = 0
    ) -> list[dict[str, Any]]:
        """The VMs registered with the vault by name, ``limit`` of them after ``offset``:
        protection, policy, points, health; the header X-Total-Count says how many match."""
        found, total = services.protection.items(vault, limit, offset)
        set_total(response, total)
        return [documents.protected_item_doc(i) for i in found]

    @router.post("/protection", **changes)
    def protect(body: ProtectRequest) -> list[dict[str, Any]]:
        """One configure-protection job per VM (inline); the initial backup is at the
        policy's next slot (or queue one with ``POST /backups``)."""
        result = services.protection.protect(
            body.vault, body.vms, body.policy, exclude_disks=body.exclude_disks
        )
        return documents.protect_docs(result)

    @router.post(
        "/protection/stop",
        response_model=list[ProtectJobDoc],
        responses={**HELD, **responses(404, 409)},
    )
    def stop(
        body: StopRequest, who: Annotated[Principal, needs(Role.CONTRIBUTOR)]
    ) -> list[dict[str, Any]]:
        """One stop-protection job per VM (inline): points kept, or deleted — held for
        approval where the vault's approvals are on (202, docs/approvals.md)."""
        outcomes = services.protection.stop(
            body.vault, body.vms, retain_data=not body.delete_data, by=who
        )
        return documents.protect_docs(ProtectResult(outcomes, []))

    @router.post("/protection/resume", **changes)
    def resume(body: ResumeRequest) -> list[dict[str, Any]]:
        """Resume VMs whose protection was stopped with their data retained."""
        return documents.protect_docs(services.protection.resume(body.vault, body.vms, body.policy))

    return router
