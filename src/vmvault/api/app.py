"""The REST API (``/api/v1``), served by ``vmvault serve``.

Bodies are the documents of :mod:`vmvault.documents` — the same as the CLI's ``--json``.
Operations that take time are *queued* (``202 Accepted`` with the queued jobs); watch them
with ``GET /api/v1/jobs/{id}`` and stop them with ``POST /api/v1/jobs/{id}/cancel``.

Errors are ``{"error": {"code", "message", "remedy"}}`` with a status derived from the
error's code, validation errors and unknown routes included (:mod:`vmvault.api.errors`);
every route declares its statuses and its response model (:mod:`vmvault.api.models`) in
``/openapi.json``.  No traceback and no request body ever leaves the server.

Endpoints are plain ``def``: FastAPI runs them in its thread pool, each call opens its own
catalog transactions, so a slow request never blocks the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import JSONResponse

from vmvault import __version__, documents, web
from vmvault.api import errors
from vmvault.api.auth import Authenticate, needs
from vmvault.api.errors import responses
from vmvault.api.models import (
    BackupRequest,
    DashboardDoc,
    HealthDoc,
    JobDoc,
    JobWithLogDoc,
    PointDoc,
    PolicyDoc,
    RestoreTestRequest,
    VaultDoc,
    VaultRequest,
    VerifyRequest,
    VmDoc,
)
from vmvault.bootstrap import Services
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import MAX_INT64
from vmvault.domain.job import JobState, JobType, parse_since
from vmvault.domain.vm import VmState

#: Job ids are SQLite integers: anything outside is refused as bad input, not looked up.
JobId = Annotated[int, Path(ge=1, le=MAX_INT64, description="a job id")]


def _queued(pointer: str) -> dict[int | str, dict[str, Any]]:
    """The responses of a route that queues a job: its errors, and OpenAPI links from the
    job's id (at JSON ``pointer`` in the 202 body) to showing and cancelling it."""
    link = {"parameters": {"job_id": f"$response.body#{pointer}"}}
    links = {
        "ShowJob": {"operationId": "show_job", **link},
        "CancelJob": {"operationId": "cancel_job", **link},
    }
    return {202: {"description": "Queued", "links": links}, **responses(404, 409)}


