"""Backup sets over the in-memory hypervisor, a real SQLite catalog and a real local vault: the
orchestration of services/backup_sets.py — three points with one set id and one instant; a VM
failing phase 1 or never reaching its point (the gate broken, every other VM released and
undone); a publish that fails after others published (rolled back); cancel in each phase; a
kill at each journal step, cleaned up by the next start's recovery."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.unit.test_backup_service import CHUNK, URI, World, now
from vmvault.cli import backups as cli_backups
from vmvault.cli import points as cli_points
from vmvault.cli import restores as cli_restores
from vmvault.cli import set_restore as cli_set_restore
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.backup_set import Hold, SetStep, set_window_ms, unfinished_set
from vmvault.domain.errors import (
    BackupSetAborted,
    BackupSetTimeout,
    Cancelled,
    InvalidInput,
    RestoreTargetExists,
    SetIncomplete,
    StorageUnreachable,
)
from vmvault.domain.job import Job, JobState, JobType, JournalStep
from vmvault.domain.placement import OwnNode
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.hypervisor.memory import (
    Killed,
    MemoryBackupDriver,
    MemoryDisk,
    MemoryDomain,
    MemoryHypervisor,
)
from vmvault.persistence.engine import open_catalog
from vmvault.services import backups as backups_mod
from vmvault.services.backup.cleanup import discard
from vmvault.services.backup.set_gate import SetGate
from vmvault.services.backup_sets import BackupSetService, SetOutcome
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobQueries
from vmvault.services.point_listing import PointListing
from vmvault.services.points import PointService
from vmvault.services.recovery import RecoveryService

MiB = 1 << 20
NAMES = ("vm1", "vm2", "vm3")
UUIDS = {n: f"{i}aaaaaaa-2222-3333-4444-555555555555" for i, n in enumerate(NAMES, 1)}


class SetWorld(World):
    def sets(self, **kw: Any) -> BackupSetService:
        service = self.service()
        ctx = ServiceContext(self.uow, service.runner, self.vaults(), now, 1, OwnNode(URI))
        return BackupSetService(ctx, service, **kw)

    def run(
        self, sets: BackupSetService | None = None, names: tuple[str, ...] = NAMES
    ) -> SetOutcome:
        return (sets or self.sets()).backup_set(None, list(names))

    def recover(self) -> RecoveryService:
        recovery = self.recovery()
        recovery.sets = self.sets()
        return recovery

    def d(self, name: str) -> MemoryDomain:
        return self.hv.domains[UUIDS[name]]

    def all_points(self) -> list[Any]:
        with self.uow() as uow:
            return [p for n in NAMES for p in uow.points.for_vm(UUIDS[n])]

    def assert_all_clean(self, points: int = 0) -> None:
        """No job, every guest running and thawed, only the catalog's checkpoints, no half
        point and no manifest but the catalog's points."""
        with self.uow() as uow:
            known = {r.name for n in NAMES for r in uow.checkpoints.for_vm(UUIDS[n])}
        for n in NAMES:
            dom = self.d(n)
            assert dom.job is None and dom.owner is None, n
            assert dom.power is PowerState.RUNNING, n
            assert dom.agent is None or not dom.agent.frozen, n
            assert set(dom.checkpoints) <= known, (n, dom.checkpoints, known)
        store = self.store()
        listed = {p.id for p in self.all_points()}
        assert set(store.list_index_dirs()) == listed
        assert {p for p in store.list_index_dirs() if store.has_manifest(p)} == listed
        assert len(listed) == points

    def children(self, parent: int) -> list[Job]:
        with self.uow() as uow:
            return uow.jobs.find(parent_id=parent)


def _join_set_threads() -> None:
    for t in threading.enumerate():
        if t.name.startswith("set-"):
            t.join(10)


