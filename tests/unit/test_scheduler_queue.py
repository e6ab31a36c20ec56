"""The scheduler and the job queue over a real catalog (SQLite and PostgreSQL), with a
simulated clock.

No libvirt here: VMs are written to the catalog as discovery would, and queued jobs are
inspected rather than run (the lab tests in tests/integration/test_server.py run them).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import save_vm
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.errors import InvalidInput, OperationInProgress, VmNotRegistered, VmvaultError
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.notification import Channel, Delivery, Event
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState

URI = "qemu:///system"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def make(home: Path, clock: Clock, gc: str = "off", url: str | None = None) -> Services:
    env = {
        "VMVAULT_HOME": str(home),
        "VMVAULT_GC_SCHEDULE": gc,
        "VMVAULT_TIMEZONE": "Europe/Berlin",
    }
    settings = Settings.from_env(env | ({"VMVAULT_CATALOG_URL": url} if url else {}))
    return bootstrap(settings, clock)


@pytest.fixture()
def clock() -> Clock:
    # 2026-03-28 23:30 Berlin (CET): the night before spring-forward
    return Clock(datetime(2026, 3, 28, 22, 30, tzinfo=UTC))


@pytest.fixture()
def services(tmp_path: Path, clock: Clock, catalog_url: str) -> Services:
    svc = make(tmp_path / "home", clock, url=catalog_url)
    svc.vaults.create("main", "local", None)
    return svc


def backups(services: Services) -> list[Job]:
    return sorted(services.jobs.list_jobs(job_type=JobType.BACKUP), key=lambda j: j.id)


def walk(services: Services, clock: Clock, until: datetime, step: timedelta) -> list[str]:
    """Tick every ``step`` until ``until``; the slot keys that fired, in order."""
    keys = []
    while clock.now < until:
        clock.now += step
        keys += [f.key for f in services.scheduler.tick()]
    return keys


def test_every_4h_over_a_day_with_a_dst_change(services: Services, clock: Clock) -> None:
    services.policies.create(
        None, "p4", "every:4h@02:00-23:59", "Europe/Berlin", Retention(daily=7)
    )
    a = save_vm(services, "a", VmState.PROTECTED, "p4")
    save_vm(services, "b", VmState.PROTECTED, "p4")
    save_vm(services, "c", VmState.REGISTERED)  # not protected: never scheduled
    save_vm(services, "d", VmState.PROTECTION_STOPPED, "p4")  # stopped: never scheduled

    # 24 h from 23:30 CET: a 23-hour day, 02:00 does not exist (clocks jump to 03:00)
    fired: list[tuple[str, datetime]] = []
    until = clock.now + timedelta(hours=24)
    while clock.now < until:
        clock.now += timedelta(minutes=7)
        fired += [(f.key, clock.now) for f in services.scheduler.tick()]
        for job in services.jobs.list_jobs(state=JobState.QUEUED):
            services.jobs.cancel(job.id)  # as if a worker had run it: the VMs are free again
    keys = [k for k, _ in fired]
    assert keys == [
        "2026-03-29T02:00 Europe/Berlin",  # runs once, at 03:00 CEST = 01:00 UTC
        "2026-03-29T06:00 Europe/Berlin",
        "2026-03-29T10:00 Europe/Berlin",
        "2026-03-29T14:00 Europe/Berlin",
        "2026-03-29T18:00 Europe/Berlin",
        "2026-03-29T22:00 Europe/Berlin",
    ]
    # each fired at the first tick after its instant (ticks are 7 min apart)
    assert (
        timedelta(0) <= fired[0][1] - datetime(2026, 3, 29, 1, 0, tzinfo=UTC) < timedelta(minutes=7)
    )
    jobs = backups(services)
    assert len(jobs) == 12 and all(j.state is JobState.CANCELLED for j in jobs)
    assert {j.vm_name for j in jobs} == {"host/a", "host/b"}
    assert jobs[0].origin == "policy p4 at 2026-03-29T02:00 Europe/Berlin"
    assert jobs[0].request == {"op": "backup", "vm": a.uuid, "keep_until": None}


def test_a_restart_creates_nothing_twice_and_catches_up_once(
    tmp_path: Path, services: Services, clock: Clock
) -> None:
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    save_vm(services, "a", VmState.PROTECTED, "p4")
    walk(services, clock, clock.now + timedelta(hours=2), timedelta(minutes=10))
    first = backups(services)
    assert len(first) == 1
    services.jobs.cancel(first[0].id)  # frees the VM (a queued job holds it)

    # a new process on the same catalog, same instant: nothing new
    again = make(tmp_path / "home", clock, url=services.settings.catalog_url)
    assert again.scheduler.tick() == []
    # the server is down for 13 hours: three slots missed, caught up once, as the latest
    clock.now += timedelta(hours=13)
    fired = again.scheduler.tick()
    assert [f.key for f in fired] == ["2026-03-29T12:00 Europe/Berlin"]
    assert again.scheduler.tick() == []
    assert len(backups(services)) == 2


def test_two_schedulers_racing_create_one_set_of_jobs(
    tmp_path: Path, services: Services, clock: Clock
) -> None:
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    for n in range(4):
        save_vm(services, f"v{n}", VmState.PROTECTED, "p4")
    clock.now += timedelta(minutes=31)  # 00:01: the 00:00 slot is due
    servers = [make(tmp_path / "home", clock, url=services.settings.catalog_url) for _ in range(4)]
    barrier = threading.Barrier(len(servers))
    fired: list[int] = []

    def tick(s: Services) -> None:
        barrier.wait()
        fired.extend(len(f.jobs) for f in s.scheduler.tick())

    threads = [threading.Thread(target=tick, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fired == [4]
    assert len(backups(services)) == 4


def test_a_busy_vm_gets_a_failed_job_not_a_duplicate(services: Services, clock: Clock) -> None:
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    save_vm(services, "a", VmState.PROTECTED, "p4")
    clock.now += timedelta(minutes=31)
    services.scheduler.tick()
    clock.now += timedelta(hours=4)
    services.scheduler.tick()  # the 00:00 job is still queued
    first, second = backups(services)
    assert first.state is JobState.QUEUED
    assert second.state is JobState.FAILED and second.error_code == "OPERATION_IN_PROGRESS"
    assert str(first.id) in (second.message or "")


def test_a_busy_vms_failed_job_is_ended_like_any_job_and_notified(
    services: Services, clock: Clock
) -> None:
    """The job the scheduler writes failed goes through the runner's end hooks: the failed
    event of a webhook target is in the outbox, and the job's log says how it ended."""
    services.notifications.add_target(
        None, Channel.WEBHOOK, "http://127.0.0.1:9/hook", (Event.FAILED,)
    )
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    save_vm(services, "a", VmState.PROTECTED, "p4")
    clock.now += timedelta(minutes=31)
    services.scheduler.tick()
    clock.now += timedelta(hours=4)
    services.scheduler.tick()
    _first, second = backups(services)
    assert second.state is JobState.FAILED and second.started_at == second.ended_at == clock.now
    [message] = services.notifications.outbox()
    assert message.message.key == f"job:{second.id}:failed" and message.state is Delivery.PENDING
    _job, log = services.jobs.show(second.id)
    assert log[-1].endswith("failed: " + (second.message or ""))


