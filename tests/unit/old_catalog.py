"""A catalog left at an older migration with one vault in it: what the migration tests of
later revisions start from (tests/unit/test_*_migration.py)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from vmvault.persistence.engine import alembic_config


def catalog_with_an_old_vault(tmp_path: Path, revision: str) -> str:
    """The URL of a SQLite catalog at ``revision`` holding vault ``old`` (local, /srv/old)."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    command.upgrade(alembic_config(url), revision)
    before = create_engine(url)
    with before.begin() as c:
        c.execute(
            text(
                "insert into vaults(name, location, path, created_at) "
                "values ('old', 'local', '/srv/old', '2026-01-01 00:00:00')"
            )
        )
    before.dispose()
    return url
