"""Migration 0013 (soft delete) on a catalog that already has a vault: the vault gets the
defaults (on, 14 days), and the migration goes down again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from tests.unit.old_catalog import catalog_with_an_old_vault
from vmvault.domain.soft_delete import SoftDelete
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import alembic_config, open_catalog


def test_an_existing_vault_gets_soft_delete_on_for_fourteen_days(tmp_path: Path) -> None:
    url = catalog_with_an_old_vault(tmp_path, "0010")
    engine = open_catalog(url)  # brings it to the head revision
    try:
        with SqlUnitOfWork(engine) as uow:
            vault = uow.vaults.get("old")
        assert vault is not None and vault.soft_delete == SoftDelete()
        columns = {c["name"] for c in inspect(engine).get_columns("point_copies")}
        assert {"deleted_at", "purge_after"} <= columns
    finally:
        engine.dispose()
    command.downgrade(alembic_config(url), "0010")
    after = create_engine(url)
    try:
        assert "soft_delete" not in {c["name"] for c in inspect(after).get_columns("vaults")}
    finally:
        after.dispose()