def test_a_new_policy_does_not_fire_for_slots_before_it(services: Services, clock: Clock) -> None:
    clock.now = datetime(2026, 6, 1, 10, 1, tzinfo=UTC)  # 12:01 CEST: 12:00 slot just passed
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    save_vm(services, "a", VmState.PROTECTED, "p4")
    assert services.scheduler.tick() == []
    clock.now += timedelta(hours=4)
    assert [f.key for f in services.scheduler.tick()] == ["2026-06-01T16:00 Europe/Berlin"]


def test_gc_schedule_is_armed_on_first_sight_then_runs_daily(tmp_path: Path, clock: Clock) -> None:
    svc = make(tmp_path / "home", clock, gc="daily@03:00")
    svc.vaults.create("main", "local", None)
    assert svc.scheduler.tick() == []  # armed now: no GC for slots before the server existed
    keys = walk(svc, clock, clock.now + timedelta(days=2), timedelta(minutes=20))
    assert keys == ["2026-03-29T03:00 Europe/Berlin", "2026-03-30T03:00 Europe/Berlin"]
    gcs = svc.jobs.list_jobs(job_type=JobType.GC)
    assert len(gcs) == 2 and all(j.vm_uuid is None and j.state is JobState.QUEUED for j in gcs)


def test_next_due_is_the_earliest_slot(services: Services, clock: Clock) -> None:
    assert services.scheduler.next_due() is None
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    assert services.scheduler.next_due() == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