@pytest.fixture()
def world(tmp_path: Path, catalog_url: str) -> Iterator[SetWorld]:
    engine = open_catalog(catalog_url)
    hv = MemoryHypervisor(URI)
    w = SetWorld(tmp_path, engine, hv, MemoryBackupDriver(hv))
    t = now()
    with w.uow() as uow:
        uow.hosts.add(URI, "local", "memory", t)
        uow.commit()
    w.vaults().create("main", "local", None, chunk_size=CHUNK)
    for n in NAMES:
        dom = hv.add(MemoryDomain(UUIDS[n], n, [MemoryDisk("vda", 3 * MiB)]))
        dom.disk("vda").write(0, n.encode() * 1000)
        facts = hv.domain_facts(URI, dom.uuid)
        assert facts is not None
        vm = VmItem(
            dom.uuid, n, URI, "memory", "memory", PowerState.RUNNING, list(facts.disks), [],
            True, facts.fingerprint, t, t, state=VmState.REGISTERED, vault="main",
            registered_at=t,
        )  # fmt: skip
        with w.uow() as uow:
            uow.vms.save(vm)
            uow.commit()
    yield w
    _join_set_threads()
    engine.dispose()


# --- a healthy set ----------------------------------------------------------------------------


def test_a_set_of_three_vms_gives_three_points_with_one_set_id_and_instant(world: SetWorld) -> None:
    out = world.run()
    assert out.result is not None, world.log(out.job.id)
    points = world.all_points()
    assert len(points) == 3 and {p.vm_name for p in points} == set(NAMES)
    assert {p.set_id for p in points} == {out.result.set_id}
    assert len({p.created_at for p in points}) == 1
    assert out.job.state is JobState.COMPLETED and out.job.type.value == "backup-set"
    children = world.children(out.job.id)
    assert sorted(j.vm_name or "" for j in children) == [f"memory/{n}" for n in NAMES]
    assert all(j.state is JobState.COMPLETED and j.parent_id == out.job.id for j in children)
    steps = world.steps(out.job.id)
    assert steps == [SetStep.PLANNED, SetStep.PUBLISHING, SetStep.PUBLISHED]
    manifest = world.store().read_manifest(points[0].id)
    assert manifest.extra["set"]["id"] == out.result.set_id
    assert len(manifest.extra["set"]["vms"]) == 3
    # every guest was frozen once, and released
    assert all(world.d(n).agent.freezes == 1 for n in NAMES)  # type: ignore[union-attr]
    world.assert_all_clean(points=3)
    # the next set is incremental for every VM
    world.d("vm2").disk("vda").write(MiB, b"new")
    again = world.run()
    assert again.result is not None
    assert all(d.incremental for p in again.result.points for d in p.disks)


def test_a_set_needs_two_vms_of_one_host(world: SetWorld) -> None:
    with pytest.raises(InvalidInput):
        world.run(names=("vm1",))
    with pytest.raises(InvalidInput):
        world.run(names=("vm1", "vm1"))


# --- failures -------------------------------------------------------------------------------


def test_a_vm_failing_phase_1_leaves_no_point_for_any_vm(world: SetWorld) -> None:
    # another live process holds vm3: its point cannot be taken (BACKUP_JOB_RUNNING)
    world.d("vm3").owner = SimpleNamespace(alive=True)  # type: ignore[assignment]
    out = world.run()
    world.d("vm3").owner = None
    assert out.result is None and out.error is not None
    assert out.error.code == "BACKUP_SET_FAILED" and "memory/vm3" in out.error.text
    codes = {c.job.vm_name: c.job.error_code for c in out.children}
    assert codes["memory/vm3"] == "BACKUP_JOB_RUNNING"
    assert all(c.job.state.final and c.result is None for c in out.children)
    world.assert_all_clean(points=0)
    assert all(world.d(n).checkpoints == [] for n in NAMES)


def test_a_vm_that_never_reaches_its_point_fails_the_set_in_time(world: SetWorld) -> None:
    service = world.service()

    def slow(job: Job) -> None:
        if job.vm_name == "memory/vm3":
            time.sleep(1.5)

    service.window_observers.append(slow)
    ctx = ServiceContext(world.uow, service.runner, world.vaults(), now, 1, OwnNode(URI))
    sets = BackupSetService(ctx, service, hold_timeout=0.3)
    started = time.monotonic()
    out = sets.backup_set(None, list(NAMES))
    assert out.error is not None and out.error.code == "BACKUP_SET_FAILED"
    assert BackupSetTimeout.code in {c.job.error_code for c in out.children} or "did not reach" in (
        out.error.text
    )
    assert "memory/vm3" in out.error.text
    assert time.monotonic() - started < 10
    world.assert_all_clean(points=0)


