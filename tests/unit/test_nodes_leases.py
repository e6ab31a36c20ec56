"""Many nodes on one catalog (SQLite and PostgreSQL): jobs carry their node and a lease the
node's heartbeat renews, liveness is the lease, the scheduler's leader lease moves to another
node when its holder stops renewing, and every slot of a simulated day fires exactly once
across the failover (domain/node.py, services/nodes.py, services/scheduler.py)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from tests.unit.test_scheduler_queue import Clock
from vmvault.config import Settings
from vmvault.documents import job_doc
from vmvault.domain.errors import OperationInProgress
from vmvault.domain.host_uri import host_key
from vmvault.domain.job import JobState, JobType
from vmvault.domain.node import LEASE, SCHEDULER_LEASE, Node
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.schedule import parse_schedule
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobRunner
from vmvault.services.nodes import NodeIdentity, NodeService
from vmvault.services.queue import queue_job
from vmvault.services.recovery import RecoveryService
from vmvault.services.scheduler import SchedulerService

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


@pytest.fixture()
def engine(catalog_url: str):  # type: ignore[no-untyped-def]
    eng = open_catalog(catalog_url)
    yield eng
    eng.dispose()


@pytest.fixture()
def clock() -> Clock:
    return Clock(T0)


class NodeOf:
    """One node on the shared catalog: its heartbeat, runner and scheduler."""

    def __init__(
        self, engine: Engine, clock: Clock, name: str, machine: str, pid: int, alive: bool = True
    ) -> None:
        def uow() -> SqlUnitOfWork:
            return SqlUnitOfWork(engine)

        ident = NodeIdentity(name, f"qemu+tcp://{name}/system", machine, pid, clock())
        self.node = NodeService(uow, clock, ident, interval=3600)
        self.runner = JobRunner(uow, clock, pid, lambda _p: alive, self.node)
        self.scheduler = SchedulerService(uow, clock, None, node=name)
        self.uow = uow


def _vm(engine: Engine, n: int, policy: str | None = None) -> VmItem:
    vm = VmItem(
        f"00000000-0000-0000-0000-{n:012}", f"vm{n}", "qemu:///system", "h", "h",
        PowerState.RUNNING, [], [], True, "f", T0, T0,
        state=VmState.PROTECTED if policy else VmState.REGISTERED, vault="main", policy=policy,
    )  # fmt: skip
    with SqlUnitOfWork(engine) as uow:
        if uow.vaults.get("main") is None:
            uow.vaults.add("main", "local", "/nonexistent", T0)
        uow.vms.save(vm)
        uow.commit()
    return vm


def test_a_job_carries_its_node_and_a_lease_the_heartbeat_renews(
    engine: Engine, clock: Clock
) -> None:
    a = NodeOf(engine, clock, "node-a", "m1", 11)
    job = a.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    assert job.node == "node-a" and job.lease_until == T0 + LEASE
    clock.now += timedelta(seconds=20)
    assert a.node.beat() == 0  # started, not running in this process: not renewed
    with a.node.hold(job.id):
        assert a.node.beat() == 1
    with a.uow() as uow:
        renewed = uow.jobs.get(job.id)
        node = uow.nodes.get("node-a")
    assert renewed is not None and renewed.lease_until == clock.now + LEASE
    assert node is not None and node.heartbeat_at == clock.now and node.machine == "m1"
    assert job_doc(renewed)["node"] == "node-a"
    # a node silent for a day is forgotten by the next beat of another
    b = NodeOf(engine, clock, "node-b", "m2", 22)
    clock.now += timedelta(days=1, seconds=1)
    b.node.beat()
    with a.uow() as uow:
        assert [n.id for n in uow.nodes.all()] == ["node-b"]


def test_liveness_is_the_lease_not_the_pid(engine: Engine, clock: Clock) -> None:
    # node a on machine m1 runs a backup; node b on another machine sees a's pid as dead
    # (it is not its machine's pid: that means nothing) but respects the lease
    a = NodeOf(engine, clock, "node-a", "m1", 11)
    b = NodeOf(engine, clock, "node-b", "m2", 22, alive=False)
    held = a.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    a.node.beat()
    clock.now += LEASE - timedelta(seconds=1)
    with pytest.raises(OperationInProgress):
        b.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    # a stops beating: once the lease has passed, b closes a's job as interrupted and runs
    clock.now += timedelta(seconds=2)
    job = b.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    assert job.node == "node-b"
    with a.uow() as uow:
        old = uow.jobs.get(held.id)
    assert old is not None and old.state is JobState.FAILED
    assert old.error_code == "JOB_INTERRUPTED"


def test_on_its_own_machine_a_dead_process_is_known_without_waiting(
    engine: Engine, clock: Clock
) -> None:
    a = NodeOf(engine, clock, "node-a", "m1", 11)
    a.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    a.node.beat()
    same_machine = NodeOf(engine, clock, "node-a2", "m1", 12, alive=False)
    job = same_machine.runner.start(JobType.BACKUP, "main", "u1", "vm1")  # lease still valid
    assert job.node == "node-a2"


def test_recovery_leaves_a_vm_to_the_live_node_of_its_host(engine: Engine, clock: Clock) -> None:
    vm = _vm(engine, 1)  # on qemu:///system
    owner = NodeOf(engine, clock, "owner", "m1", 11)
    owner.node.identity = NodeIdentity("owner", vm.host_uri, "m1", 11, T0)
    other = NodeOf(engine, clock, "other", "m2", 22)
    dead = NodeOf(engine, clock, "dead", "m3", 33)
    job = dead.runner.start(JobType.BACKUP, "main", vm.uuid, vm.name)
    owner.node.beat()
    clock.now += LEASE + timedelta(seconds=1)
    owner.node.beat()  # the owner of the VM's host is alive

    assert _recovery(other, clock).recover() == []  # not its VM's host: left to the owner
    recovered = _recovery(owner, clock).recover()
    assert [r.job.id for r in recovered] == [job.id]
    assert recovered[0].job.error_code == "JOB_INTERRUPTED"


def test_concurrent_claims_across_nodes_take_each_job_once(engine: Engine, clock: Clock) -> None:
    nodes = [NodeOf(engine, clock, f"n{i}", f"m{i}", 100 + i) for i in range(4)]
    with SqlUnitOfWork(engine) as uow:
        for n in range(12):
            queue_job(uow, "gc", f"v{n}", None, {}, "test", T0)
        uow.commit()
    claimed: list[tuple[str, int]] = []
    barrier = threading.Barrier(len(nodes))

    def work(n: NodeOf) -> None:
        barrier.wait()
        while True:
            with n.uow() as uow:
                job = uow.jobs.claim_next(n.runner.pid, clock(), n.runner.node_id, T0 + LEASE)
                uow.commit()
            if job is None:
                return
            claimed.append((n.runner.node_id or "", job.id))

    threads = [threading.Thread(target=work, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = sorted(i for _, i in claimed)
    assert len(ids) == 12 and len(set(ids)) == 12
    with SqlUnitOfWork(engine) as uow:
        jobs = [uow.jobs.get(i) for i in ids]
    by_id = dict((i, node) for node, i in claimed)
    assert all(j is not None and j.node == by_id[j.id] for j in jobs)


def test_the_leader_lease_has_one_holder_and_moves_when_it_expires(
    engine: Engine, clock: Clock
) -> None:
    a = NodeOf(engine, clock, "node-a", "m1", 11)
    b = NodeOf(engine, clock, "node-b", "m2", 22)
    assert a.scheduler.lead(clock()) and not b.scheduler.lead(clock())
    clock.now += LEASE - timedelta(seconds=1)
    assert a.scheduler.lead(clock())  # renewed: good for another LEASE from now
    clock.now += LEASE - timedelta(seconds=1)
    assert not b.scheduler.lead(clock())
    clock.now += timedelta(seconds=2)  # a stopped renewing
    assert b.scheduler.lead(clock()) and not a.scheduler.lead(clock())
    with b.uow() as uow:
        assert uow.leases.holder(SCHEDULER_LEASE, clock()) == "node-b"


def test_two_schedulers_over_a_day_fire_every_slot_once_across_a_failover(
    engine: Engine, clock: Clock
) -> None:
    _vm(engine, 1, "hourly")
    with SqlUnitOfWork(engine) as uow:
        schedule = parse_schedule("every:4h", "UTC")
        policy = Policy("hourly", schedule, Retention(daily=7), ZoneInfo("UTC"))
        uow.policies.add("main", policy, T0 - timedelta(minutes=1))
        uow.commit()
    a = NodeOf(engine, clock, "node-a", "m1", 11)
    b = NodeOf(engine, clock, "node-b", "m2", 22)
    for n in (a, b):  # ticks 10 simulated minutes apart: a lease must outlast one
        n.scheduler.lease = timedelta(minutes=25)
    fired: dict[str, list[str]] = {"node-a": [], "node-b": []}
    a_alive = True
    assert a.scheduler.lead(clock())  # a leads from the start (else whoever ticks first)

    def tick(n: NodeOf, name: str) -> None:
        barrier.wait()
        fired[name] += [f.key for f in n.scheduler.tick()]

    end = T0 + timedelta(hours=23, minutes=50)  # the last tick: 23:50
    while clock.now < end:
        clock.now += timedelta(minutes=10)
        racers = [(a, "node-a")] if a_alive else []
        racers.append((b, "node-b"))
        barrier = threading.Barrier(len(racers))
        threads = [threading.Thread(target=tick, args=r) for r in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with SqlUnitOfWork(engine) as uow:  # as if a worker ran the slot's backup
            for job in uow.jobs.find(state=JobState.QUEUED):
                job.state, job.ended_at = JobState.COMPLETED, clock.now
                uow.jobs.update(job)
            uow.commit()
        if clock.now >= T0 + timedelta(hours=7, minutes=50):
            # node a dies after its 07:50 tick: its lease runs to 08:15, so the 08:00 slot
            # falls in the gap; b takes over at 08:20 and catches it up
            a_alive = False
    keys = fired["node-a"] + fired["node-b"]
    assert sorted(keys) == [f"2026-06-01T{h:02}:00 UTC" for h in (0, 4, 8, 12, 16, 20)]
    assert len(set(keys)) == len(keys)
    assert fired["node-a"] == ["2026-06-01T00:00 UTC", "2026-06-01T04:00 UTC"]
    assert fired["node-b"][0] == "2026-06-01T08:00 UTC"  # caught up after the failover
    with SqlUnitOfWork(engine) as uow:
        assert len(uow.jobs.find(job_type=JobType.BACKUP)) == 6


def test_a_job_of_an_older_node_with_our_pid_is_orphaned_at_once(
    engine: Engine, clock: Clock
) -> None:
    # a container restarted: the new process has the old one's pid, which is alive (it is us)
    old = NodeOf(engine, clock, "old", "m1", 11)
    held = old.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    old.node.beat()
    clock.now += timedelta(seconds=1)
    new = NodeOf(engine, clock, "new", "m1", 11)
    job = new.runner.start(JobType.BACKUP, "main", "u1", "vm1")  # the lease still runs
    assert job.node == "new"
    assert _interrupted(new, held.id)


def test_a_node_claims_the_jobs_of_its_hosts_vms_and_of_hosts_without_a_node(
    engine: Engine, clock: Clock
) -> None:
    a, b = _live_nodes(engine, clock)
    on: dict[str, VmItem] = {}
    for n, host in enumerate(["qemu+tcp://a/system", "qemu+tcp://b/system", "qemu:///nodeless"]):
        vm = replace(_vm(engine, n + 1), host_uri=host)
        with SqlUnitOfWork(engine) as uow:
            uow.vms.save(vm)
            uow.commit()
        on[host] = vm
    with SqlUnitOfWork(engine) as uow:
        for vm in on.values():
            queue_job(uow, "backup", "main", (vm.uuid, vm.name), {"vm": vm.uuid}, "t", T0)
        queue_job(uow, "gc", "main", None, {}, "t", T0)
        uow.commit()

    assert _claims(a) == ["vm1", "vm3", None]  # its host's VM, the nodeless host's, the gc
    assert _claims(b) == ["vm2"]


def _live_nodes(engine: Engine, clock: Clock) -> tuple[NodeOf, NodeOf]:
    """Nodes a (host qemu+tcp://a/system) and b, both having beaten."""
    a = NodeOf(engine, clock, "a", "m1", 11)
    b = NodeOf(engine, clock, "b", "m2", 22)
    a.node.beat()
    b.node.beat()
    return a, b


def _claims(n: NodeOf) -> list[str | None]:
    """The VM names of every job node ``n`` claims, in order, until none is left for it."""
    got = []
    host = n.node.identity.host
    while True:
        with n.uow() as uow:
            job = uow.jobs.claim_next(n.runner.pid, T0, n.runner.node_id, T0 + LEASE, host)
            uow.commit()
        if job is None:
            return got
        got.append(job.vm_name)


def _interrupted(n: NodeOf, job_id: int) -> bool:
    """Whether job ``job_id`` was closed as interrupted (its node was judged dead)."""
    with n.uow() as uow:
        closed = uow.jobs.get(job_id)
    return closed is not None and closed.error_code == "JOB_INTERRUPTED"


def _recovery(n: NodeOf, clock: Clock) -> RecoveryService:
    ctx = ServiceContext(n.uow, n.runner, None, clock)  # type: ignore[arg-type]
    return RecoveryService(ctx, None, None)  # type: ignore[arg-type]


def test_recovery_never_closes_a_job_this_process_runs(engine: Engine, clock: Clock) -> None:
    # the server's worker and its scheduler thread: two NodeServices of one process
    worker = NodeOf(engine, clock, "node-a", "m1", 11)
    scheduler = NodeOf(engine, clock, "node-a", "m1", 11)
    job = worker.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    with worker.node.hold(job.id):
        clock.now += LEASE + timedelta(seconds=5)  # the catalog was away: no beat renewed it
        assert _recovery(scheduler, clock).recover() == []
        with pytest.raises(OperationInProgress):
            scheduler.runner.start(JobType.BACKUP, "main", "u1", "vm1")
        assert scheduler.node.beat() == 1  # any heartbeat of the process renews it
    clock.now += LEASE + timedelta(seconds=1)  # no longer run here and its lease passed
    assert [r.job.id for r in _recovery(scheduler, clock).recover()] == [job.id]


def test_two_first_beats_of_one_node_racing_both_succeed(engine: Engine, clock: Clock) -> None:
    """A server's worker and scheduler are two services of one node: their first beats may
    meet. The second waits for the first's commit and renews the row it inserted (an update
    then an insert failed here on PostgreSQL: neither update saw the other's row)."""
    first, second = (NodeOf(engine, clock, "node-a", "m1", 11) for _ in range(2))
    LATER = T0 + timedelta(seconds=10)
    started = threading.Event()
    failed: list[BaseException] = []

    def beat_meanwhile() -> None:
        started.set()
        try:
            with SqlUnitOfWork(engine) as uow:
                uow.nodes.beat(Node("node-a", "qemu+tcp://node-a/system", "m1", 11, T0, LATER))
                uow.commit()
        except BaseException as e:
            failed.append(e)

    with first.uow() as uow:  # the first beat's row inserted, not yet committed
        uow.nodes.beat(Node("node-a", "qemu+tcp://node-a/system", "m1", 11, T0, T0))
        racing = threading.Thread(target=beat_meanwhile)
        racing.start()
        started.wait()
        racing.join(1.0)  # it waits for the row's commit (SQLite: for the write lock)
        uow.commit()
    racing.join(30)
    assert not racing.is_alive() and failed == []
    with SqlUnitOfWork(engine) as uow:
        assert uow.nodes.get("node-a") == Node(
            "node-a", "qemu+tcp://node-a/system", "m1", 11, T0, LATER
        )
    clock.now = T0 + timedelta(seconds=20)
    assert second.node.beat() == 0
    with SqlUnitOfWork(engine) as uow:
        [node] = uow.nodes.all()
    assert (node.id, node.started_at, node.heartbeat_at) == ("node-a", T0, clock())


def test_a_job_of_a_node_with_no_row_yet_is_judged_by_its_lease(
    engine: Engine, clock: Clock
) -> None:
    cli = NodeOf(engine, clock, "cli-a", "m1", 11)
    held = cli.runner.start(JobType.BACKUP, "main", "u1", "vm1")  # before its first beat
    with cli.uow() as uow:
        assert uow.nodes.get("cli-a") is None
    other = NodeOf(engine, clock, "node-b", "m2", 22, alive=False)  # pid 11 is not its own
    with pytest.raises(OperationInProgress):
        other.runner.start(JobType.BACKUP, "main", "u1", "vm1")
    clock.now += LEASE + timedelta(seconds=1)
    assert other.runner.start(JobType.BACKUP, "main", "u1", "vm1").node == "node-b"
    assert _interrupted(cli, held.id)


def test_only_jobs_that_touch_a_vms_disks_wait_for_its_hosts_node(
    engine: Engine, clock: Clock
) -> None:
    a, _b = _live_nodes(engine, clock)  # b is live: its host is served
    asks: list[tuple[str, dict[str, object]]] = [
        ("backup", {}),
        ("restore-test", {"point": 1}),
        ("restore", {"point": 1, "mode": "as-new"}),
        ("restore", {"point": 1, "mode": "disks-only", "directory": "/d"}),
        ("verify", {}),
        ("copy", {"from": "main", "to": "other"}),
    ]
    vms = [replace(_vm(engine, n + 1), host_uri="qemu+tcp://b/system") for n in range(6)]
    with SqlUnitOfWork(engine) as uow:
        for vm, (op, request) in zip(vms, asks, strict=True):
            uow.vms.save(vm)
            queue_job(uow, op, "main", (vm.uuid, vm.name), {"vm": vm.uuid, **request}, "t", T0)
        uow.commit()
    assert _claims(a) == ["vm4", "vm5", "vm6"]  # disks-only, verify, copy: any node runs them


def test_a_set_and_a_restore_to_another_host_wait_for_that_hosts_node(
    engine: Engine, clock: Clock
) -> None:
    """A job's host is its request's ``host`` when it has one (a set's, a restore's
    ``--host``), else its VM's: only a node of that host claims it."""
    a, b = _live_nodes(engine, clock)
    vm = replace(_vm(engine, 1), host_uri="qemu+tcp://a/system")
    b_host = "qemu+tcp://b/system"
    with SqlUnitOfWork(engine) as uow:
        uow.vms.save(vm)
        group = {"vms": [vm.uuid], "keep_until": None, "host": b_host}
        queue_job(uow, "backup-set", "main", None, group, "t", T0)
        restore = {"vm": vm.uuid, "point": 1, "mode": "as-new", "name": "n", "host": b_host}
        queue_job(uow, "restore", "main", (vm.uuid, vm.name), restore, "t", T0)
        spans = {"vms": [vm.uuid], "keep_until": None, "host": None}  # no host: any node
        queue_job(uow, "backup-set", "other", None, spans, "t", T0)
        uow.commit()
    assert _claims(a) == [None]  # only the set of no host
    assert _claims(b) == [None, "vm1"]  # its host's set, then the restore to its host


def test_an_export_is_recovered_on_the_machine_that_ran_it(engine: Engine, clock: Clock) -> None:
    vm = _vm(engine, 1)  # on qemu:///system
    owner = NodeOf(engine, clock, "owner", "m1", 11)
    owner.node.identity = NodeIdentity("owner", vm.host_uri, "m1", 11, T0)
    ran = NodeOf(engine, clock, "ran", "m3", 33)
    job = ran.runner.start(JobType.EXPORT, "main", vm.uuid, vm.name)
    ran.node.beat()
    clock.now += LEASE + timedelta(seconds=1)
    owner.node.beat()
    assert _recovery(owner, clock).recover() == []  # its socket and overlay are on m3
    again = NodeOf(engine, clock, "ran-again", "m3", 34)  # m3's node, restarted
    assert [r.job.id for r in _recovery(again, clock).recover()] == [job.id]


def test_the_node_host_is_stored_as_hosts_are_compared(engine: Engine, clock: Clock) -> None:
    settings = Settings.from_env({"VMVAULT_NODE_HOST": " QEMU+tcp://b/system/ "})
    assert settings.node_host == "qemu+tcp://b/system"
    assert host_key("qemu:///") == "qemu:///" and host_key("qemu+tcp://b/") == "qemu+tcp://b"
    b = NodeOf(engine, clock, "b", "m2", 22)
    b.node.identity = NodeIdentity("b", settings.node_host, "m2", 22, T0)
    b.node.beat()
    vm = replace(_vm(engine, 1), host_uri="qemu+tcp://b/system")
    with SqlUnitOfWork(engine) as uow:
        uow.vms.save(vm)
        queue_job(uow, "backup", "main", (vm.uuid, vm.name), {"vm": vm.uuid}, "t", T0)
        uow.commit()
    with b.uow() as uow:
        job = uow.jobs.claim_next(22, T0, "b", T0 + LEASE, b.node.identity.host)
        uow.commit()
    assert job is not None and job.vm_name == "vm1"
