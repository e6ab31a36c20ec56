"""``/approvals``: requests held for approval — list, show, approve, reject (admin;
docs/approvals.md).

A route whose call reduces protection answers **202** with the request when the call was held
(:func:`install`: the handler of :class:`~vmvault.domain.approval.HeldForApproval`); its
OpenAPI responses say so with :data:`HELD`.  The principal approving or rejecting is the
request's token: an admin never approves its own request (``APPROVAL_SELF``, 403).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.models import ApprovalDoc
from vmvault.api.routes.common import PAGE, PREFIX, Limit, Offset, paged, set_total
from vmvault.bootstrap import Services
from vmvault.domain.access import Principal, Role
from vmvault.domain.approval import HeldForApproval
from vmvault.domain.inputs import MAX_INT64

#: The 202 of a route whose call may be held for approval.
HELD: dict[int | str, dict[str, Any]] = {
    202: {"model": ApprovalDoc, "description": "Held for approval: the pending request"}
}

Admin = Annotated[Principal, needs(Role.ADMIN)]
ApprovalId = Annotated[int, Path(ge=1, le=MAX_INT64, description="a request id")]


def install(app: FastAPI) -> None:
    """Answer a held call 202 with its request (whatever route it came through)."""

    @app.exception_handler(HeldForApproval)
    def _held(_request: Request, exc: HeldForApproval) -> JSONResponse:
        return JSONResponse(documents.approval_doc(exc.request), status_code=202)


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["approvals"])

    @router.get(
        "/approvals",
        response_model=list[ApprovalDoc],
        responses={**paged("requests"), **responses(404)},
    )
    def approvals(
        _who: Admin,
        response: Response,
        state: str | None = None,
        vault: str | None = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
    ) -> list[dict[str, Any]]:
        """Requests, newest first (``state``: pending, approved, executed, failed, rejected,
        expired); ``X-Total-Count``: how many match."""
        found, total = services.approvals.list_requests(state, vault, limit, offset)
        set_total(response, total)
        return [documents.approval_doc(r) for r in found]

    @router.get("/approvals/{request_id}", response_model=ApprovalDoc, responses=responses(404))
    def approval(request_id: ApprovalId, _who: Admin) -> dict[str, Any]:
        """One request."""
        return documents.approval_doc(services.approvals.get(request_id))

    @router.post(
        "/approvals/{request_id}/approve",
        response_model=ApprovalDoc,
        responses=responses(404, 409),
    )
    def approve(request_id: ApprovalId, who: Admin) -> dict[str, Any]:
        """Approve (an admin other than the requester: else ``APPROVAL_SELF``, 403) and run
        the held call at once; the request as it ended (``executed`` or ``failed``)."""
        return documents.approval_doc(services.approvals.approve(request_id, who))

    @router.post(
        "/approvals/{request_id}/reject",
        response_model=ApprovalDoc,
        responses=responses(404, 409),
    )
    def reject(request_id: ApprovalId, who: Admin) -> dict[str, Any]:
        """Reject (any admin; the requester withdraws its own request)."""
        return documents.approval_doc(services.approvals.reject(request_id, who))

    return router