def test_a_publish_that_fails_after_others_published_is_rolled_back(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backups_mod.write_manifest

    def flaky(store: Any, plan: Any, *args: Any) -> None:
        if plan.vm.name == "vm3":
            time.sleep(0.5)  # the others publish first
            raise OSError("disk full")
        real(store, plan, *args)

    monkeypatch.setattr(backups_mod, "write_manifest", flaky)
    out = world.run()
    assert out.error is not None and "memory/vm3" in out.error.text
    # the others had written their manifests, but no row is committed before every VM's is
    assert all(c.result is None for c in out.children)
    steps = world.steps(out.job.id)
    assert SetStep.ROLLING_BACK in steps and SetStep.ROLLED_BACK in steps
    assert SetStep.PUBLISHED not in steps
    world.assert_all_clean(points=0)
    assert all(world.d(n).checkpoints == [] for n in NAMES)


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["freezing", "window", "reading", "committing"])
def test_cancelling_the_set_cancels_every_vm_in_each_phase(world: SetWorld, phase: str) -> None:
    service = world.service()
    reached, go = threading.Event(), threading.Event()

    def hold(job: Job, name: str = "window") -> None:
        if name == phase and job.vm_name == "memory/vm1" and not reached.is_set():
            reached.set()
            go.wait(20)

    service.runner.phase_observers.append(hold)
    service.window_observers.append(hold)
    ctx = ServiceContext(world.uow, service.runner, world.vaults(), now, 1, OwnNode(URI))
    sets = BackupSetService(ctx, service)
    result: list[SetOutcome] = []
    runner = threading.Thread(target=lambda: result.append(sets.backup_set(None, list(NAMES))))
    runner.start()
    assert reached.wait(20)
    with world.uow() as uow:
        parent = next(j for j in uow.jobs.find() if j.type.value == "backup-set")
    JobQueries(world.uow, now).cancel(parent.id)
    vm1 = next(j for j in world.children(parent.id) if j.vm_name == "memory/vm1")
    deadline = time.monotonic() + 10
    while world.job(vm1.id).state is JobState.IN_PROGRESS and time.monotonic() < deadline:
        time.sleep(0.05)  # the set passes the cancel on to its children
    go.set()
    runner.join(30)
    out = result[0]
    assert out.job.state is JobState.CANCELLED, world.log(out.job.id)
    assert isinstance(out.error, Cancelled)
    assert all(c.result is None and c.job.state.final for c in out.children)
    world.assert_all_clean(points=0)


# --- a killed process ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        SetStep.PLANNED,  # nothing begun yet
        "freezing",  # phase 1: guests being frozen
        "point-taken",  # phase 2/3: one VM released, the others held or reading
        "indexes-written",  # phase 3
        SetStep.PUBLISHING,  # every VM's indexes written, nothing published
        "manifest-written",  # publishing: some published, others not
    ],
)
def test_a_killed_set_is_cleaned_up_at_the_next_start(world: SetWorld, step: str) -> None:
    world.kill_at = step
    with pytest.raises(Killed):
        world.run()
    _join_set_threads()
    world.restart()
    recovered = world.recover().recover()
    by_type = {r.job.type.value: r for r in recovered}
    assert "backup-set" in by_type and by_type["backup-set"].job.error_code == "JOB_INTERRUPTED"
    assert recovered[-1].job.type.value == "backup-set"  # after its children
    world.assert_all_clean(points=0)
    assert all(world.d(n).checkpoints == [] for n in NAMES)
    # and the set works again
    out = world.run()
    assert out.result is not None, world.log(out.job.id)
    world.assert_all_clean(points=3)


# --- pure parts -------------------------------------------------------------------------------


def test_the_set_window_runs_from_the_first_freeze_to_the_last_thaw() -> None:
    holds = [Hold("a", 10.0, 200), Hold("b", 10.1, 50), Hold("c", 10.05, 400)]
    assert set_window_ms(holds) == 450
    assert set_window_ms([]) == 0


def test_the_journal_says_what_a_dead_set_left() -> None:
    t = now()
    planned = JournalStep(1, 1, SetStep.PLANNED, {"set_id": "set-x", "vms": [
        {"job": 2, "vm": "u2", "name": "h/a"}, {"job": 3, "vm": "u3", "name": "h/b"}]}, t)  # fmt: skip
    publishing = JournalStep(1, 2, SetStep.PUBLISHING, {"points": ["p2", "p3"]}, t)
    published = JournalStep(1, 3, SetStep.PUBLISHED, {"points": ["p2", "p3"]}, t)
    assert unfinished_set(1, []) is None
    left = unfinished_set(1, [planned, publishing])
    assert left is not None and left.needs_rollback and left.points == ("p2", "p3")
    assert [c.job_id for c in left.children] == [2, 3]
    done = unfinished_set(1, [planned, publishing, published])
    assert done is not None and not done.needs_rollback