# --- the queue -------------------------------------------------------------------------------------


def test_submit_is_all_or_nothing_and_holds_the_vm(services: Services) -> None:
    save_vm(services, "a", VmState.REGISTERED)
    save_vm(services, "b", VmState.REGISTERED)
    save_vm(services, "n", VmState.DISCOVERED)
    with pytest.raises(VmNotRegistered):  # n is not registered: nothing queued
        services.queue.submit_backup(None, ["a", "n"])
    assert backups(services) == []
    [job] = services.queue.submit_backup(None, ["a"])
    assert job.state is JobState.QUEUED and job.origin == "cli"
    with pytest.raises(OperationInProgress):  # a is held by its queued job; b is not queued
        services.queue.submit_backup(None, ["b", "a"])
    assert [j.vm_name for j in backups(services)] == ["host/a"]
    with pytest.raises(InvalidInput):
        services.queue.submit_backup(None, ["b"], keep_until=services.clock() - timedelta(days=1))


def test_cancelled_queued_job_is_never_claimed(services: Services) -> None:
    save_vm(services, "a", VmState.REGISTERED)
    save_vm(services, "b", VmState.REGISTERED)
    ja, jb = services.queue.submit_backup(None, ["a", "b"])
    cancelled = services.jobs.cancel(ja.id)
    assert cancelled.state is JobState.CANCELLED
    _, log = services.jobs.show(ja.id)
    assert any("cancelled before it started" in line for line in log)
    claimed = services.queue.claim_next()
    assert claimed is not None and claimed.id == jb.id and claimed.state is JobState.IN_PROGRESS
    assert services.queue.claim_next() is None
    # the VM is free again once its queued job was cancelled
    [again] = services.queue.submit_backup(None, ["a"])
    assert again.state is JobState.QUEUED


def test_concurrent_claims_take_each_job_once(
    tmp_path: Path, services: Services, clock: Clock
) -> None:
    for n in range(6):
        save_vm(services, f"v{n}", VmState.REGISTERED)
    services.queue.submit_backup(None, [f"v{n}" for n in range(6)])
    workers = [make(tmp_path / "home", clock, url=services.settings.catalog_url) for _ in range(3)]
    claimed: list[int] = []
    barrier = threading.Barrier(3)

    def work(s: Services) -> None:
        barrier.wait()
        while (job := s.queue.claim_next()) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=work, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(j.id for j in backups(services))


def test_a_request_that_no_longer_holds_fails_its_job(services: Services) -> None:
    vm = save_vm(services, "a", VmState.REGISTERED)
    [job] = services.queue.submit_backup(None, ["a"])
    vm.state, vm.vault = VmState.DISCOVERED, None  # unregistered while it waited
    with services._uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    claimed = services.queue.claim_next()
    assert claimed is not None and claimed.id == job.id
    done = services.queue.execute(claimed)
    assert done.state is JobState.FAILED and done.error_code == "VM_NOT_REGISTERED"
    assert "register it" in ((done.remedy or "") + (done.message or "")).lower()
    vm.state, vm.vault = VmState.REGISTERED, "main"  # the failed job released the VM
    with services._uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    [again] = services.queue.submit_backup(None, ["a"])
    assert again.state is JobState.QUEUED


