"""``/points``: recovery points — list, show, delete, pin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import JobDoc, PointDoc
from vmvault.api.requests import PinRequest
from vmvault.api.routes.common import CONTRIBUTOR, PREFIX, READER
from vmvault.bootstrap import Services


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["points"])

    def shown(point_id: str) -> dict[str, Any]:
        p = services.points.get(point_id)
        return documents.point_doc(p, services.points.holders([p.id]).get(p.id))

    @router.get(
        "/points", response_model=list[PointDoc], responses=responses(404), dependencies=READER
    )
    def points(vault: str | None = None, vm: str | None = None) -> list[dict[str, Any]]:
        listed = services.points.list_points(vault, vm)
        held = services.points.holders([p.id for p in listed])
        return [documents.point_doc(p, held.get(p.id)) for p in listed]

    @router.get(
        "/points/{point_id}", response_model=PointDoc, responses=responses(404), dependencies=READER
    )
    def point(point_id: str) -> dict[str, Any]:
        return shown(point_id)

    @router.delete(
        "/points/{point_id}",
        response_model=JobDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def delete_point(point_id: str, vault: str | None = None) -> dict[str, Any]:
        """Delete the point from every vault holding it, or from ``vault`` only (a prune
        job, inline); its unshared chunks go at each vault's next GC."""
        return documents.job_doc(services.points.delete_point(point_id, vault).job)

    @router.post(
        "/points/{point_id}/protect",
        response_model=PointDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def pin(point_id: str, body: PinRequest) -> dict[str, Any]:
        """Pin (``protected: true``: retention never removes it) or unpin a point."""
        services.protection.pin(point_id, body.protected)
        return shown(point_id)

    return router
