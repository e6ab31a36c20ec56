"""``/hosts``: the libvirt hosts of each location."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import DeletedDoc, HostDoc
from vmvault.api.requests import HostCreate, HostUpdate
from vmvault.api.routes.common import CONTRIBUTOR, PREFIX, READER
from vmvault.bootstrap import Services


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["hosts"])

    @router.get("/hosts", response_model=list[HostDoc], responses=responses(), dependencies=READER)
    def hosts(location: str | None = None) -> list[dict[str, Any]]:
        return [documents.host_doc(h) for h in services.vaults.list_hosts(location)]

    @router.post(
        "/hosts",
        status_code=201,
        response_model=HostDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def add_host(body: HostCreate) -> dict[str, Any]:
        """Add a libvirt host to a location (``check``: it must answer first)."""
        return documents.host_doc(services.vaults.add_host(body.uri, body.location, body.check))

    @router.patch(
        "/hosts/{uri:path}",
        response_model=HostDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def update_host(uri: str, body: HostUpdate) -> dict[str, Any]:
        """Mark or unmark VMs a cluster manager owns (never paused, shut off or replaced)."""
        host = services.inventory.update_host(uri, body.cluster_managed, body.not_cluster_managed)
        return documents.host_doc(host)

    @router.delete(
        "/hosts/{uri:path}",
        response_model=DeletedDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def remove_host(uri: str) -> dict[str, str]:
        services.vaults.remove_host(uri)
        return {"deleted": uri}

    return router