def test_the_gate_names_the_vm_that_never_arrived() -> None:
    gate = SetGate(["a", "b"])
    with pytest.raises(BackupSetAborted) as exc:
        gate.wait("held", "a", timeout=0.05)
    assert "VM b did not reach its point in time" in exc.value.text
    assert gate.failed_vm == "b" and isinstance(gate.failure, BackupSetTimeout)
    with pytest.raises(BackupSetTimeout):  # the late VM learns it was too late
        gate.wait("held", "b", timeout=1)


def test_points_list_shows_a_set_and_lists_it_alone(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = world.service().backup(None, [UUIDS["vm1"]])[0]
    assert single.result is not None
    sets = world.sets()
    out = world.run(sets)
    assert out.result is not None
    ctx = ServiceContext(world.uow, sets.runner, world.vaults(), now, 1, OwnNode(URI))
    fake = SimpleNamespace(point_listing=PointListing(ctx), backup_sets=sets)
    monkeypatch.setattr(cli_points, "services", lambda: fake)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(cli_points.points_app, list(args), env={"COLUMNS": "300"})
        return r.exit_code, r.output

    code, listing = run("list", "--set", out.result.set_id)
    assert code == 0, listing
    assert all(p.id in listing for p in out.result.points) and single.result.id not in listing
    code, listing = run("list", "--vault", "main")
    assert code == 0 and "SET" in listing and single.result.id in listing
    code, shown = run("show", out.result.points[0].id)
    assert code == 0 and f"set          {out.result.set_id}" in shown
    code, _ = run("list", "--set", "set-nope")
    assert code != 0  # SET_NOT_FOUND


def test_restore_a_whole_set_as_disk_images(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sets = world.sets()
    out = world.run(sets)
    assert out.result is not None
    ctx = ServiceContext(world.uow, sets.runner, world.vaults(), now, 1, OwnNode(URI))
    fake = SimpleNamespace(points=PointService(ctx), backup_sets=sets)
    monkeypatch.setattr(cli_set_restore, "services", lambda: fake)
    app = typer.Typer()
    app.command()(cli_restores.restore)
    target = tmp_path / "restored"
    r = CliRunner().invoke(
        app, ["--set", out.result.set_id, "--disks-only", "--dir", str(target), "--format", "raw"]
    )
    assert r.exit_code == 0, r.output
    for n in NAMES:
        assert (target / f"{n}-vda.raw").read_bytes() == bytes(world.d(n).disk("vda").data)
        assert (target / f"{n}.xml").exists()
    refused = CliRunner().invoke(app, ["--set", out.result.set_id, "--replace"])
    assert refused.exit_code == 2  # a set is not replaced VM by VM


def test_backup_set_on_the_command_line(world: SetWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = world.sets()
    monkeypatch.setattr(cli_backups, "services", lambda: SimpleNamespace(backup_sets=sets))
    app = typer.Typer()
    app.command()(cli_backups.backup)
    r = CliRunner().invoke(app, [*NAMES, "--set", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["type"] == "backup-set" and doc["state"] == "completed"
    assert len(doc["points"]) == 3 and {p["set_id"] for p in doc["points"]} == {doc["set_id"]}
    assert [c["parent"] for c in doc["children"]] == [doc["id"]] * 3
    world.d("vm2").owner = SimpleNamespace(alive=True)  # type: ignore[assignment]
    failed = CliRunner().invoke(app, [*NAMES, "--set"], env={"COLUMNS": "300"})
    world.d("vm2").owner = None
    assert failed.exit_code == 1
    assert "BACKUP_SET_FAILED" in failed.output and "memory/vm2" in failed.output


def test_a_single_backup_after_a_killed_set_does_not_publish_the_sets_point(
    world: SetWorld,
) -> None:
    """The VM's next backup runs before start-up recovery: it cleans the dead child up, and
    the point that child had written its manifest for is removed, not committed."""
    world.kill_at = "manifest-written"
    with pytest.raises(Killed):
        world.run()
    _join_set_threads()
    world.restart()
    for n in NAMES:
        out = world.service().backup(None, [UUIDS[n]])[0]
        assert out.result is not None and out.result.set_id is None, world.log(out.job.id)
    assert len(world.all_points()) == 3  # only the three single points
    world.recover().recover()
    world.assert_all_clean(points=3)


# --- no partial set, ever (review fixes) --------------------------------------------------


def _set_id(world: SetWorld) -> str:
    with world.uow() as uow:
        parent = next(j for j in uow.jobs.find() if j.type.value == "backup-set")
        steps = uow.jobs.steps(parent.id)
    return str(next(s for s in steps if s.step == SetStep.PLANNED).data["set_id"])


def test_a_kill_at_the_first_commit_leaves_no_part_of_a_set_in_the_catalog(
    world: SetWorld,
) -> None:
    """Every VM's row and ``set-published`` are one transaction: a kill at the first commit
    of a ``committed`` step leaves the whole set or nothing — never 1 of 3 rows (before
    recovery, which only ``serve`` runs)."""
    world.kill_at = "committed"
    with pytest.raises(Killed):
        world.run()
    _join_set_threads()
    world.restart()
    listed = world.all_points()
    assert len(listed) in (0, 3), listed
    if listed:
        assert len(world.sets().points(_set_id(world))) == 3


def test_a_set_its_job_did_not_commit_whole_is_refused_with_set_incomplete(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = world.sets()
    out = world.run(sets)
    assert out.result is not None
    with world.uow() as uow:  # a row gone behind the set's back (or never committed)
        uow.points.delete(out.result.points[0].id)
        uow.commit()
    with pytest.raises(SetIncomplete) as exc:
        sets.points(out.result.set_id)
    assert exc.value.code == "SET_INCOMPLETE" and "2 of its 3 points" in exc.value.text


class _Unreachable:
    """``VaultStore.delete_point`` failing for the points of some VMs (an S3 endpoint gone)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, world: SetWorld, *names: str) -> None:
        self.down = True
        self.world = world
        self.names = set(names)
        real = VaultStore.delete_point
        unreachable = self

        def delete_point(store: VaultStore, point_id: str) -> None:
            if unreachable.down and unreachable.vm_of(point_id) in unreachable.names:
                raise StorageUnreachable(path="main", why="connection refused")
            real(store, point_id)

        monkeypatch.setattr(VaultStore, "delete_point", delete_point)

    def vm_of(self, point_id: str) -> str | None:
        with self.world.uow() as uow:
            for job in uow.jobs.find(job_type=JobType.BACKUP):
                for step in uow.jobs.steps(job.id):
                    if step.step == "planned" and step.data.get("point") == point_id:
                        return (job.vm_name or "").split("/")[-1]
        return None


def test_a_rollback_the_vault_refuses_is_finished_by_the_next_recovery(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backups_mod.write_manifest
    written = threading.Semaphore(0)

    def flaky(store: Any, plan: Any, *args: Any) -> None:
        if plan.vm.name == "vm3":  # once the others wrote their manifests (not a sleep: load)
            assert written.acquire(timeout=60) and written.acquire(timeout=60)
            raise OSError("disk full")
        real(store, plan, *args)
        written.release()

    monkeypatch.setattr(backups_mod, "write_manifest", flaky)
    vault = _Unreachable(monkeypatch, world, "vm1")
    out = world.run()
    assert out.error is not None and out.error.code == "BACKUP_SET_FAILED", out.error
    steps = world.steps(out.job.id)
    assert SetStep.ROLLING_BACK in steps and SetStep.ROLLED_BACK not in steps  # left: retried
    assert world.all_points() == []  # never a row of the set
    assert any("could not be removed" in line for line in world.log(out.job.id))
    vault.down = False
    recovered = world.recover().recover()
    assert [r.job.id for r in recovered] == [out.job.id]
    assert SetStep.ROLLED_BACK in world.steps(out.job.id)
    world.assert_all_clean(points=0)
    assert world.recover().recover() == []  # done once


def test_ctrl_c_during_publishing_rolls_the_set_back_even_pressed_twice(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT in the main thread: the set is cancelled through the same outcome (the
    rollback runs; a second Ctrl-C changes nothing), then KeyboardInterrupt ends it."""
    real = backups_mod.write_manifest

    def flaky(store: Any, plan: Any, *args: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        if plan.vm.name == "vm3":
            time.sleep(0.5)
            signal.raise_signal(signal.SIGINT)
            raise OSError("disk full")
        real(store, plan, *args)

    monkeypatch.setattr(backups_mod, "write_manifest", flaky)
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        world.run()
    assert signal.getsignal(signal.SIGINT) is before
    with world.uow() as uow:
        parent = next(j for j in uow.jobs.find() if j.type.value == "backup-set")
    assert parent.state is JobState.CANCELLED
    assert SetStep.ROLLED_BACK in world.steps(parent.id)
    world.assert_all_clean(points=0)


def test_a_single_backup_is_not_failed_by_a_dead_sets_point_the_vault_will_not_delete(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.kill_at = "manifest-written"
    with pytest.raises(Killed):
        world.run()
    _join_set_threads()
    world.restart()
    vault = _Unreachable(monkeypatch, world, *NAMES)
    dead = [n for n in NAMES if vault.vm_of(_manifest_point(world, n) or "") == n]
    assert dead  # one child died after writing its manifest
    out = world.service().backup(None, [UUIDS[dead[0]]])[0]
    assert out.result is not None, world.log(out.job.id)
    assert any("left to the set's recovery" in line for line in world.log(out.job.id))
    vault.down = False
    world.recover().recover()
    world.assert_all_clean(points=1)


def _manifest_point(world: SetWorld, name: str) -> str | None:
    with world.uow() as uow:
        for job in uow.jobs.find(job_type=JobType.BACKUP, vm_uuid=UUIDS[name]):
            for step in uow.jobs.steps(job.id):
                if step.step == "manifest-written":
                    return str(step.data["point"])
    return None


def test_a_discard_that_fails_after_the_manifest_says_so_and_journals_it() -> None:
    logs: list[str] = []
    records: list[tuple[str, dict[str, Any]]] = []

    def refuse(point_id: str) -> None:
        raise StorageUnreachable(path="main", why="connection refused")

    store = SimpleNamespace(has_manifest=lambda point_id: True, delete_point=refuse)
    ctx = SimpleNamespace(log=logs.append, record=lambda step, **data: records.append((step, data)))
    vm = SimpleNamespace(host_uri=URI, uuid=UUIDS["vm1"])
    discard(None, vm, store, "p1", None, ctx)  # type: ignore[arg-type]
    assert not any("without a manifest" in line for line in logs), logs
    assert any("its manifest was written" in line for line in logs), logs
    assert records == [("discard-failed", {"point": "p1", "manifest": True})]


def test_points_list_set_refuses_a_vm_or_a_vault(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    fake = SimpleNamespace(backup_sets=SimpleNamespace(points=asked.append))
    monkeypatch.setattr(cli_points, "services", lambda: fake)
    for args in (["vm1", "--set", "set-x"], ["--vault", "main", "--set", "set-x"]):
        r = CliRunner().invoke(cli_points.points_app, ["list", *args])
        assert isinstance(r.exception, InvalidInput), r.output
    assert asked == []  # refused before anything


def test_restore_set_checks_every_target_before_the_first_restore(
    world: SetWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sets = world.sets()
    out = world.run(sets)
    assert out.result is not None
    ctx = ServiceContext(world.uow, sets.runner, world.vaults(), now, 1, OwnNode(URI))
    fake = SimpleNamespace(points=PointService(ctx), backup_sets=sets)
    monkeypatch.setattr(cli_set_restore, "services", lambda: fake)
    app = typer.Typer()
    app.command()(cli_restores.restore)
    target = tmp_path / "restored"
    target.mkdir()
    (target / "vm3-vda.raw").write_bytes(b"mine")  # the last VM's target is taken
    args = ["--set", out.result.set_id, "--disks-only", "--dir", str(target), "--format", "raw"]
    r = CliRunner().invoke(app, args)
    assert isinstance(r.exception, RestoreTargetExists), r.output
    assert sorted(p.name for p in target.iterdir()) == ["vm3-vda.raw"]  # nothing restored
    with world.uow() as uow:
        assert not [j for j in uow.jobs.find() if j.type.value == "restore"]
    assert CliRunner().invoke(app, [*args, "--no-wait"]).exit_code == 2  # foreground only
