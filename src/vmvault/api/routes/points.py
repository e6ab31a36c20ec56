"""``/points``: recovery points — list, show, delete, pin; soft-deleted ones listed and
undeleted (docs/soft-delete.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.models import DeletedPointDoc, JobDoc, LockedPointDoc, PointDoc, PurgedDoc
from vmvault.api.requests import PinRequest, PointLock, PurgeRequest, UndeleteRequest
from vmvault.api.routes.approvals import HELD
from vmvault.api.routes.common import (
    CONTRIBUTOR,
    PAGE,
    PREFIX,
    READER,
    Limit,
    Offset,
    paged,
    set_total,
)
from vmvault.bootstrap import Services
from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import page_of


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["points"])

    def shown(point_id: str) -> dict[str, Any]:
        p = services.point_listing.get(point_id)
        return documents.point_doc(p, services.point_listing.holders([p.id]).get(p.id))

    @router.get(
        "/points",
        response_model=list[PointDoc],
        responses={**paged("points"), **responses(404)},
        dependencies=READER,
    )
    def points(
        response: Response,
        vault: str | None = None,
        vm: str | None = None,
        set_id: Annotated[
            str | None, Query(alias="set", description="only this backup set's points (alone)")
        ] = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
    ) -> list[dict[str, Any]]:
        """The points a vault holds (own and copies; a VM's in every vault when no vault is
        named; a backup set's), newest first, ``limit`` of them after ``offset``; the header
        X-Total-Count says how many match."""
        if set_id is not None:
            if vault is not None or vm is not None:
                raise InvalidInput("a set's points are listed whole: no vm, no vault", what="set")
            listed, total = page_of(services.backup_sets.points(set_id), limit, offset)
            held = services.point_listing.where_held(listed)
        else:
            found = services.point_listing.page(vault, vm, limit, offset)
            listed, total, held = found.points, found.total, found.held
        set_total(response, total)
        return [documents.point_doc(p, held.get(p.id)) for p in listed]

    @router.get(
        "/points/deleted",
        response_model=list[DeletedPointDoc],
        responses={**paged("soft-deleted points"), **responses(404)},
        dependencies=READER,
    )
    def deleted(
        response: Response,
        vault: str | None = None,
        vm: str | None = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
    ) -> list[dict[str, Any]]:
        """The vault's soft-deleted points (own and copies), newest first, each with when it
        was deleted and when GC purges it (``points list --deleted``), ``limit`` of them after
        ``offset``; X-Total-Count: how many. Declared before ``/points/{point_id}``: no point
        id is ``deleted``."""
        found, total = page_of(services.soft_delete.deleted(vault, vm)[1], limit, offset)
        set_total(response, total)
        return [documents.deleted_point_doc(h.point, h.vault, h.deleted) for h in found]

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

    @router.post(
        "/points/{point_id}/lock",
        response_model=LockedPointDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def lock(point_id: str, body: PointLock) -> dict[str, Any]:
        """Lengthen the point's retain-until (``points lock``): never earlier
        (``RETENTION_SHORTENED``); retention keeps it until then too (docs/immutability.md).
        ``objects_held``: how many of its objects the vault's storage holds now."""
        p, held = services.immutability.lock_point(point_id, body.keep_until)
        return documents.locked_point_doc(p, services.point_listing.holders([p.id]).get(p.id), held)

    @router.post(
        "/points/{point_id}/undelete",
        response_model=list[DeletedPointDoc],
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def undelete(point_id: str, body: UndeleteRequest | None = None) -> list[dict[str, Any]]:
        """Restore the point's soft-deleted holding in ``vault`` (default: every vault where
        it is soft-deleted) to normal; answers what was undeleted, as it was."""
        back = services.soft_delete.undelete(point_id, body.vault if body else None)
        return [documents.deleted_point_doc(h.point, h.vault, h.deleted) for h in back]

    @router.post(
        "/points/{point_id}/purge",
        response_model=list[PurgedDoc],
        responses={**HELD, **responses(404, 409)},
    )
    def purge(
        point_id: str,
        who: Annotated[Principal, needs(Role.CONTRIBUTOR)],
        body: PurgeRequest | None = None,
    ) -> list[dict[str, Any]]:
        """Purge the point's soft-deleted holding in ``vault`` (default: every vault where it
        is soft-deleted) before its period ends; held for approval where the vault's
        approvals are on (202, docs/approvals.md)."""
        gone = services.soft_delete.purge_point(point_id, body.vault if body else None, by=who)
        return [documents.purged_doc(r) for r in gone]

    return router
