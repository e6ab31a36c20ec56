"""``/vaults``: where recovery points live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.models import AttachDoc, VaultDeletedDoc, VaultDoc, VaultShowDoc
from vmvault.api.requests import VaultAttach, VaultCreate, VaultUpdate
from vmvault.api.routes.approvals import HELD
from vmvault.api.routes.common import CONTRIBUTOR, PREFIX, READER, server_path
from vmvault.bootstrap import Services
from vmvault.domain.access import Principal, Role
from vmvault.domain.vault import SettingsChange, s3_location


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
        responses={**HELD, **responses(404, 409)},
    )
    def update_vault(
        name: str, body: VaultUpdate, who: Annotated[Principal, needs(Role.CONTRIBUTOR)]
    ) -> dict[str, Any]:
        """Change the vault's soft delete and approvals, or its immutability (``vault
        update``; immutability alone in its request): ``always`` can never be turned off again
        (``SOFT_DELETE_ALWAYS_ON``), nor a locked immutability (``IMMUTABLE_LOCKED``); turning
        soft delete off, shortening its days or weakening the approvals is held for approval
        where they are on (202, docs/approvals.md)."""
        change = SettingsChange(
            body.soft_delete, body.soft_delete_days,
            body.approvals, body.approval_delay_hours, body.approval_expiry_hours,
            body.immutable, body.lock,
        )  # fmt: skip
        vault = services.vault_settings.update(name, change, by=who)
        return documents.vault_doc(vault)

    @router.delete(
        "/vaults/{name}",
        response_model=VaultDeletedDoc,
        responses={**HELD, **responses(404, 409)},
    )
    def delete_vault(
        name: str,
        who: Annotated[Principal, needs(Role.CONTRIBUTOR)],
        with_points: bool = False,
    ) -> dict[str, Any]:
        """Delete the vault (``vault delete``): refused while VMs or policies use it
        (``VAULT_IN_USE``) or it holds points, unless ``with_points``; held for approval
        where its approvals are on (202)."""
        purged = services.vaults.delete(name, with_points=with_points, by=who)
        return {"deleted": name, "points_purged": purged}

    return router