def test_protection_changes_wait_for_a_queued_backup(services: Services, clock: Clock) -> None:
    """A queued backup holds its VM: stopping or moving protection is refused meanwhile."""
    services.policies.create(None, "p4", "every:4h", "Europe/Berlin", Retention(daily=7))
    save_vm(services, "a", VmState.PROTECTED, "p4")
    clock.now += timedelta(minutes=31)
    [fired] = services.scheduler.tick()
    with pytest.raises(OperationInProgress, match=f"job {fired.jobs[0].id}, backup"):
        services.protection.stop(None, ["a"], retain_data=True)
    with pytest.raises(OperationInProgress):
        services.protection.protect(None, ["a"], "p4")
    services.jobs.cancel(fired.jobs[0].id)
    [stop] = services.protection.stop(None, ["a"], retain_data=True)
    assert stop.job.state is JobState.COMPLETED
    clock.now += timedelta(hours=4)
    assert [len(f.jobs) for f in services.scheduler.tick()] == [0]  # stopped: no backup


def test_queued_verify_and_restore_test_are_checked_like_foreground_ones(
    services: Services,
) -> None:
    a = save_vm(services, "a", VmState.REGISTERED)
    b = save_vm(services, "b", VmState.REGISTERED)
    point = RecoveryPoint(
        id="20260328T220000Z-a", vault="main", vm_uuid=a.uuid, vm_name=a.name,
        created_at=services.clock(), consistency=Consistency.CRASH, method=Method.OFFLINE,
        frozen_ms=0, checkpoint=None, disks=[PointDisk("vda", 1000)],
    )  # fmt: skip
    with services._uow() as uow:
        uow.points.add(point)
        uow.commit()
    with pytest.raises(VmvaultError) as refused:  # a point of another VM: nothing queued
        services.queue.submit_restore_test(b.name, point.id)
    assert refused.value.code == "POINT_OF_ANOTHER_VM"
    assert services.jobs.list_jobs() == []
    # verifying one point holds the point's VM, as the verify job itself will
    job = services.queue.submit_verify(None, point_id=point.id)
    assert job.vm_uuid == a.uuid and job.request == {"op": "verify", "point": point.id}
    with pytest.raises(OperationInProgress):
        services.queue.submit_restore_test(a.name, point.id)


def test_a_policy_as_a_set_queues_one_set_job_per_slot(services: Services, clock: Clock) -> None:
    services.policies.create(
        None, "grp", "every:4h", "Europe/Berlin", Retention(daily=7), as_set=True
    )
    for name in ("a", "b", "c"):
        save_vm(services, name, VmState.PROTECTED, "grp")
    assert services.policies.get("grp").policy.as_set
    clock.now += timedelta(minutes=31)
    fired = services.scheduler.tick()
    assert len(fired) == 1 and len(fired[0].jobs) == 1
    job = fired[0].jobs[0]
    assert job.type is JobType.BACKUP_SET and job.state is JobState.QUEUED
    assert job.request is not None and len(job.request["vms"]) == 3
    assert backups(services) == []  # no single backup jobs
    # back to one job per VM
    services.policies.update("grp", as_set=False)
    assert not services.policies.get("grp").policy.as_set


def test_a_queued_set_is_one_job_checked_when_queued(services: Services) -> None:
    a = save_vm(services, "a", VmState.REGISTERED)
    b = save_vm(services, "b", VmState.REGISTERED)
    save_vm(services, "n", VmState.DISCOVERED)
    with pytest.raises(VmNotRegistered):
        services.queue.submit_backup_set(None, ["a", "n"])
    with pytest.raises(InvalidInput):  # a set of one
        services.queue.submit_backup_set(None, ["a", "a"])
    job = services.queue.submit_backup_set(None, ["a", "b"])
    assert job.type is JobType.BACKUP_SET and job.state is JobState.QUEUED and job.vm_uuid is None
    assert job.request == {  # the host: the set runs on that host's node (docs/sets.md)
        "op": "backup-set", "vms": [a.uuid, b.uuid], "keep_until": None, "host": a.host_uri
    }  # fmt: skip
    assert backups(services) == []  # its children are created when it runs
