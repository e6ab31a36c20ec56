"""``/vaults``: where recovery points live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import AttachDoc, VaultDoc, VaultShowDoc
from vmvault.api.requests import VaultAttach, VaultCreate, VaultUpdate
from vmvault.api.routes.common import CONTRIBUTOR, PREFIX, READER, server_path
from vmvault.bootstrap import Services
from vmvault.domain.vault import s3_location


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["vaults"])

    @router.get(
        "/vaults", response_model=list[VaultDoc], responses=responses(), dependencies=READER
    )
    def vaults() -> list[dict[str, Any]]:
        return [documents.vault_doc(v) for v in services.vaults.list_vaults()]

    @router.get(
        "/vaults/{name}",
        response_model=VaultShowDoc,
        responses=responses(404),
        dependencies=READER,
    )
    def vault(name: str) -> dict[str, Any]:
        """A vault, its location's hosts and its VMs by state (as ``vault show``)."""
        return documents.vault_summary_doc(services.vaults.show(name))

    @router.post(
        "/vaults",
        status_code=201,
        response_model=VaultDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def create_vault(body: VaultCreate) -> dict[str, Any]:
        """Create a vault in a directory of the server or, with ``s3``, in a bucket."""
        s3 = None
        if body.s3 is not None:
            b = body.s3
            creds = server_path(b.credentials_file, "s3.credentials_file")
            s3 = s3_location(b.endpoint, b.bucket, b.prefix, b.region, creds)
        created = services.vaults.create(
            body.name,
            body.location,
            server_path(body.path, "path"),
            encrypt=body.encrypt,
            key_file=server_path(body.key_file, "key_file"),
            chunk_size=body.chunk_size,
            zstd_level=body.compression_level,
            s3=s3,
        )
        return documents.vault_doc(created)

    @router.post(
        "/vaults/attach",
        status_code=201,
        response_model=AttachDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def attach_vault(body: VaultAttach) -> dict[str, Any]:
        """Attach an existing vault (``vault attach``): its VMs and points rebuilt from the
        manifests in its storage (docs/disaster-recovery.md)."""
        s3 = None
        if body.s3 is not None:
            b = body.s3
            creds = server_path(b.credentials_file, "s3.credentials_file")
            s3 = s3_location(b.endpoint, b.bucket, b.prefix, b.region, creds)
        report = services.vault_attach.attach(
            body.name,
            body.location,
            server_path(body.path, "path"),
            s3,
            paper_key=body.paper_key,
            key_file=server_path(body.key_file, "key_file"),
        )
        return documents.attach_doc(report)

    @router.patch(
        "/vaults/{name}",
        response_model=VaultDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def update_vault(name: str, body: VaultUpdate) -> dict[str, Any]:
        """Change the vault's soft delete (``vault update``): ``always`` can never be
        turned off again (``SOFT_DELETE_ALWAYS_ON``)."""
        return documents.vault_doc(
            services.soft_delete.update_vault(name, body.soft_delete, body.soft_delete_days)
        )

    return router
