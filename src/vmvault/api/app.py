"""The REST API (``/api/v1``), served by ``vmvault serve``.

Bodies are the documents of :mod:`vmvault.documents` — the same as the CLI's ``--json``.
Operations that take time are *queued* (``202 Accepted`` with the queued jobs); watch them
with ``GET /api/v1/jobs/{id}`` and stop them with ``POST /api/v1/jobs/{id}/cancel``.

Errors are ``{"error": {"code", "message", "remedy"}}`` with a status derived from the
error: ``404`` for what does not exist, ``409`` for a conflict with an active job or a state,
``400`` for other bad input, ``500`` for failures.  No traceback ever leaves the server.

Endpoints are plain ``def``: FastAPI runs them in its thread pool, each call opens its own
catalog transactions, so a slow request never blocks the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vmvault import __version__, documents
from vmvault.bootstrap import Services
from vmvault.domain.errors import InternalError, InvalidInput, VmvaultError
from vmvault.domain.job import JobState, JobType, parse_since
from vmvault.domain.vm import VmState

CONFLICTS = {
    "OPERATION_IN_PROGRESS",
    "DISCOVERY_IN_PROGRESS",
    "JOB_NOT_ACTIVE",
    "VM_PROTECTED",
    "WRONG_PROTECTION_STATE",
    "ALREADY_REGISTERED",
    "POLICY_IN_USE",
    "NAME_IN_USE",
}


def status_for(error: VmvaultError) -> int:
    if error.code.endswith("_NOT_FOUND"):
        return 404
    if error.code in CONFLICTS:
        return 409
    return 400 if error.kind == "usage" else 500


class BackupRequest(BaseModel):
    vms: list[str] = Field(description="VM references: uuid, NAME, HOST/NAME or GROUP/NAME")
    vault: str | None = None
    keep_until: datetime | None = Field(
        None, description="retention leaves the points alone until then"
    )


class VerifyRequest(BaseModel):
    vault: str | None = None
    point: str | None = None
    vm: str | None = None


class VaultRequest(BaseModel):
    vault: str | None = None


class RestoreTestRequest(BaseModel):
    vm: str
    point: str


def _enum(
    kind: type[JobType] | type[JobState] | type[VmState], value: str | None, what: str
) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise InvalidInput(f"use one of {choices}", what=f"{what} '{value}'") from None


def create_app(
    services: Services, liveness: Callable[[], dict[str, dict[str, Any]]] | None = None
) -> FastAPI:
    """The app; ``liveness`` reports the server's components for ``/api/v1/health``
    (``vmvault serve`` passes its own), each ``{"status": "up" | "down", ...}``."""
    app = FastAPI(
        title="vmvault",
        version=__version__,
        description="Backups of libvirt/QEMU virtual machines: vault, policies, jobs.",
    )

    @app.exception_handler(VmvaultError)
    def _error(_request: Request, exc: VmvaultError) -> JSONResponse:
        return JSONResponse({"error": exc.as_dict()}, status_code=status_for(exc))

    @app.exception_handler(Exception)
    def _internal(_request: Request, exc: Exception) -> JSONResponse:
        err = InternalError(f"{type(exc).__name__}: {exc}")
        return JSONResponse({"error": err.as_dict()}, status_code=500)

    @app.get("/api/v1/health", responses={503: {"description": "a component is down"}})
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

    @app.get("/api/v1/dashboard")
    def dashboard(vault: str | None = None) -> dict[str, Any]:
        return documents.dashboard_doc(services.dashboard.summary(vault))

    @app.get("/api/v1/vaults")
    def vaults() -> list[dict[str, Any]]:
        return [documents.vault_doc(v) for v in services.vaults.list_vaults()]

    @app.get("/api/v1/vms")
    def vms(vault: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        found = services.inventory.list_vms(vault, _enum(VmState, state, "state"))
        return [documents.vm_doc(vm) for vm in found]

    @app.get("/api/v1/vms/{ref:path}")
    def vm(ref: str) -> dict[str, Any]:
        return documents.vm_doc(services.inventory.find(ref))

    @app.get("/api/v1/points")
    def points(vault: str | None = None, vm: str | None = None) -> list[dict[str, Any]]:
        return [documents.point_doc(p) for p in services.points.list_points(vault, vm)]

    @app.get("/api/v1/points/{point_id}")
    def point(point_id: str) -> dict[str, Any]:
        return documents.point_doc(services.points.get(point_id))

    @app.get("/api/v1/policies")
    def policies(vault: str | None = None) -> list[dict[str, Any]]:
        return [documents.policy_doc(v) for v in services.policies.list_policies(vault)]

    @app.get("/api/v1/policies/{name}")
    def policy(name: str) -> dict[str, Any]:
        return documents.policy_doc(services.policies.get(name))

    @app.get("/api/v1/jobs")
    def jobs(
        type: str | None = None,
        status: str | None = None,
        vm: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        uuid = services.inventory.find(vm).uuid if vm else None
        found = services.jobs.list_jobs(
            job_type=_enum(JobType, type, "job type"),
            state=_enum(JobState, status, "job state"),
            since=parse_since(since) if since else None,
            vm_uuid=uuid,
        )
        return [documents.job_doc(j) for j in found]

    @app.get("/api/v1/jobs/{job_id}")
    def job(job_id: int) -> dict[str, Any]:
        found, log = services.jobs.show(job_id)
        return documents.job_doc(found, log)

    @app.post("/api/v1/jobs/{job_id}/cancel", status_code=202)
    def cancel(job_id: int) -> dict[str, Any]:
        return documents.job_doc(services.jobs.cancel(job_id))

    @app.post("/api/v1/backups", status_code=202)
    def backup(body: BackupRequest) -> list[dict[str, Any]]:
        queued = services.queue.submit_backup(body.vault, body.vms, body.keep_until, origin="api")
        return [documents.job_doc(j) for j in queued]

    @app.post("/api/v1/verify", status_code=202)
    def verify(body: VerifyRequest) -> dict[str, Any]:
        job = services.queue.submit_verify(
            body.vault, point_id=body.point, vm_ref=body.vm, origin="api"
        )
        return documents.job_doc(job)

    @app.post("/api/v1/gc", status_code=202)
    def gc(body: VaultRequest) -> dict[str, Any]:
        return documents.job_doc(services.queue.submit_gc(body.vault, origin="api"))

    @app.post("/api/v1/restore-tests", status_code=202)
    def restore_test(body: RestoreTestRequest) -> dict[str, Any]:
        return documents.job_doc(
            services.queue.submit_restore_test(body.vm, body.point, origin="api")
        )

    return app
