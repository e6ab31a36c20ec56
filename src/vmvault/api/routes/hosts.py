"""``/hosts``: the libvirt hosts of each location."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import DeletedDoc, HostDoc
from vmvault.api.requests import HostCreate, HostUpdate
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


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["hosts"])

    @router.get(
        "/hosts",
        response_model=list[HostDoc],
        responses={**paged("hosts"), **responses()},
        dependencies=READER,
    )
    def hosts(
        response: Response, location: str | None = None, limit: Limit = PAGE, offset: Offset = 0
    ) -> list[dict[str, Any]]:
        """The hosts by location and URI, ``limit`` of them after ``offset``; the header
        X-Total-Count says how many match."""
        found, total = services.vaults.hosts_page(location, limit, offset)
        set_total(response, total)
        return [documents.host_doc(h) for h in found]

    @router.post(
        "/hosts",
        status_code=201,
        response_model=HostDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def add_host(body: HostCreate) -> dict[str, Any]:
        """Add a libvirt host to a location (``check``: it must answer first; ``pull_tls``:
        backed up by pulling over NBD with TLS, docs/deployment.md)."""
        added = services.vaults.add_host(
            body.uri, body.location, body.check, pull_tls=body.pull_tls
        )
        return documents.host_doc(added)

    @router.patch(
        "/hosts/{uri:path}",
        response_model=HostDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def update_host(uri: str, body: HostUpdate) -> dict[str, Any]:
        """Mark or unmark VMs a cluster manager owns (never paused, shut off or replaced);
        set or change the directory of a pulled host (``pull_tls``), or back its VMs up by its
        own node again (``no_pull_tls``): 409 HOST_JOBS_ACTIVE while a job of its VMs runs
        (docs/deployment.md, "Switching a host")."""
        host = services.inventory.update_host(
            uri,
            body.cluster_managed,
            body.not_cluster_managed,
            pull_tls=body.pull_tls,
            no_pull_tls=body.no_pull_tls,
            check=body.check,
        )
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
