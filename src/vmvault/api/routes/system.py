"""``/dashboard`` and ``/errors``: the numbers of a vault, and the error catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import DashboardDoc, ErrorCatalogDoc
from vmvault.api.routes.common import PREFIX, READER, Limit, Offset
from vmvault.bootstrap import Services
from vmvault.domain.inputs import ATTENTION_PAGE


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["system"])

    @router.get(
        "/dashboard", response_model=DashboardDoc, responses=responses(404), dependencies=READER
    )
    def dashboard(
        vault: str | None = None, limit: Limit = ATTENTION_PAGE, offset: Offset = 0
    ) -> dict[str, Any]:
        """VM and job counts, VMs needing attention (how many, and ``limit`` of them after
        ``offset``), storage, and the last 14 days."""
        return documents.dashboard_doc(services.dashboard.summary(vault, limit, offset))

    @router.get(
        "/errors", response_model=list[ErrorCatalogDoc], responses=responses(), dependencies=READER
    )
    def error_catalog() -> list[dict[str, str]]:
        """Every error code the API and CLI can report, with its message and remedy."""
        return documents.error_catalog()

    return router
