"""Faults of the many-hosts deployment on the real lab: two ``vmvault serve`` nodes on one
PostgreSQL catalog — the main libvirt host's and the lab's second host's
(``VMVAULT_NODE_HOST``) — each backing up a real guest of its own host, and the three faults
of docs/deployment.md done to real processes:

1. the second host's node SIGKILLed while it reads its guest's disks: the other node keeps
   working, and the killed node's restart (its start-up recovery) aborts the libvirt job,
   thaws the guest and closes the job ``JOB_INTERRUPTED``; no half point; the next backup
   works and verifies;
2. PostgreSQL restarted (``pg_ctl restart -m fast``) under a running backup: the job ends
   cleanly (failed or completed), nothing is lost, both nodes beat again and back up without
   a restart of their own;
3. the scheduler's leader SIGKILLed ten seconds before a policy's slot: the other node takes
   the lease once it has expired and catches the slot up, once: the backup of its own guest
   runs at once, the killed node's guest's waits for that node's restart; the restarted node
   fires nothing again.

Both nodes and the CLI read a clock shifted by the seconds in ``VMVAULT_TEST_CLOCK_FILE``
(tests only: vmvault/clock.py; none are written before fault 3; the unit tests walk a
simulated day): for fault 3 the test moves their clock forward, at once and without a
restart, so that a ``daily@HH:MM`` slot is 25 s away instead of up to a minute and a quarter
of the wall clock's.  The vault is a local directory both nodes reach (one machine); the
catalog a database of the session's PostgreSQL (tests/pglab.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import psycopg
import pytest

from tests.conftest import CliRunner, make_cli
from tests.integration.conftest import MAIN_HOST, assert_vm_clean, lab_settings
from tests.integration.test_server import ServerProcess
from tests.pglab import Postgres
from vmvault.domain.node import HEARTBEAT, LEASE
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

MAIN_VM = f"{lab_prefix()}-standard-1"
SECOND_VM = f"{lab_prefix()}h-writer-1"
#: How far the slot of fault 3 is when the nodes' clock has moved: a tick of the leader on the
#: moved clock (at most :data:`HEARTBEAT`), then the leader killed 10 s before the slot.
AHEAD = timedelta(seconds=25)


class Node(ServerProcess):
    """``vmvault serve`` as one node: the shared home and catalog, its own host and log."""

    def __init__(self, home: Path, name: str, extra: dict[str, str]) -> None:
        super().__init__(home)
        self.name = name
        self.log = home / f"serve-{name}.log"
        self.extra = extra

    def env(self) -> dict[str, str]:
        return super().env() | self.extra | {"VMVAULT_JOB_WORKERS": "1"}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, reaped: its pid is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None


@dataclass
class Fleet:
    main: Node
    second: Node
    uri: str  # the second host's
    home: Path
    cli: CliRunner  # the real command on the same home and catalog
    pg: Postgres
    db: str
    clock: Path  # VMVAULT_TEST_CLOCK_FILE of the nodes and the CLI

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``query`` on the catalog (a connection of its own: the server restarts)."""
        run_dir = self.pg.cluster.run_dir
        with psycopg.connect(host=str(run_dir), user="vmvault", dbname=self.db) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def node_id(self, node: Node) -> str:
        [(nid,)] = self.sql("SELECT id FROM nodes WHERE pid = %s", node.pid)
        return str(nid)

    def leader(self) -> tuple[str, datetime, datetime]:
        [row] = self.sql("SELECT holder, acquired_at, expires_at FROM leases")
        return str(row[0]), row[1], row[2]

    def points_on_disk(self) -> tuple[set[str], set[str]]:
        """The vault's index directories and manifests (equal: no half-written point)."""
        vault = self.home / "vaults" / "main"
        indexes = {p.name for p in (vault / "indexes").iterdir()}
        manifests = {p.name.removesuffix(".manifest") for p in (vault / "manifests").iterdir()}
        return indexes, manifests


