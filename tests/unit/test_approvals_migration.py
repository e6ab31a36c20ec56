"""Migration 0015 (approvals) on a catalog that already has a vault: the vault gets approvals
off (a 24-hour delay and a 72-hour expiry for when they are turned on), the requests' table
exists, and the migration goes down again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from tests.unit.old_catalog import catalog_with_an_old_vault
from vmvault.domain.approval import ApprovalSetting
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import alembic_config, open_catalog


def test_an_existing_vault_gets_approvals_off(tmp_path: Path) -> None:
    url = catalog_with_an_old_vault(tmp_path, "0013")
    engine = open_catalog(url)  # brings it to the head revision
    try:
        with SqlUnitOfWork(engine) as uow:
            vault = uow.vaults.get("old")
            assert uow.approvals.find() == []
        assert vault is not None and vault.approvals == ApprovalSetting()
        assert (vault.approvals.delay_hours, vault.approvals.expiry_hours) == (24, 72)
        assert not vault.approvals.enabled
    finally:
        engine.dispose()
    command.downgrade(alembic_config(url), "0013")
    after = create_engine(url)
    try:
        assert "approvals" not in {c["name"] for c in inspect(after).get_columns("vaults")}
        assert "approval_requests" not in inspect(after).get_table_names()
    finally:
        after.dispose()
