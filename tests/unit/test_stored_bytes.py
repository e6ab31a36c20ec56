"""A vault's stored bytes (services/stored_bytes.py): walked through the storage contract and
kept per process; used while fresh whatever happened, and while no job of the vault ended
since (the catalog says, whichever process or node ran the job) up to a longer age; one walk
of a vault at a time; a vault created again is another."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.unit.fleet_world import Clock, fleet_services
from vmvault.domain.job import JobType
from vmvault.services import stored_bytes
from vmvault.services.stored_bytes import DASHBOARD_FRESH, DASHBOARD_REUSE, StoredBytes

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = ("main", 1, "/v/main", "2026-12-01T00:00:00+00:00")
ENDED = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def mono(monkeypatch: pytest.MonkeyPatch) -> Iterator[Monotonic]:
    clock = Monotonic()
    monkeypatch.setattr(stored_bytes.time, "monotonic", clock)
    yield clock


def test_used_while_fresh_or_while_no_job_of_the_vault_ended(mono: Monotonic) -> None:
    kept, walks = StoredBytes(), []

    def measure() -> int:
        walks.append(1)
        return 100 * len(walks)

    def get(ended: datetime | None) -> int:
        return kept.get(KEY, lambda: ended, 15, 60, measure, lambda: T0).bytes

    assert get(ENDED) == 100
    mono.now += 10
    assert get(ENDED + timedelta(seconds=1)) == 100  # fresh: whatever ended since
    mono.now += 40
    assert get(ENDED) == 100  # 50 s old, nothing ended since its walk
    assert get(ENDED + timedelta(seconds=1)) == 200  # a job of the vault ended: walked again
    mono.now += 59
    assert get(ENDED + timedelta(seconds=1)) == 200
    mono.now += 1
    assert get(ENDED + timedelta(seconds=1)) == 300  # too old, however quiet the vault
    assert kept.get(KEY, lambda: None, 0, 0, measure, lambda: T0).bytes == 400  # 0, 0: walked now
    # the same name created again (another creation time, the same id and path on SQLite)
    again = (*KEY[:3], "2026-12-03T00:00:00+00:00")
    assert kept.get(again, lambda: None, 15, 60, measure, lambda: T0).bytes == 500
    assert get(ENDED + timedelta(seconds=1)) == 400


def test_one_walk_of_a_vault_at_a_time() -> None:
    kept, walks, entered, go = StoredBytes(), [], threading.Event(), threading.Event()

    def slow() -> int:
        walks.append(1)
        entered.set()
        assert go.wait(10)
        return 7

    got: list[int] = []
    asking = [
        threading.Thread(
            target=lambda: got.append(kept.get(KEY, lambda: ENDED, 15, 60, slow, lambda: T0).bytes)
        )
        for _ in range(8)
    ]
    for t in asking:
        t.start()
    assert entered.wait(10)
    go.set()
    for t in asking:
        t.join(10)
    assert got == [7] * 8 and len(walks) == 1


def test_the_dashboard_walks_again_after_a_job_of_another_process(
    tmp_path: Path, mono: Monotonic
) -> None:
    clock = Clock(T0)
    url = f"sqlite:///{tmp_path}/catalog.db"
    services = fleet_services(tmp_path / "home", url, clock)
    vault = services.vaults.create("main", "local", None)
    before = services.dashboard.summary("main")
    assert before.storage_bytes == 0 and before.storage_measured_at == T0
    chunk = Path(vault.path) / "chunks" / "ab" / ("ab" + "0" * 62)
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"x" * 4096)
    mono.now += DASHBOARD_FRESH
    clock.now = T0 + timedelta(seconds=DASHBOARD_FRESH)
    again = services.dashboard.summary("main")
    assert (again.storage_bytes, again.storage_measured_at) == (0, T0)  # nothing ended since
    # a job of the vault run by other services (another process, another node): the catalog
    other = fleet_services(tmp_path / "home", url, clock)
    assert other.runner.run(JobType.GC, "main", None, None, lambda ctx: None).error is None
    after = services.dashboard.summary("main")
    assert after.storage_bytes == 4096 and after.storage_measured_at == clock.now
    # /metrics uses the same figure, for its own ages
    assert services.vaults.stored_chunk_bytes(vault, 300, 300).bytes == 4096
    mono.now += DASHBOARD_REUSE
    chunk.unlink()
    assert services.dashboard.summary("main").storage_bytes == 0  # too old: walked again


def test_the_catalog_is_asked_only_past_the_fresh_age_and_before_a_walk(mono: Monotonic) -> None:
    kept, asked, order = StoredBytes(), [], []

    def ended() -> datetime:
        asked.append(1)
        order.append("asked")
        return ENDED

    def measure() -> int:
        order.append("walked")
        return 1

    kept.get(KEY, ended, 15, 60, measure, lambda: T0)
    assert order == ["asked", "walked"]  # its token is the one before the walk
    mono.now += 10
    kept.get(KEY, ended, 15, 60, measure, lambda: T0)
    assert len(asked) == 1  # fresh: no catalog read
    mono.now += 10
    kept.get(KEY, ended, 15, 60, measure, lambda: T0)
    assert len(asked) == 2 and order.count("walked") == 1  # asked once, same token: reused
