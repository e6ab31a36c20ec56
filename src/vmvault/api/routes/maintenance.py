"""``/verify`` and ``/gc``: the vault's upkeep, queued."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.models import JobDoc
from vmvault.api.requests import VaultRequest, VerifyRequest
from vmvault.api.routes.common import OPERATOR, PREFIX, queued
from vmvault.bootstrap import Services


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["maintenance"])

    @router.post(
        "/verify",
        status_code=202,
        response_model=JobDoc,
        responses=queued("/id"),
        dependencies=OPERATOR,
    )
    def verify(body: VerifyRequest | None = None) -> dict[str, Any]:
        body = body or VerifyRequest()
        job = services.queue.submit_verify(
            body.vault, point_id=body.point, vm_ref=body.vm, origin="api"
        )
        return documents.job_doc(job)

    @router.post(
        "/gc",
        status_code=202,
        response_model=JobDoc,
        responses=queued("/id"),
        dependencies=OPERATOR,
    )
    def gc(body: VaultRequest | None = None) -> dict[str, Any]:
        body = body or VaultRequest()
        return documents.job_doc(services.queue.submit_gc(body.vault, origin="api"))

    return router
