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
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update

from tests.api_tokens import authenticate, bearer
from tests.conftest import CliRunner
from tests.unit.fleet_world import (
    MADE_AT,
    POLICY,
    SLOT_DUE,
    VAULT,
    Clock,
    add_points,
    fleet_services,
    grow_fleet,
    make_fleet,
)
from vmvault.api.app import create_app
from vmvault.bootstrap import Services
from vmvault.domain.job import JobState, JobType
from vmvault.domain.metrics import Histogram, histogram, histogram_of
from vmvault.domain.recovery_point import Consistency, PointCopy, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.soft_delete import Deletion
from vmvault.persistence import tables as t
from vmvault.persistence.points import SqlPoints
from vmvault.services import holdings, vaults
from vmvault.services.scheduler import SchedulerService
from vmvault.services.stored_bytes import StoredBytes


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


@contextmanager
def nothing_kept() -> Iterator[None]:
    """No vault's stored bytes kept by this process (services/stored_bytes.py): each call
    walks, so its statements do not depend on how long ago the one before it walked."""
    kept = vaults.STORED
    vaults.STORED = StoredBytes()
    try:
        yield
    finally:
        vaults.STORED = kept


@contextmanager
def point_rows() -> Iterator[list[int]]:
    """How many recovery points the catalog reads whole meanwhile (every one is built from
    its row by ``SqlPoints._row``): a listing's page at most, never a fleet's points."""
    read = [0]
    whole = SqlPoints._row

    def counted(self: SqlPoints, r: Any) -> RecoveryPoint:
        read[0] += 1
        return whole(self, r)

    SqlPoints._row = counted  # type: ignore[method-assign]
    try:
        yield read
    finally:
        SqlPoints._row = whole  # type: ignore[method-assign]


#: The page of points ``measured`` reads: fewer than the small fleet holds.
POINTS_PAGE = 10
#: (frozen, paused) windows in ms given to points in turn: none, on a bound (10, 25, 50 ms,
#: 1 s, 60 s), just past one, past the last.
WINDOWS = ((0, 0), (10, 0), (11, 0), (25, 0), (0, 1000), (0, 1001), (50, 60_000), (0, 60_001))


def measured(services: Services, client: TestClient) -> tuple[dict[str, int], dict[str, int]]:
    """Queries of each listing, the dashboard and their API routes, as the fleet is now; and
    the points each read whole."""
    pages = {"limit": 1000}
    calls: dict[str, Callable[[], object]] = {
        "vm list": lambda: services.inventory.list_vms(VAULT, limit=1000),
        "protection list": lambda: services.protection.items(VAULT, limit=1000),
        "dashboard": lambda: services.dashboard.summary(VAULT),
        "points list": lambda: services.point_listing.page(VAULT, None, POINTS_PAGE),
        "policy list": lambda: services.policies.list_policies(VAULT, 1000),
        "host list": lambda: services.vaults.hosts_page(None, 1000),
        "GET /vms": lambda: client.get("/api/v1/vms", params=pages).raise_for_status(),
        "GET /protection": lambda: client.get(
            "/api/v1/protection", params=pages
        ).raise_for_status(),
        "GET /dashboard": lambda: client.get("/api/v1/dashboard").raise_for_status(),
        "GET /points": lambda: client.get(
            "/api/v1/points", params={"limit": POINTS_PAGE}
        ).raise_for_status(),
        "GET /policies": lambda: client.get("/api/v1/policies", params=pages).raise_for_status(),
        "GET /hosts": lambda: client.get("/api/v1/hosts", params=pages).raise_for_status(),
        "GET /metrics": lambda: client.get("/metrics").raise_for_status(),
    }
    sent, read = {}, {}
    for name, call in calls.items():
        with point_rows() as rows, nothing_kept():
            sent[name] = queries(call)
        read[name] = rows[0]
    return sent, read


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
    """10 then 200 VMs, each protected one with 4 points: the same statements, and no point
    read whole but a listing's page (the dashboard, the protection list and a ``/metrics``
    scrape count them in the database)."""
    clock = Clock(MADE_AT)
    services = fleet_services(tmp_path / "home", catalog_url, clock)
    client = TestClient(create_app(services, authenticate=authenticate), headers=bearer())
    try:
        make_fleet(services, tmp_path / "small", vms=10, hosts=2, protect=5)
        assert len(add_points(services, per_vm=4)) == 20
        small, small_read = measured(services, client)
        fire(services, clock, SLOT_DUE, 5)  # the first tick takes the lease, arms the schedule
        small["slot"] = fire(services, clock, SLOT_DUE + timedelta(days=1), 5)
        assert services.inventory.list_vms(VAULT)[1] == 10

        grow_fleet(services, tmp_path / "big", vms=190, hosts=2, protect=100, first=2)
        assert len(add_points(services, per_vm=4)) == 380
        big, big_read = measured(services, client)
        big["slot"] = fire(services, clock, SLOT_DUE + timedelta(days=2), 100)
        assert services.inventory.list_vms(VAULT)[1] == 200
        found, total = services.protection.items(VAULT, limit=1000)
        assert (len(found), total) == (100, 100)
        assert sum(i.points for i in found) == 400
        assert services.dashboard.summary(VAULT).points == 400
        assert big == small
        # a page of points is read whole, whatever the fleet holds; nothing else reads one
        pages = {"points list": POINTS_PAGE, "GET /points": POINTS_PAGE}
        assert big_read == small_read == dict.fromkeys(big_read, 0) | pages
    finally:
        services.close()