def _wait_for(what: str, check: Any, timeout: float, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.OperationalError):  # the catalog restarting
            if found := check():
                return found
        time.sleep(poll)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def fleet(
    lab: dict[str, Any],
    second_host: dict[str, Any],
    postgres: Postgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    """Both nodes serving, the two guests registered in one vault, on a catalog of its own."""
    home = tmp_path_factory.mktemp("nodes-home")
    if not postgres.cluster.running():  # a fault test that failed with the server stopped
        postgres.cluster.start()
    db = postgres.create()
    # none yet: the wall clock; in the lab's directory (the setting's second opt-in)
    clock = lab_settings(home).lab_dir / f"clock-offset-{db}"
    env = {"VMVAULT_CATALOG_URL": postgres.url(db), "VMVAULT_TEST_CLOCK_FILE": str(clock)}
    uri = second_host["uri"]
    fleet = Fleet(
        Node(home, "main", env | {"VMVAULT_NODE_HOST": MAIN_HOST}),
        Node(home, "second", env | {"VMVAULT_NODE_HOST": uri}),
        uri, home, make_cli(home, env), postgres, db, clock,
    )  # fmt: skip
    for args in (
        ("vault", "create", "main", "--location", "dc1"),
        ("host", "add", MAIN_HOST, "--location", "dc1"),
        ("host", "add", uri, "--location", "dc1"),
        ("discover",),
        ("register", MAIN_VM, SECOND_VM),
    ):
        done = fleet.cli(*args)
        assert done.code == 0, (args, done)
    try:
        fleet.main.start()  # first: its scheduler takes the leader lease
        fleet.second.auth = fleet.main.auth  # one catalog, one token
        fleet.second.start()
        yield fleet
    finally:
        for node in (fleet.main, fleet.second):
            if node.proc is not None:
                node.stop()
        clock.unlink(missing_ok=True)
        if not postgres.cluster.running():
            postgres.cluster.start()
        postgres.drop(db)


def _libvirt_job_and_checkpoints(uri: str, name: str) -> tuple[int, list[str]]:
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
        return dom.jobInfo()[0], [c.getName() for c in dom.listAllCheckpoints()]
    finally:
        conn.close()


def _lines(job: dict[str, Any]) -> list[str]:
    """The job's log lines without their time stamps."""
    return [line.split(" ", 2)[2] for line in job["log"]]


def test_a_node_killed_mid_backup_is_recovered_by_its_restart(fleet: Fleet) -> None:
    main, second = fleet.main, fleet.second
    # queued through the main node's API; the second host's node claims it (its VM's host)
    [job] = main.post("/backups", {"vms": [SECOND_VM]})
    reading = main.wait(
        job["id"],
        until=lambda j: j["state"] != "queued" and (j["bytes_done"] > 0 or j["ended_at"]),
        poll=0.05,
        timeout=180,
    )
    assert reading["state"] == "in-progress", reading  # still reading: not ended yet
    assert reading["node"] == fleet.node_id(second), reading
    second.kill()
    t_kill = time.monotonic()
    killed = main.get(f"/jobs/{job['id']}")
    assert killed["state"] == "in-progress" and killed["bytes_done"] < killed["bytes_total"]
    stale_job, stray = _libvirt_job_and_checkpoints(fleet.uri, SECOND_VM)
    assert stale_job != libvirt.VIR_DOMAIN_JOB_NONE, "the dead node's pull job is still running"
    assert stray, "the dead node's checkpoint"

    # meanwhile the other node keeps working: a backup of its own guest, queued now
    [own] = main.post("/backups", {"vms": [MAIN_VM]})
    own_done = main.wait(own["id"], timeout=300)
    assert own_done["state"] == "completed", main.log.read_text()[-3000:]
    assert own_done["node"] == fleet.node_id(main)
    # …and leaves the dead node's job to the node of its VM's host (only it reaches the guest)
    assert main.get(f"/jobs/{job['id']}")["state"] == "in-progress"

    second.start()  # start-up recovery
    closed = main.get(f"/jobs/{job['id']}")
    recovered_s = time.monotonic() - t_kill
    assert closed["state"] == "failed" and closed["error_code"] == "JOB_INTERRUPTED", closed
    lines = _lines(closed)
    for words in ["aborted the stale backup job"] + [f"deleted checkpoint {c}" for c in stray]:
        assert any(line.startswith(f"recovery: {words}") for line in lines), (words, lines)
    work_dir = lab_settings(fleet.home).work_dir
    assert_vm_clean(work_dir, SECOND_VM, set(), uri=fleet.uri)  # thawed, no job, no checkpoint
    indexes, manifests = fleet.points_on_disk()
    assert indexes == manifests and len(manifests) == 1, (indexes, manifests)  # MAIN_VM's

    # the next backup of the VM works (a full read: it has no point yet) and verifies
    [again] = main.post("/backups", {"vms": [SECOND_VM]})
    done = main.wait(again["id"], timeout=300)
    assert done["state"] == "completed", second.log.read_text()[-3000:]
    assert done["node"] == fleet.node_id(second)
    [point] = main.get(f"/points?vm={SECOND_VM}")
    check = main.post("/verify", {"point": point["id"]})
    assert main.wait(check["id"], timeout=300)["state"] == "completed"
    print(f"\nkilled mid-read at {reading['bytes_done']} of {reading['bytes_total']} bytes; "
          f"job closed by the restart {recovered_s:.1f} s after the kill")  # fmt: skip


def test_postgres_restarted_mid_backup(fleet: Fleet) -> None:
    main, second = fleet.main, fleet.second
    pids = (main.pid, second.pid)
    ids = {fleet.node_id(main), fleet.node_id(second)}
    before = {p["id"] for p in main.get(f"/points?vm={SECOND_VM}")}
    [job] = main.post("/backups", {"vms": [SECOND_VM]})
    working = main.wait(  # into its work: a phase (freezing, reading …) begun
        job["id"],
        until=lambda j: j["ended_at"] or any(" phase: " in line for line in j["log"]),
        poll=0.05,
        timeout=180,
    )
    assert working["state"] == "in-progress", working
    t0 = time.monotonic()
    fleet.pg.cluster.restart()
    restarted_at = datetime.now(UTC)
    restart_s = time.monotonic() - t0

    # the job ends by itself: completed, or failed having cleaned up; never left running
    ended = main.wait(job["id"], timeout=LEASE.total_seconds() * 3)
    ended_s = time.monotonic() - t0
    assert ended["state"] in ("completed", "failed"), ended
    # ended by its own node (a failure's end written once the server was back), not by the
    # lease's recovery 30 to 60 s later
    assert ended["error_code"] != "JOB_INTERRUPTED", ended
    indexes, manifests = fleet.points_on_disk()
    assert indexes == manifests, (indexes, manifests)
    points = {p["id"] for p in main.get(f"/points?vm={SECOND_VM}")}
    assert len(points - before) == (ended["state"] == "completed"), (ended, points, before)
    assert points <= manifests  # every point of the catalog is in the vault
    used = {p["checkpoint"] for p in main.get(f"/points?vm={SECOND_VM}")} - {None}
    assert_vm_clean(lab_settings(fleet.home).work_dir, SECOND_VM, used, exact=False, uri=fleet.uri)

    # both nodes beat again, serve, and back up, without a restart of their own
    def beaten() -> bool:
        rows = fleet.sql("SELECT id, heartbeat_at FROM nodes WHERE id = ANY(%s)", list(ids))
        return len(rows) == 2 and all(at > restarted_at for _, at in rows)

    _wait_for("both nodes' heartbeat after the restart", beaten, HEARTBEAT.total_seconds() * 3)
    assert (main.pid, second.pid) == pids
    for node in (main, second):
        assert node.get("/health")["status"] == "ok"
    jobs = main.post("/backups", {"vms": [SECOND_VM, MAIN_VM]})
    for j in jobs:
        assert main.wait(j["id"], timeout=300)["state"] == "completed", j
    phases = [line for line in _lines(ended) if line.startswith("phase: ")]
    print(f"\npg_ctl restart {restart_s:.1f} s; the job ended {ended['state']} "
          f"({ended['error_code']}) {ended_s:.1f} s after the restart began; {phases}")  # fmt: skip


def _next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _move_clock(fleet: Fleet, by: timedelta) -> datetime:
    """Move the clock of every node (and of the CLI) forward ``by`` from the wall clock's;
    returns their time at the move (a clock read after it is not earlier)."""
    assert by >= timedelta(0)  # forward only (vmvault/clock.py)
    moved_at = datetime.now(UTC) + by
    tmp = fleet.clock.with_name(fleet.clock.name + ".tmp")
    tmp.write_text(f"{by.total_seconds():.6f}\n")
    tmp.rename(fleet.clock)
    return moved_at


def _beat_after(node: Node, since: datetime) -> datetime | None:
    """When ``node``'s scheduler last finished a tick (wall clock, ``/health``), if after
    ``since``."""
    beat = datetime.fromisoformat(node.get("/health")["components"]["scheduler"]["last_beat"])
    return beat if beat > since else None


def test_the_leader_killed_another_node_takes_over_and_the_slot_runs_once(fleet: Fleet) -> None:
    # the policy's slot: the next minute of the wall clock at least AHEAD away…
    slot = _next_minute(datetime.now(UTC) + AHEAD)
    made = fleet.cli("policy", "create", "p", "--schedule", f"daily@{slot:%H:%M}", "--daily", "7")
    assert made.code == 0, made
    assert fleet.cli("protect", MAIN_VM, SECOND_VM, "--policy", "p").code == 0
    while (offset := slot - AHEAD - datetime.now(UTC)) < timedelta(0):  # the commands were slow
        slot += timedelta(minutes=1)
        assert fleet.cli("policy", "update", "p", "--schedule", f"daily@{slot:%H:%M}").code == 0
    # …and the nodes' clock moved so that it is AHEAD away now
    t0 = time.monotonic()
    moved_at = _move_clock(fleet, offset)

    def now() -> datetime:  # the nodes' clock
        return datetime.now(UTC) + offset

    # a tick of the leader on the moved clock (a lease it took or renewed since)
    def renewed() -> tuple[str, datetime, datetime] | None:
        lead = fleet.leader()
        return lead if lead[2] >= moved_at + LEASE else None

    leader, _, _ = _wait_for("a lease on the moved clock", renewed, HEARTBEAT.total_seconds() * 2)
    nodes = {fleet.node_id(n): n for n in (fleet.main, fleet.second)}
    old = nodes[leader]
    [new_id] = set(nodes) - {leader}
    new = nodes[new_id]
    vm_of = {fleet.main.name: MAIN_VM, fleet.second.name: SECOND_VM}
    key = f"{slot:%Y-%m-%dT%H:%M} UTC"

    def slot_jobs() -> dict[str, tuple[int, datetime]]:
        """The slot's jobs by VM name (exactly one each)."""
        rows = fleet.sql(
            "SELECT v.name, j.id, j.created_at FROM jobs j JOIN vms v ON v.uuid = j.vm_uuid "
            "WHERE j.origin = %s",
            f"policy p at {key}",
        )
        assert len(rows) == len({vm for vm, _, _ in rows}), rows
        return {vm: (job_id, at) for vm, job_id, at in rows}

    time.sleep(max(0.0, (slot - now()).total_seconds() - 10))
    holder, _, expires = fleet.leader()
    assert holder == leader and expires > slot, (holder, expires, slot)
    old.kill()
    killed_at = now()
    t_kill = time.monotonic()
    before_kill_s = t_kill - t0

    def taken() -> tuple[str, datetime, datetime] | None:
        lead = fleet.leader()
        return lead if lead[0] == new_id else None

    _, acquired, _ = _wait_for("the takeover", taken, (LEASE + HEARTBEAT).total_seconds() * 2)
    takeover_s = time.monotonic() - t_kill
    assert acquired >= expires  # never two leaders: taken once the dead one's lease expired
    jobs = _wait_for("the slot's jobs", lambda: len(slot_jobs()) == 2 and slot_jobs(), 30)
    # queued by the new leader once it led: the slot missed during the failover, caught up
    assert all(at >= acquired > killed_at for _, at in jobs.values()), (jobs, acquired)
    survivor_job, _ = jobs[vm_of[new.name]]
    done = new.wait(survivor_job, timeout=300)
    assert done["state"] == "completed" and done["node"] == new_id, done
    dead_job, _ = jobs[vm_of[old.name]]
    assert new.get(f"/jobs/{dead_job}")["state"] == "queued"  # for its host's node: waits
    restarting = datetime.now(UTC)
    old.start()  # back: it runs its host's job, does not lead, and fires nothing again
    done = new.wait(dead_job, timeout=300)
    assert done["state"] == "completed" and done["node"] == fleet.node_id(old), done
    # a tick of each scheduler with both alive: the restarted node's, then the leader's
    back = _wait_for("the restarted node's tick", lambda: _beat_after(old, restarting), 60)
    _wait_for("the leader's tick", lambda: _beat_after(new, back), 60)
    assert {vm: j for vm, (j, _) in slot_jobs().items()} == {
        vm: j for vm, (j, _) in jobs.items()
    }  # still the two: each VM's backup of the slot exactly once
    assert fleet.leader()[0] == new_id
    assert fleet.sql("SELECT name, last_key FROM schedule_state") == [("policy:p", key)]
    print(f"\nclock moved {offset.total_seconds():.1f} s; leader killed {before_kill_s:.1f} s "
          f"after the move, {(slot - killed_at).total_seconds():.1f} s before the slot; the "
          f"other node led {takeover_s:.1f} s after the kill")  # fmt: skip
