"""The composition root picks the real adapters unless it is given others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog


def test_services_share_one_context_and_use_the_catalog_given(tmp_path: Path) -> None:
    engine = open_catalog(f"sqlite:///{tmp_path / 'other.db'}")
    calls: list[int] = []

    def uow() -> SqlUnitOfWork:
        calls.append(1)
        return SqlUnitOfWork(engine)

    home = tmp_path / "home"
    s = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}), uow=uow)
    assert s.policies.ctx is s.points.ctx is s.dashboard.ctx is s.context
    assert s.policies.uow is uow and s.runner.uow is uow
    assert s.jobs.list_jobs() == []  # a query through the catalog given
    assert calls, "the injected unit of work was not used"
    assert not (home / "catalog.db").exists(), "the default catalog was opened anyway"
    engine.dispose()


def test_the_clock_given_is_the_one_every_service_reads(tmp_path: Path) -> None:
    t = datetime(2030, 1, 1, tzinfo=UTC)
    s = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path)}), clock=lambda: t)
    assert s.points.clock() == t and s.runner.clock() == t and s.context.clock() == t
