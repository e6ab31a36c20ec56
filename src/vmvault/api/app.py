"""The REST API (``/api/v1``), served by ``vmvault serve``.

Bodies are the documents of :mod:`vmvault.documents` — the same as the CLI's ``--json``.
Operations that take time are *queued* (``202 Accepted`` with the queued jobs); watch them
with ``GET /api/v1/jobs/{id}`` and stop them with ``POST /api/v1/jobs/{id}/cancel``.

Errors are ``{"error": {"code", "message", "remedy"}}`` with a status derived from the
error's code, validation errors and unknown routes included (:mod:`vmvault.api.errors`);
every route declares its statuses and its response model (:mod:`vmvault.api.models`) in
``/openapi.json``.  No traceback and no request body ever leaves the server.

The routes live in :mod:`vmvault.api.routes`, one module per group, each declaring the role
it needs (:mod:`vmvault.api.auth`); this module builds the app and serves ``/api/v1/health``
(no token needed).
``/metrics`` and its request counter are installed by routes/metrics.py (docs/metrics.md).

Endpoints are plain ``def``: FastAPI runs them in its thread pool, each call opens its own
catalog transactions, so a slow request never blocks the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from vmvault import __version__, web
from vmvault.api import audit_trail, errors
from vmvault.api.auth import Authenticate
from vmvault.api.errors import responses
from vmvault.api.models import HealthDoc
from vmvault.api.routes import (
    admin,
    approvals,
    backups,
    files,
    hosts,
    jobs,
    maintenance,
    metrics,
    notifications,
    points,
    policies,
    protection,
    restores,
    system,
    vaults,
    vms,
)
from vmvault.bootstrap import Services
from vmvault.domain.job import JobState

log = logging.getLogger("vmvault.api")

#: The route groups, in the order of the OpenAPI document.
GROUPS = (system, vaults, hosts, vms, policies, protection, backups, jobs, points, files, restores,
          maintenance, admin, notifications, approvals)  # fmt: skip


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
    approvals.install(app)  # a held call is answered 202 with its request
    app.add_middleware(
        audit_trail.AuditTrail, record=services.audit.record, authenticate=authenticate
    )
    app.state.authenticate = authenticate
    metrics.install(app, services)  # /metrics and the API request counter

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
            doc["jobs_running"] = services.jobs.count_jobs(state=JobState.IN_PROGRESS)
            doc["jobs_queued"] = services.jobs.count_jobs(state=JobState.QUEUED)
            components["catalog"] = {"status": "up"}
        except Exception:
            # no token is needed here: the exception's text (a path, a database URL) stays
            # in the server's log
            log.exception("health: the catalog did not answer")
            components["catalog"] = {"status": "down", "problem": "the catalog did not answer"}
        down = sorted(name for name, c in components.items() if c["status"] != "up")
        if down:
            doc["status"], doc["down"] = "down", down
        doc["components"] = components
        return JSONResponse(doc, status_code=503 if down else 200)

    for group in GROUPS:
        app.include_router(group.routes(services))
    web.mount(app)
    return app
