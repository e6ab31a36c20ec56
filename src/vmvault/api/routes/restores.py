"""``/restores`` and ``/restore-tests``: queued restores in every mode, and restore tests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.models import JobDoc
from vmvault.api.requests import RestoreRequest, RestoreTestRequest
from vmvault.api.routes.common import OPERATOR, PREFIX, queued, server_path
from vmvault.bootstrap import Services


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["restores"])

    @router.post(
        "/restores",
        status_code=202,
        response_model=JobDoc,
        responses=queued("/id"),
        dependencies=OPERATOR,
    )
    def restore(body: RestoreRequest) -> dict[str, Any]:
        """Queue a restore (as-new, replace, disks-only, or test: as-new and removed). Every check of the restore runs
        first — a bad target is refused with nothing queued — and again when it runs."""
        options = body.model_dump(exclude={"vm", "point", "mode", "from_vault"})
        options["directory"] = server_path(body.directory, "directory")
        job = services.queue.submit_restore(
            body.vm, body.point, body.mode, from_vault=body.from_vault, origin="api", **options
        )
        return documents.job_doc(job)

    @router.post(
        "/restore-tests",
        status_code=202,
        response_model=JobDoc,
        responses=queued("/id"),
        dependencies=OPERATOR,
    )
    def restore_test(body: RestoreTestRequest) -> dict[str, Any]:
        return documents.job_doc(
            services.queue.submit_restore_test(
                body.vm, body.point, origin="api", from_vault=body.from_vault
            )
        )

    return router
