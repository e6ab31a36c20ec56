"""``/backups`` and ``/copies``: queued backups (one VM, or a set) and copies to a second
vault."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.models import JobDoc
from vmvault.api.requests import BackupRequest, CopyRequest
from vmvault.api.routes.common import OPERATOR, PREFIX, queued
from vmvault.bootstrap import Services
from vmvault.domain.errors import InvalidInput


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["backups"])

    @router.post(
        "/backups",
        status_code=202,
        response_model=list[JobDoc],
        responses=queued("/0/id"),
        dependencies=OPERATOR,
    )
    def backup(body: BackupRequest) -> list[dict[str, Any]]:
        if body.set:  # one set job (docs/sets.md)
            if body.require is not None:
                raise InvalidInput(
                    "a backup set takes each VM's policy's requirement, not its own",
                    what="require with set",
                )
            job = services.queue.submit_backup_set(body.vault, body.vms, body.keep_until, "api")
            return [documents.job_doc(job)]
        jobs = services.queue.submit_backup(
            body.vault, body.vms, body.keep_until, origin="api", require=body.require
        )
        return [documents.job_doc(j) for j in jobs]

    @router.post(
        "/copies",
        status_code=202,
        response_model=list[JobDoc],
        responses=queued("/0/id"),
        dependencies=OPERATOR,
    )
    def copy(body: CopyRequest) -> list[dict[str, Any]]:
        """One copy job per VM (all or none), queued: only the chunks ``to_vault`` lacks
        travel (docs/copies.md)."""
        jobs = services.queue.submit_copy(
            body.from_vault, body.to_vault, body.vms, body.all, origin="api"
        )
        return [documents.job_doc(j) for j in jobs]

    return router
