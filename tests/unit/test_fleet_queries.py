"""The control plane at fleet scale (docs/deployment.md, "Fleet scale"): the catalog queries of
the listings, the dashboard and a policy's slot do not grow with the number of VMs, on SQLite
and PostgreSQL; and two schedulers racing for one slot queue each VM's job exactly once.

The fleet is libvirt's test driver (tests/unit/fleet_world.py): real discovery through the
real libvirt driver.  Queries are counted with SQLAlchemy's ``before_cursor_execute`` event
(every statement sent to the database, an ``executemany`` batch counting once).  Timings are
bench/fleet.py's, not asserted here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from tests.api_tokens import authenticate, bearer
from tests.conftest import CliRunner
from tests.unit.fleet_world import (
    MADE_AT,
    SLOT_DUE,
    VAULT,
    Clock,
    fleet_services,
    grow_fleet,
    make_fleet,
)
from vmvault.api.app import create_app
from vmvault.bootstrap import Services
from vmvault.domain.job import JobState, JobType
from vmvault.services.scheduler import SchedulerService


@contextmanager
def counting() -> Iterator[list[str]]:
    """The statements every engine of this process sends meanwhile."""
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def queries(call: Callable[[], object]) -> int:
    with counting() as sent:
        call()
    return len(sent)


def measured(services: Services, client: TestClient) -> dict[str, int]:
    """Queries of each listing, the dashboard and their API routes, as the fleet is now."""
    pages = {"limit": 1000}
    return {
        "vm list": queries(lambda: services.inventory.list_vms(VAULT, limit=1000)),
        "protection list": queries(lambda: services.protection.items(VAULT, limit=1000)),
        "dashboard": queries(lambda: services.dashboard.summary(VAULT)),
        "GET /vms": queries(lambda: client.get("/api/v1/vms", params=pages).raise_for_status()),
        "GET /protection": queries(
            lambda: client.get("/api/v1/protection", params=pages).raise_for_status()
        ),
        "GET /dashboard": queries(lambda: client.get("/api/v1/dashboard").raise_for_status()),
    }


def fire(services: Services, clock: Clock, at: Any, protected: int) -> int:
    """Queries of the tick that fires the slot due at ``at``; checks its jobs."""
    clock.now = at
    fired: list[Any] = []
    count = queries(lambda: fired.extend(services.scheduler.tick()))
    [slot] = fired
    assert len(slot.jobs) == protected
    assert len({j.vm_uuid for j in slot.jobs}) == protected
    assert all(j.state is JobState.QUEUED for j in slot.jobs)
    for job in slot.jobs:  # as if a worker had run them: the VMs are free for the next slot
        services.jobs.cancel(job.id)
    return count


def test_queries_do_not_grow_with_the_fleet(tmp_path: Path, catalog_url: str) -> None:
    clock = Clock(MADE_AT)
    services = fleet_services(tmp_path / "home", catalog_url, clock)
    client = TestClient(create_app(services, authenticate=authenticate), headers=bearer())
    try:
        make_fleet(services, tmp_path / "small", vms=10, hosts=2, protect=5)
        small = measured(services, client)
        fire(services, clock, SLOT_DUE, 5)  # the first tick takes the lease, arms the schedule
        small["slot"] = fire(services, clock, SLOT_DUE + timedelta(days=1), 5)
        assert services.inventory.list_vms(VAULT)[1] == 10

        grow_fleet(services, tmp_path / "big", vms=190, hosts=2, protect=100, first=2)
        big = measured(services, client)
        big["slot"] = fire(services, clock, SLOT_DUE + timedelta(days=2), 100)
        assert services.inventory.list_vms(VAULT)[1] == 200
        found, total = services.protection.items(VAULT, limit=1000)
        assert (len(found), total) == (100, 100)
        assert big == small
    finally:
        services.close()


def test_lists_are_paged(tmp_path: Path, home: Path, cli: CliRunner, catalog_url: str) -> None:
    services = fleet_services(home, catalog_url, Clock(MADE_AT))
    client = TestClient(create_app(services, authenticate=authenticate), headers=bearer())
    try:
        make_fleet(services, tmp_path / "fleet", vms=30, hosts=3, protect=12)
        everyone, total = services.inventory.list_vms(VAULT, limit=1000)
        assert total == 30 and len(everyone) == 30
        page, total = services.inventory.list_vms(VAULT, limit=7, offset=21)
        assert total == 30 and [v.uuid for v in page] == [v.uuid for v in everyone[21:28]]
        r = client.get("/api/v1/vms", params={"limit": 5, "offset": 28})
        assert r.headers["X-Total-Count"] == "30"
        assert [v["uuid"] for v in r.json()] == [v.uuid for v in everyone[28:]]
        r = client.get("/api/v1/protection", params={"limit": 10, "offset": 10})
        assert r.headers["X-Total-Count"] == "12" and len(r.json()) == 2
        assert client.get("/api/v1/vms", params={"limit": 1001}).status_code == 400
        url = {"VMVAULT_CATALOG_URL": catalog_url}
        r = cli("vm", "list", "--limit", "7", "--offset", "21", "--json", env=url)
        assert [v["uuid"] for v in r.json()] == [v.uuid for v in everyone[21:28]]
        r = cli("protection", "list", "--limit", "5", env=url)
        assert r.code == 0 and "1-5 of 12 shown; --offset 5 for the next" in r.stderr
    finally:
        services.close()


@pytest.mark.parametrize("lease", [True, False], ids=["leader-lease", "no-lease"])
def test_two_schedulers_racing_queue_each_job_once(
    tmp_path: Path, catalog_url: str, lease: bool
) -> None:
    """Two schedulers of two nodes tick at the same instant, just after the slot (threads
    behind a barrier, each with its own catalog connections): each protected VM gets one
    backup job.  With the leader lease only one of them fires; without it (``node`` None:
    both believe they lead, as two ticks overlapping across a failover), the compare-and-set
    of the slot keeps it to one."""
    clock = Clock(MADE_AT)
    services = fleet_services(tmp_path / "home", catalog_url, clock)
    other = fleet_services(tmp_path / "home", catalog_url, clock)
    try:
        make_fleet(services, tmp_path / "fleet", vms=120, hosts=2, protect=80)
        clock.now = SLOT_DUE
        schedulers = [
            SchedulerService(s._uow, clock, None, node=f"node-{i}" if lease else None)
            for i, s in enumerate((services, other))
        ]
        barrier = threading.Barrier(2)
        fired: list[list[Any]] = [[], []]
        errors: list[BaseException] = []

        def tick(i: int) -> None:
            barrier.wait()
            try:
                fired[i] = schedulers[i].tick()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=tick, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(len(f) for f in fired) == [0, 1]  # one fired the slot, the other nothing
        jobs = services.jobs.list_jobs(job_type=JobType.BACKUP, limit=1000)
        assert len(jobs) == 80
        assert len({j.vm_uuid for j in jobs}) == 80
        assert all(j.state is JobState.QUEUED for j in jobs)
    finally:
        services.close()
        other.close()
