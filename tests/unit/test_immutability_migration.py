"""Migration 0014 (immutability) on a catalog that already has a vault: the vault is not
immutable, the points have no retain-until, and the migration goes down again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from tests.unit.old_catalog import catalog_with_an_old_vault
from vmvault.domain.immutability import ImmutableMode
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import alembic_config, open_catalog


def test_an_existing_vault_is_not_immutable_and_goes_down_again(tmp_path: Path) -> None:
    url = catalog_with_an_old_vault(tmp_path, "0013")
    engine = open_catalog(url)  # brings it to the head revision
    try:
        with SqlUnitOfWork(engine) as uow:
            vault = uow.vaults.get("old")
        assert vault is not None and vault.immutable is ImmutableMode.OFF
        columns = {c["name"] for c in inspect(engine).get_columns("recovery_points")}
        assert "retain_until" in columns
    finally:
        engine.dispose()
    command.downgrade(alembic_config(url), "0013")
    after = create_engine(url)
    try:
        assert "immutable" not in {c["name"] for c in inspect(after).get_columns("vaults")}
        assert "retain_until" not in {
            c["name"] for c in inspect(after).get_columns("recovery_points")
        }
    finally:
        after.dispose()