def assert_same(tallied: Histogram, windows_ms: list[int]) -> None:
    """``tallied`` is the histogram of the windows (ms; 0: none) read whole."""
    whole = histogram(ms / 1000 for ms in windows_ms if ms > 0)
    assert (tallied.buckets, tallied.count) == (whole.buckets, whole.count)
    assert tallied.total == pytest.approx(whole.total)


def test_what_a_vault_holds_is_counted_as_the_points_read_whole(
    tmp_path: Path, catalog_url: str
) -> None:
    """The database's aggregates (persistence/held.py: sums of the points' byte columns,
    tallies of their windows) give what the points read whole give, with copies in a second
    vault, points soft-deleted in either vault, disks left out, and frozen and paused windows
    on the histogram's bounds; and ``/metrics`` shows them."""
    clock = Clock(MADE_AT)
    services = fleet_services(tmp_path / "home", catalog_url, clock)
    try:
        make_fleet(services, tmp_path / "fleet", vms=12, hosts=2, protect=6)
        made = add_points(services, per_vm=5)
        services.vaults.create("far", "elsewhere", None)
        gone = Deletion(MADE_AT, MADE_AT + timedelta(days=14))
        with services._uow() as uow:
            for i, p in enumerate(made[::3]):  # copies; every other one soft-deleted there
                later = gone if i % 2 else None
                uow.copies.add(PointCopy(p.id, "far", MADE_AT, deleted=later))
            for p in made[1::7]:  # soft-deleted in their own vault (some copied: held in far)
                uow.points.set_deleted(
                    p.id, replace(gone, purge_after=gone.purge_after - timedelta(days=1))
                )
            p = t.recovery_points.c
            for i, point in enumerate(made):  # windows on, around and past the bounds
                frozen, paused = WINDOWS[i % len(WINDOWS)]
                where = p.id == point.id
                uow.conn.execute(
                    update(t.recovery_points)
                    .where(where)
                    .values(frozen_ms=frozen, paused_ms=paused)
                )
            uow.commit()
        start = MADE_AT.replace(hour=0) - timedelta(days=13)
        with services._uow() as uow:
            for vault in (VAULT, "far"):
                whole = holdings.held_in(uow, vault)
                assert whole and uow.points.count_held(vault) == len(whole)
                totals = uow.held.totals(vault)
                assert totals.points == len(whole)
                assert totals.logical_bytes == sum(p.bytes_logical for p in whole)
                assert totals.by_consistency == {
                    c.value: n
                    for c in Consistency
                    if (n := sum(1 for p in whole if p.consistency is c))
                }
                newest: dict[str, tuple[int, Any]] = {}
                for p in whole:
                    n, at = newest.get(p.vm_uuid, (0, p.created_at))
                    newest[p.vm_uuid] = (n + 1, max(at, p.created_at))
                assert uow.held.by_vm(vault) == newest
                some = sorted(newest)[:2]
                assert uow.held.by_vm(vault, some) == {u: newest[u] for u in some}
                binned = holdings.deleted_in(uow, vault)
                assert binned
                totals_bin = uow.held.binned(vault)
                assert totals_bin.points == len(binned)
                assert totals_bin.logical_bytes == sum(p.bytes_logical for p, _ in binned)
                assert totals_bin.next_purge_at == min(d.purge_after for _, d in binned)
                own = [p for p in uow.points.in_vault(vault) if p.created_at >= start]
                by_day = [
                    sum(
                        p.bytes_new
                        for p in own
                        if p.created_at.date() == (start + timedelta(d)).date()
                    )
                    for d in range(14)
                ]
                assert uow.held.new_bytes_by_day(vault, start, 14) == by_day
            assert sum(by_day) == 0  # far's own points: none
            for vaults in ([VAULT], ["far"], [VAULT, "far"], []):
                held = {p.id: p for v in vaults for p in holdings.held_in(uow, v)}.values()
                frozen, paused = uow.held.windows(vaults)
                assert_same(histogram_of(frozen), [p.frozen_ms for p in held])
                assert_same(histogram_of(paused), [p.paused_ms for p in held])
            assert frozen.count == 0 and paused.count == 0  # no vault: nothing held
            page = uow.points.held(VAULT, limit=4, offset=3)
            assert [p.id for p in page] == [p.id for p in holdings.held_in(uow, VAULT)[3:7]]
            whole_of = {v: holdings.held_in(uow, v) for v in (VAULT, "far")}
            every = {p.id: p for points in whole_of.values() for p in points}.values()
        snapshot = services.metrics.snapshot()
        assert {f.vault: (f.points, f.logical_bytes) for f in snapshot.vaults} == {
            v: (len(points), sum(p.bytes_logical for p in points)) for v, points in whole_of.items()
        }
        assert_same(snapshot.frozen, [p.frozen_ms for p in every])
        assert_same(snapshot.paused, [p.paused_ms for p in every])
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
        # --json cut by the page says so on stderr, as the table does (render.page_note)
        note = "22-28 of 30 shown; --offset 28 for the next (--limit: up to 1000 a page)"
        assert r.stderr.strip() == note
        r = cli("vm", "list", "--limit", "1000", "--json", env=url)
        assert len(r.json()) == 30 and r.stderr == ""  # every item: no note
        r = cli("vm", "list", "--offset", "40", "--json", env=url)  # past the end
        assert r.json() == [] and r.stderr.strip() == "no items at --offset 40: there are 30"
        r = cli("protection", "list", "--limit", "5", env=url)
        assert r.code == 0 and "1-5 of 12 shown; --offset 5 for the next" in r.stderr

        # points, policies and hosts: the same pages (12 protected VMs, 3 points each)
        add_points(services, per_vm=3)
        newest = [p.id for p in services.point_listing.list_points(VAULT, None)]
        assert len(newest) == 36
        r = client.get("/api/v1/points", params={"limit": 10, "offset": 30})
        assert r.headers["X-Total-Count"] == "36"
        assert [p["id"] for p in r.json()] == newest[30:]
        cli_too = catalog_url.startswith("sqlite")  # the CLI's pages: the same on both engines
        if cli_too:
            r = cli("points", "list", "--limit", "4", "--offset", "8", env=url)
            assert r.code == 0 and "9-12 of 36 shown; --offset 12 for the next" in r.stderr
            assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == newest[8:12]
            r = cli("points", "list", "--json", env=url)
            assert len(r.json()) == 36 and r.stderr == ""
            r = cli("points", "list", "--limit", "4", "--offset", "8", "--json", env=url)
            assert [p["id"] for p in r.json()] == newest[8:12]
            assert "9-12 of 36 shown; --offset 12 for the next" in r.stderr
        services.policies.create(VAULT, "another", "daily@03:00", "UTC", Retention(daily=3))
        r = client.get("/api/v1/policies", params={"limit": 1, "offset": 1})
        assert r.headers["X-Total-Count"] == "2"
        assert [(p["name"], len(p["vms"])) for p in r.json()] == [(POLICY, 12)]
        if cli_too:
            r = cli("policy", "list", "--limit", "1", env=url)
            assert r.code == 0 and "1-1 of 2 shown; --offset 1 for the next" in r.stderr
            r = cli("policy", "list", "--limit", "1", "--json", env=url)
            assert len(r.json()) == 1 and "1-1 of 2 shown; --offset 1 for the next" in r.stderr
        r = client.get("/api/v1/hosts", params={"limit": 2, "offset": 2})
        assert r.headers["X-Total-Count"] == "3" and len(r.json()) == 1
        if cli_too:
            r = cli("host", "list", "--limit", "2", "--offset", "1", env=url)
            assert r.code == 0 and "2-3 of 3 shown" in r.stderr
            r = cli("host", "list", "--limit", "2", "--json", env=url)
            assert len(r.json()) == 2 and "1-2 of 3 shown; --offset 2 for the next" in r.stderr
        for route in ("/points", "/points/deleted", "/policies", "/hosts"):
            r = client.get(f"/api/v1{route}", params={"limit": 1001})
            assert r.status_code == 400, route
            assert client.get(f"/api/v1{route}", params={"offset": -1}).status_code == 400
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
