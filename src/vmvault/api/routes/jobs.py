"""``/jobs``: every operation's job — a filtered, paged list; one with its log; cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import JobDoc, JobOutcomeDoc, JobWithLogDoc
from vmvault.api.routes.common import (
    OPERATOR,
    PAGE,
    PREFIX,
    READER,
    JobId,
    Limit,
    Offset,
    paged,
    queued,
    set_total,
)
from vmvault.bootstrap import Services
from vmvault.domain.errors import InvalidInput
from vmvault.domain.job import JobState, JobType, parse_since


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["jobs"])

    @router.get(
        "/jobs",
        response_model=list[JobDoc],
        responses={**paged("jobs"), **responses(404)},
        dependencies=READER,
    )
    def jobs(
        response: Response,
        type: JobType | None = None,
        state: JobState | None = None,
        vm: str | None = None,
        vault: Annotated[str | None, Query(description="only this vault's jobs")] = None,
        since: Annotated[
            str | None, Query(description="only jobs created this long ago or later: 24h, 7d…")
        ] = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
        status: Annotated[
            JobState | None, Query(deprecated=True, description="the old name of state")
        ] = None,
    ) -> list[dict[str, Any]]:
        """Jobs newest first, ``limit`` of them after ``offset``; the header X-Total-Count
        says how many match."""
        if status is not None and state is not None and status is not state:
            raise InvalidInput("state and its old name status disagree", what="query.status")
        state = state or status
        window = parse_since(since) if since else None
        uuid = services.inventory.find(vm).uuid if vm else None
        name = services.vaults.resolve(vault).name if vault else None  # 404 if unknown
        found = services.jobs.list_jobs(
            type, state, window, uuid, limit=limit, offset=offset, vault=name
        )
        total = services.jobs.count_jobs(type, state, window, uuid, vault=name)
        set_total(response, total)
        return [documents.job_doc(j) for j in found]

    @router.get(
        "/jobs/{job_id}",
        response_model=JobWithLogDoc,
        responses=responses(404),
        operation_id="show_job",
        dependencies=READER,
    )
    def job(job_id: JobId) -> dict[str, Any]:
        found, log = services.jobs.show(job_id)
        return documents.job_doc(found, log)

    @router.get(
        "/jobs/{job_id}/outcome",
        response_model=JobOutcomeDoc,
        responses=responses(404),
        dependencies=READER,
    )
    def outcome(job_id: JobId) -> dict[str, Any]:
        """What the server's run of a queued job returned beyond the job (the VM a restore
        defined, GC's counts …: vmvault/outcomes.py), once the run is over (``recorded``)."""
        job, recorded, doc = services.job_outcomes.get(job_id)
        return {"id": job.id, "recorded": recorded, "outcome": doc}

    @router.post(
        "/jobs/{job_id}/cancel",
        status_code=202,
        response_model=JobDoc,
        responses=queued("/id"),
        operation_id="cancel_job",
        dependencies=OPERATOR,
    )
    def cancel(job_id: JobId) -> dict[str, Any]:
        return documents.job_doc(services.jobs.cancel(job_id))

    return router
