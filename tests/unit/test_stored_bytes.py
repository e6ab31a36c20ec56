"""A vault's stored bytes (services/stored_bytes.py): walked through the storage contract,
reused for as long as the caller accepts, forgotten when a job of the vault ends in this
process, never kept from a walk that began before that end."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from tests.unit.fleet_world import Clock, fleet_services
from vmvault.domain.job import JobType
from vmvault.services.stored_bytes import DASHBOARD_AGE, StoredBytes

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = ("main", 1, "/v/main")


def test_reused_within_the_age_asked_for_and_forgotten_by_vault_name() -> None:
    kept, walks = StoredBytes(), []

    def measure() -> int:
        walks.append(1)
        return 100 * len(walks)

    first = kept.get(KEY, 60, measure, lambda: T0)
    assert (first.bytes, first.at) == (100, T0)
    assert kept.get(KEY, 60, measure, lambda: T0) == first and len(walks) == 1
    assert kept.get(KEY, 0, measure, lambda: T0).bytes == 200  # 0: never reused
    assert kept.get(KEY, 60, measure, lambda: T0).bytes == 200  # … but kept
    # another vault of the same name (deleted and created again) is walked on its own
    assert kept.get(("main", 2, "/v/main"), 60, measure, lambda: T0).bytes == 300
    kept.forget("other")
    assert kept.get(KEY, 60, measure, lambda: T0).bytes == 200
    kept.forget("main")
    assert kept.get(KEY, 60, measure, lambda: T0).bytes == 400
    assert kept.get(("main", 2, "/v/main"), 60, measure, lambda: T0).bytes == 500


def test_a_walk_begun_before_a_job_ended_is_not_kept() -> None:
    kept, started, go = StoredBytes(), threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        assert go.wait(10)
        return 1  # what the chunks were before the job's end

    walker = threading.Thread(target=lambda: kept.get(KEY, 60, slow, lambda: T0))
    walker.start()
    assert started.wait(10)
    kept.forget("main")  # the job ended while the walk ran
    go.set()
    walker.join(10)
    assert kept.get(KEY, 60, lambda: 2, lambda: T0).bytes == 2


def test_the_dashboard_reuses_the_walk_until_a_job_of_the_vault_ends(tmp_path: Path) -> None:
    clock = Clock(T0)
    services = fleet_services(tmp_path / "home", f"sqlite:///{tmp_path}/catalog.db", clock)
    vault = services.vaults.create("main", "local", None)
    before = services.dashboard.summary("main")
    assert before.storage_bytes == 0 and before.storage_measured_at == T0
    chunk = Path(vault.path) / "chunks" / "ab" / ("ab" + "0" * 62)
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"x" * 4096)
    clock.now = T0.replace(second=int(DASHBOARD_AGE) // 2)
    again = services.dashboard.summary("main")
    assert (again.storage_bytes, again.storage_measured_at) == (0, T0)  # reused
    # any job of the vault that ends in this process: its chunks may have changed
    outcome = services.runner.run(JobType.GC, "main", None, None, lambda ctx: None)
    assert outcome.error is None
    after = services.dashboard.summary("main")
    assert after.storage_bytes == 4096 and after.storage_measured_at == clock.now
    # /metrics reuses the same walk, for its own (longer) age
    assert services.vaults.stored_chunk_bytes(services.vaults.resolve("main"), 300).bytes == 4096
