"""The real PostgreSQL for tests: one Debian PostgreSQL cluster per test session
(``vmvault.hypervisor.lab.postgres``), registered as a plugin by tests/conftest.py.

The catalog-touching tests take the fixture ``catalog_url``, parametrized over both engines::

    def test_claim(catalog_url):
        engine = open_catalog(catalog_url)     # sqlite:///tmp/… or postgresql+psycopg://…

On PostgreSQL each test gets a database of its own, copied from a template the session
migrated once to the head revision (``CREATE DATABASE … TEMPLATE``: ~0.1 s instead of the
migrations' ~1 s), dropped after the test. The cluster starts on first use (~1.5 s here)
and is removed when the session ends.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vmvault.hypervisor.lab.postgres import PostgresCluster
from vmvault.persistence.engine import open_catalog

#: The prefix of a session cluster's directory under /var/lib/vmvault: the postgres user must
#: reach it, which it cannot under pytest's /tmp/pytest-of-root (mode 0700).
PG_PREFIX = "test-pg-"
TEMPLATE = "vmvault_template"


class Postgres:
    """The session's cluster and the databases made from its migrated template."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self._n = itertools.count()
        self._templated = False

    def admin(self) -> object:
        import psycopg

        return psycopg.connect(
            host=str(self.cluster.run_dir), user="vmvault", dbname="vmvault", autocommit=True
        )

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://vmvault@/{db}?host={self.cluster.run_dir}"

    def create(self) -> str:
        """A new database at the head revision; its URL."""
        if not self._templated:
            with self.admin() as conn:  # type: ignore[attr-defined]
                conn.execute(f"CREATE DATABASE {TEMPLATE}")
            open_catalog(self.url(TEMPLATE)).dispose()
            self._templated = True
        name = f"t{os.getpid()}_{next(self._n)}"
        with self.admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def drop(self, name: str) -> None:
        with self.admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL for the whole session, removed at its end."""
    base = Path("/var/lib/vmvault")
    base.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix=PG_PREFIX, dir=base))
    parent.chmod(0o755)
    cluster = PostgresCluster(parent / "postgres")
    try:
        cluster.up()
        yield Postgres(cluster)
    finally:
        cluster.down()
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def database(pg: Postgres) -> Iterator[str]:
    """A fresh database at the head revision on the session's cluster: its URL; dropped
    after the block."""
    if not pg.cluster.running():  # a fault test that failed with the server stopped
        pg.cluster.start()
    name = pg.create()
    try:
        yield pg.url(name)
    finally:
        pg.drop(name)


@contextmanager
def empty_database(pg: Postgres) -> Iterator[str]:
    """A database with no schema at all on the session's cluster (a migration test takes it
    to an old revision itself): its URL; dropped after the block."""
    if not pg.cluster.running():
        pg.cluster.start()
    name = f"e{os.getpid()}_{next(pg._n)}"
    with pg.admin() as conn:  # type: ignore[attr-defined]
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield pg.url(name)
    finally:
        pg.drop(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog's URL on each engine (SQLite in ``tmp_path``, or a database
    of its own on the session's PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with database(request.getfixturevalue("postgres")) as url:
        yield url
