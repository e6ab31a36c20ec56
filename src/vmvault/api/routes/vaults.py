"""``/vaults``: where recovery points live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import VaultDoc, VaultShowDoc
from vmvault.api.requests import VaultCreate, VaultUpdate
from vmvault.api.routes.common import CONTRIBUTOR, PREFIX, READER, server_path
from vmvault.bootstrap import Services
from vmvault.domain.errors import InvalidInput
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
            s3 = s3_location(
                b.endpoint, b.bucket, b.prefix, b.region, creds, b.object_lock, b.lock_mode
            )
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

    @router.patch(
        "/vaults/{name}",
        response_model=VaultDoc,
        responses=responses(404, 409),
        dependencies=CONTRIBUTOR,
    )
    def update_vault(name: str, body: VaultUpdate) -> dict[str, Any]:
        """Change the vault's soft delete or its immutability (``vault update``), one of the
        two per request: soft delete ``always`` can never be turned off again
        (``SOFT_DELETE_ALWAYS_ON``), nor a locked immutability (``IMMUTABLE_LOCKED``)."""
        immutable = body.immutable is not None or body.lock
        if immutable and (body.soft_delete is not None or body.soft_delete_days is not None):
            raise InvalidInput(
                "change soft delete and immutability in separate requests", what="the body"
            )
        if immutable:
            return documents.vault_doc(
                services.immutability.update_vault(name, body.immutable, body.lock)
            )
        return documents.vault_doc(
            services.soft_delete.update_vault(name, body.soft_delete, body.soft_delete_days)
        )

    return router
