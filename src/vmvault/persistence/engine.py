"""Open the catalog and bring its schema to the Alembic head revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from vmvault.domain.errors import CatalogError
from vmvault.persistence.catalog import configure_sqlite

MIGRATIONS = Path(__file__).with_name("migrations")
#: The newest revision in ``migrations/versions`` (a unit test keeps the two in step).  Knowing
#: it lets a command skip importing Alembic (~0.2 s) when the catalog is already current.
HEAD = "0021"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def open_catalog(url: str) -> Engine:
    """Create the engine, upgrading the schema when it is behind (no-op when current)."""
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("sqlite"):
            engine = create_engine(url)
            configure_sqlite(engine)
        else:
            # A server that restarted has closed every pooled connection: each checkout tests
            # its connection first and replaces a dead one, so the next transaction works
            # (docs/deployment.md, "PostgreSQL restarts").
            engine = create_engine(url, pool_pre_ping=True)
        if current_revision(engine) != HEAD:
            from alembic import command

            cfg = alembic_config(url)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        return engine
    except (SQLAlchemyError, OSError) as exc:
        raise CatalogError(str(exc).splitlines()[0]) from exc
