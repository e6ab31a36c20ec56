"""``/vms``: the VMs discovery found; discovery, registration, disks left out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import DiscoveryDoc, JobDoc, ProtectJobDoc, VmDoc
from vmvault.api.requests import RegisterRequest, VaultOnly, VmsRequest, VmUpdate
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
from vmvault.domain.vm import VmState
from vmvault.services.protection import ProtectResult


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["vms"])

    @router.get(
        "/vms",
        response_model=list[VmDoc],
        responses={**paged("VMs"), **responses(404)},
        dependencies=READER,
    )
    def vms(
        response: Response,
        vault: str | None = None,
        state: VmState | None = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
    ) -> list[dict[str, Any]]:
        """The VMs of the vault's location by name, ``limit`` of them after ``offset``; the
        header X-Total-Count says how many match."""
        found, total = services.inventory.list_vms(vault, state, limit, offset)
        set_total(response, total)
        return [documents.vm_doc(vm) for vm in found]

    @router.get(
        "/vms/{ref:path}", response_model=VmDoc, responses=responses(404), dependencies=READER
    )
    def vm(ref: str) -> dict[str, Any]:
        return documents.vm_doc(services.inventory.find(ref))

    @router.post(
        "/vms/discover",
        response_model=DiscoveryDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def discover(body: VaultOnly | None = None) -> dict[str, Any]:
        """Run a discovery job of the vault's location (inline); the finished job and the
        uuids of the VMs it found new, changed, unchanged and vanished."""
        vault = body.vault if body else None
        return documents.discovery_doc(services.inventory.discover(vault))

    @router.post(
        "/vms/register",
        response_model=list[JobDoc],
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def register(body: RegisterRequest) -> list[dict[str, Any]]:
        """One register job per VM (inline); the finished jobs."""
        outcomes = services.inventory.register(
            body.vault,
            body.vms,
            allow_crash_consistent=body.crash_consistent,
            exclude_disks=body.exclude_disks,
        )
        return [documents.job_doc(o.job) for o in outcomes]

    @router.post(
        "/vms/unregister",
        response_model=list[ProtectJobDoc],
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def unregister(body: VmsRequest) -> list[dict[str, Any]]:
        """One unregister job per VM that is not protected (inline); the finished jobs."""
        outcomes = services.protection.unregister(body.vault, body.vms)
        return documents.protect_docs(ProtectResult(outcomes, []))

    @router.patch(
        "/vms/{ref:path}",
        response_model=VmDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def update_vm(ref: str, body: VmUpdate) -> dict[str, Any]:
        """Change which disks the VM's backups leave out (from its next backup on)."""
        item = services.inventory.update_vm(ref, body.exclude_disks, body.include_disks)
        return documents.vm_doc(item)

    return router
