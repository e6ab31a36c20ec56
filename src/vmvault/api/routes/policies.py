"""``/policies``: schedules and retention; and a preview of what a policy would do."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.models import DeletedDoc, PolicyDoc, PolicyPreviewDoc, PolicyUpdatedDoc
from vmvault.api.requests import PolicyCreate, PolicyPreviewRequest, PolicyUpdate, RetentionChange
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
from vmvault.domain.retention import Retention


def _counts(r: RetentionChange | None) -> dict[str, int | None]:
    return r.model_dump() if r is not None else {}


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["policies"])

    @router.get(
        "/policies",
        response_model=list[PolicyDoc],
        responses={**paged("policies"), **responses(404)},
        dependencies=READER,
    )
    def policies(
        response: Response, vault: str | None = None, limit: Limit = PAGE, offset: Offset = 0
    ) -> list[dict[str, Any]]:
        """The vault's policies by name, with the VMs using each, ``limit`` of them after
        ``offset``; the header X-Total-Count says how many match."""
        found, total = services.policies.list_policies(vault, limit, offset)
        set_total(response, total)
        return [documents.policy_doc(v) for v in found]

    @router.get(
        "/policies/{name}", response_model=PolicyDoc, responses=responses(404), dependencies=READER
    )
    def policy(name: str) -> dict[str, Any]:
        return documents.policy_doc(services.policies.get(name))

    @router.post(
        "/policies/preview",
        response_model=PolicyPreviewDoc,
        responses=responses(404, 409),
        dependencies=READER,
    )
    def preview(body: PolicyPreviewRequest) -> dict[str, Any]:
        """The policy's next runs and, for ``vm``, which of its points in the vault the
        policy's retention would keep and why (nothing is stored)."""
        shown = services.policies.preview(
            body.vault,
            body.schedule,
            body.timezone,
            Retention(**body.retention.model_dump()),
            name=body.name,
            copy_to=body.copy_to,
            copy_counts=_counts(body.copy_retention),
            as_set=body.as_set,
            require=body.require,
            vm_ref=body.vm,
            runs=body.runs,
        )
        return documents.preview_doc(shown)

    @router.post(
        "/policies",
        status_code=201,
        response_model=PolicyDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def create_policy(body: PolicyCreate) -> dict[str, Any]:
        view = services.policies.create(
            body.vault,
            body.name,
            body.schedule,
            body.timezone,
            Retention(**body.retention.model_dump()),
            copy_to=body.copy_to,
            copy_counts=_counts(body.copy_retention),
            as_set=body.as_set,
            require=body.require,
        )
        return documents.policy_doc(view)

    @router.patch(
        "/policies/{name}",
        response_model=PolicyUpdatedDoc,
        responses={**HELD, **responses(404, 409)},
    )
    def update_policy(
        name: str, body: PolicyUpdate, who: Annotated[Principal, needs(Role.CONTRIBUTOR)]
    ) -> dict[str, Any]:
        """Change the given parts; the others keep their values. Its VMs follow at once.
        Lowering a retention count is held for approval where the vault's approvals are on
        (202, docs/approvals.md)."""
        view = services.policies.update(
            name,
            schedule=body.schedule,
            timezone=body.timezone,
            counts=_counts(body.retention),
            copy_to=body.copy_to,
            copy_counts=_counts(body.copy_retention),
            no_copy=body.no_copy,
            as_set=body.as_set,
            require=body.require,
            by=who,
        )
        return documents.policy_doc(view) | {"changed": view.changed}

    @router.delete(
        "/policies/{name}",
        response_model=DeletedDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def delete_policy(name: str) -> dict[str, str]:
        """Delete a policy no VM uses (POLICY_IN_USE otherwise)."""
        services.policies.delete(name)
        return {"deleted": name}

    return router