def create_app(
    services: Services,
    liveness: Callable[[], dict[str, dict[str, Any]]] | None = None,
    *,
    authenticate: Authenticate,
) -> FastAPI:
    """The app; ``liveness`` reports the server's components for ``/api/v1/health``
    (``vmvault serve`` passes its own), each ``{"status": "up" | "down", ...}``;
    ``authenticate`` says who holds a token (:mod:`vmvault.api.auth`)."""
    app = FastAPI(
        title="vmvault",
        version=__version__,
        description="Backups of libvirt/QEMU virtual machines: vault, policies, jobs.",
    )

    errors.install(app)
    app.state.authenticate = authenticate
    reader, operator = [needs(Role.READER)], [needs(Role.OPERATOR)]

    @app.get(
        "/api/v1/health",
        response_model=HealthDoc,
        responses={
            503: {"model": HealthDoc, "description": "A component is down"},
            **responses(auth=False),
        },
    )
    def health() -> JSONResponse:
        """Liveness of each component (the server's, then the API's and the catalog's): 200
        when all are up, else 503 with the same body (see docs/server.md)."""
        components = dict(liveness()) if liveness else {}
        components["api"] = {"status": "up"}
        doc: dict[str, Any] = {"status": "ok", "version": __version__}
        doc |= {"jobs_running": None, "jobs_queued": None}
        try:
            doc["jobs_running"] = len(services.jobs.list_jobs(state=JobState.IN_PROGRESS))
            doc["jobs_queued"] = len(services.jobs.list_jobs(state=JobState.QUEUED))
            components["catalog"] = {"status": "up"}
        except Exception as exc:
            components["catalog"] = {"status": "down", "problem": f"{type(exc).__name__}: {exc}"}
        down = sorted(name for name, c in components.items() if c["status"] != "up")
        if down:
            doc["status"], doc["down"] = "down", down
        doc["components"] = components
        return JSONResponse(doc, status_code=503 if down else 200)

    @app.get(
        "/api/v1/dashboard",
        response_model=DashboardDoc,
        responses=responses(404),
        dependencies=reader,
    )
    def dashboard(vault: str | None = None) -> dict[str, Any]:
        return documents.dashboard_doc(services.dashboard.summary(vault))

    @app.get(
        "/api/v1/vaults", response_model=list[VaultDoc], responses=responses(), dependencies=reader
    )
    def vaults() -> list[dict[str, Any]]:
        return [documents.vault_doc(v) for v in services.vaults.list_vaults()]

    @app.get(
        "/api/v1/vms", response_model=list[VmDoc], responses=responses(404), dependencies=reader
    )
    def vms(vault: str | None = None, state: VmState | None = None) -> list[dict[str, Any]]:
        found = services.inventory.list_vms(vault, state)
        return [documents.vm_doc(vm) for vm in found]

    @app.get(
        "/api/v1/vms/{ref:path}",
        response_model=VmDoc,
        responses=responses(404),
        dependencies=reader,
    )
    def vm(ref: str) -> dict[str, Any]:
        return documents.vm_doc(services.inventory.find(ref))

    @app.get(
        "/api/v1/points",
        response_model=list[PointDoc],
        responses=responses(404),
        dependencies=reader,
    )
    def points(vault: str | None = None, vm: str | None = None) -> list[dict[str, Any]]:
        listed = services.points.list_points(vault, vm)
        held = services.points.holders([p.id for p in listed])
        return [documents.point_doc(p, held.get(p.id)) for p in listed]

    @app.get(
        "/api/v1/points/{point_id}",
        response_model=PointDoc,
        responses=responses(404),
        dependencies=reader,
    )
    def point(point_id: str) -> dict[str, Any]:
        p = services.points.get(point_id)
        return documents.point_doc(p, services.points.holders([p.id]).get(p.id))

    @app.get(
        "/api/v1/policies",
        response_model=list[PolicyDoc],
        responses=responses(404),
        dependencies=reader,
    )
    def policies(vault: str | None = None) -> list[dict[str, Any]]:
        return [documents.policy_doc(v) for v in services.policies.list_policies(vault)]

    @app.get(
        "/api/v1/policies/{name}",
        response_model=PolicyDoc,
        responses=responses(404),
        dependencies=reader,
    )
    def policy(name: str) -> dict[str, Any]:
        return documents.policy_doc(services.policies.get(name))

    @app.get(
        "/api/v1/jobs", response_model=list[JobDoc], responses=responses(404), dependencies=reader
    )
    def jobs(
        type: JobType | None = None,
        status: JobState | None = None,
        vm: str | None = None,
        since: Annotated[
            str | None, Query(description="only jobs created this long ago or later: 24h, 7d…")
        ] = None,
    ) -> list[dict[str, Any]]:
        uuid = services.inventory.find(vm).uuid if vm else None
        found = services.jobs.list_jobs(
            job_type=type,
            state=status,
            since=parse_since(since) if since else None,
            vm_uuid=uuid,
        )
        return [documents.job_doc(j) for j in found]

    @app.get(
        "/api/v1/jobs/{job_id}",
        response_model=JobWithLogDoc,
        responses=responses(404),
        operation_id="show_job",
        dependencies=reader,
    )
    def job(job_id: JobId) -> dict[str, Any]:
        found, log = services.jobs.show(job_id)
        return documents.job_doc(found, log)

    @app.post(
        "/api/v1/jobs/{job_id}/cancel",
        status_code=202,
        response_model=JobDoc,
        responses=_queued("/id"),
        operation_id="cancel_job",
        dependencies=operator,
    )
    def cancel(job_id: JobId) -> dict[str, Any]:
        return documents.job_doc(services.jobs.cancel(job_id))

    @app.post(
        "/api/v1/backups",
        status_code=202,
        response_model=list[JobDoc],
        responses=_queued("/0/id"),
        dependencies=operator,
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
        queued = services.queue.submit_backup(
            body.vault, body.vms, body.keep_until, origin="api", require=body.require
        )
        return [documents.job_doc(j) for j in queued]

    @app.post(
        "/api/v1/verify",
        status_code=202,
        response_model=JobDoc,
        responses=_queued("/id"),
        dependencies=operator,
    )
    def verify(body: VerifyRequest | None = None) -> dict[str, Any]:
        body = body or VerifyRequest()
        job = services.queue.submit_verify(
            body.vault, point_id=body.point, vm_ref=body.vm, origin="api"
        )
        return documents.job_doc(job)

    @app.post(
        "/api/v1/gc",
        status_code=202,
        response_model=JobDoc,
        responses=_queued("/id"),
        dependencies=operator,
    )
    def gc(body: VaultRequest | None = None) -> dict[str, Any]:
        body = body or VaultRequest()
        return documents.job_doc(services.queue.submit_gc(body.vault, origin="api"))

    @app.post(
        "/api/v1/restore-tests",
        status_code=202,
        response_model=JobDoc,
        responses=_queued("/id"),
        dependencies=operator,
    )
    def restore_test(body: RestoreTestRequest) -> dict[str, Any]:
        return documents.job_doc(
            services.queue.submit_restore_test(body.vm, body.point, origin="api")
        )

    web.mount(app)
    return app
