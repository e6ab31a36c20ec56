"""The backup service over the in-memory hypervisor (``vmvault.hypervisor.memory``), a real
SQLite catalog and a real local vault in a temporary directory: full and incremental reads,
chain repair, fallbacks to full, discard after a failure, the freeze window (nothing touches
the catalog in it), and recovery after a kill at every journal step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vmvault.dataplane.restore import restore_disk, verify_point
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import DiskReadFailed, StorageUnreachable
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.placement import OwnNode
from vmvault.domain.recovery_point import (
    BackupStep,
    Consistency,
    DamagedDisk,
    Method,
    RecoveryPoint,
)
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.hypervisor.files import LocalHostFiles
from vmvault.hypervisor.memory import (
    Killed,
    MemoryBackupDriver,
    MemoryDisk,
    MemoryDomain,
    MemoryHypervisor,
)
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.backups import BackupOutcome, BackupService
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobContext, JobQueries, JobRunner
from vmvault.services.recovery import RecoveryService
from vmvault.services.restore import RestoreService
from vmvault.services.vaults import VaultService

URI = "memory:///"
UUID = "aaaaaaaa-2222-3333-4444-555555555555"
MiB = 1 << 20
CHUNK = MiB  # the vault's chunk size here: an incremental reads whole chunks


def now() -> datetime:
    return datetime.now(UTC)


class _Jobs:
    """The job repository, noting which journal steps a transaction records."""

    def __init__(self, inner: Any, steps: list[str]) -> None:
        self._inner, self._steps = inner, steps

    def record_step(self, job_id: int, step: str, data: dict[str, Any], at: datetime) -> None:
        self._steps.append(str(step))
        self._inner.record_step(job_id, step, data, at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Uow:
    """A catalog transaction of a process that may be killed (see :class:`World`)."""

    def __init__(self, inner: SqlUnitOfWork, world: World) -> None:
        self._inner, self._world, self._steps = inner, world, []

    def __enter__(self) -> _Uow:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)

    @property
    def jobs(self) -> _Jobs:
        return _Jobs(self._inner.jobs, self._steps)

    def commit(self) -> None:
        self._inner.commit()
        if self._world.kill_at is not None and self._world.kill_at in self._steps:
            self._world.kill()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class World:
    tmp: Path
    engine: Any
    hv: MemoryHypervisor
    driver: MemoryBackupDriver
    pid: int = 5000001
    kill_at: str | None = None
    #: called with the guest's state each time the catalog is opened
    on_catalog: list[Callable[[], None]] = field(default_factory=list)

    # --- the process -------------------------------------------------------------------------

    def uow(self) -> _Uow:
        self.hv.alive()  # a dead process writes nothing
        for check in self.on_catalog:
            check()
        return _Uow(SqlUnitOfWork(self.engine), self)

    def kill(self) -> None:
        """SIGKILL: every open session dies where it stands; nothing more runs."""
        self.kill_at = None
        self.hv.kill()
        raise Killed("killed")

    def restart(self) -> None:
        """The next process (another pid: the dead one's jobs are orphans)."""
        self.hv.dead = False
        self.pid += 1

    # --- services -----------------------------------------------------------------------------

    def runner(self) -> JobRunner:
        return JobRunner(self.uow, now, self.pid, lambda p: p == self.pid)

    def vaults(self) -> VaultService:
        return VaultService(self.uow, self.hv, now, self.tmp, "main")  # type: ignore[arg-type]

    def service(self) -> BackupService:
        ctx = ServiceContext(self.uow, self.runner(), self.vaults(), now, 1, OwnNode(URI))
        return BackupService(ctx, self.hv, self.driver)  # type: ignore[arg-type]

    def recovery(self) -> RecoveryService:
        ctx = ServiceContext(self.uow, self.runner(), self.vaults(), now, nodes=OwnNode(URI))  # type: ignore[arg-type]
        restores = RestoreService(ctx, None, hypervisor=self.hv, files=LocalHostFiles())  # type: ignore[arg-type]
        return RecoveryService(ctx, self.service(), restores)

    def backup(self, service: BackupService | None = None) -> BackupOutcome:
        return (service or self.service()).backup(None, [UUID])[0]

    def ok(self, service: BackupService | None = None) -> RecoveryPoint:
        out = self.backup(service)
        assert out.result is not None, self.log(out.job.id)
        return out.result

    # --- what is there -----------------------------------------------------------------------

    @property
    def dom(self) -> MemoryDomain:
        return self.hv.domains[UUID]

    def store(self) -> VaultStore:
        return VaultStore.open(self.tmp / "vaults" / "main")

    def log(self, job_id: int) -> list[str]:
        with self.uow() as uow:
            return [line.split(" ", 2)[2] for line in uow.jobs.log(job_id)]

    def steps(self, job_id: int) -> list[str]:
        with self.uow() as uow:
            return [s.step for s in uow.jobs.steps(job_id)]

    def job(self, job_id: int) -> Job:
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
        assert job is not None
        return job

    def points(self) -> list[RecoveryPoint]:
        with self.uow() as uow:
            return uow.points.for_vm(UUID)

    def restored(self, point: RecoveryPoint, target: str) -> bytes:
        store = self.store()
        index = store.read_point_index(store.read_manifest(point.id), target)
        out = self.tmp / f"{point.id}-{target}.raw"
        restore_disk(store, index, out, overwrite=True, workers=1)
        return out.read_bytes()

    def assert_clean(self) -> None:
        """No job, guest running and thawed, only the catalog's checkpoints, no half point."""
        dom = self.dom
        assert dom.job is None and dom.owner is None
        assert dom.power is PowerState.RUNNING
        assert dom.agent is None or not dom.agent.frozen
        with self.uow() as uow:
            known = {r.name for r in uow.checkpoints.for_vm(UUID)}
        assert set(dom.checkpoints) <= known, (dom.checkpoints, known)
        store = self.store()
        manifests = {p for p in store.list_index_dirs() if store.has_manifest(p)}
        assert set(store.list_index_dirs()) == manifests  # no indexes without a manifest


@pytest.fixture()
def world(tmp_path: Path, catalog_url: str) -> Iterator[World]:
    engine = open_catalog(catalog_url)
    hv = MemoryHypervisor(URI)
    hv.add(MemoryDomain(UUID, "vm", [MemoryDisk("vda", 4 * MiB), MemoryDisk("vdb", 2 * MiB)]))
    w = World(tmp_path, engine, hv, MemoryBackupDriver(hv))
    t = now()
    with w.uow() as uow:
        uow.hosts.add(URI, "local", "memory", t)
        uow.commit()
    w.vaults().create("main", "local", None, chunk_size=CHUNK)
    facts = hv.domain_facts(URI, UUID)
    assert facts is not None
    vm = VmItem(
        UUID, "vm", URI, "memory", "memory", PowerState.RUNNING, list(facts.disks), [], True,
        facts.fingerprint, t, t, state=VmState.REGISTERED, vault="main", registered_at=t,
    )  # fmt: skip
    with w.uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    w.dom.disk("vda").write(0, b"boot" * 1000)
    w.dom.disk("vdb").write(MiB, b"data" * 1000)
    yield w
    engine.dispose()


# --- full, incremental, chain --------------------------------------------------------------------


def test_first_backup_is_full_and_restores_the_disks(world: World) -> None:
    point = world.ok()
    assert [(d.target, d.incremental) for d in point.disks] == [("vda", False), ("vdb", False)]
    assert (
        point.consistency is Consistency.FILE_SYSTEM and point.checkpoint in world.dom.checkpoints
    )
    assert point.frozen_ms > 0 and world.dom.agent is not None and world.dom.agent.freezes == 1
    assert world.restored(point, "vda") == bytes(world.dom.disk("vda").data)
    assert world.restored(point, "vdb") == bytes(world.dom.disk("vdb").data)
    job = world.job(point.job_id or 0)
    assert job.state is JobState.COMPLETED
    assert world.steps(job.id) == [
        "planned", "freezing", "point-taken", "reading", "writing", "indexes-written",
        "committing", "manifest-written", "committed",
    ]  # fmt: skip
    world.assert_clean()


def test_an_incremental_reads_only_the_dirty_chunks(world: World) -> None:
    first = world.ok()
    world.dom.disk("vda").write(3 * MiB + 5, b"changed")
    point = world.ok()
    vda, vdb = point.disks
    assert vda.incremental and vdb.incremental
    assert vda.bytes_read == CHUNK and vdb.bytes_read == 0  # one dirty chunk, nothing on vdb
    assert world.restored(point, "vda") == bytes(world.dom.disk("vda").data)
    assert world.dom.checkpoints == [point.checkpoint]  # the older one was pruned
    assert first.checkpoint not in world.dom.checkpoints
    world.assert_clean()


def test_an_incremental_after_recorded_damage_reads_a_missing_parent_chunk_again(
    world: World,
) -> None:
    """A reuse list keeps GC away from the parent's chunks but cannot vouch for a chunk that
    is gone (verify quarantined it): once damage is recorded in the vault, the incremental
    checks each reused chunk and reads a missing one from the disk again."""
    first = world.ok()
    store = world.store()
    lost = store.read_point_index(store.read_manifest(first.id), "vdb").ids[1]
    store.chunks.remove(lost)
    with world.uow() as uow:
        uow.copies.set_damaged(first.id, "main", [DamagedDisk("vdb", ((MiB, 2 * MiB),))])
        uow.commit()
    point = world.ok()
    # nothing dirty: what it read is the lost chunk, again from the disk
    assert point.disks[1].incremental and point.disks[1].bytes_read == CHUNK
    assert "damage is recorded in this vault" in " ".join(world.log(point.job_id or 0))
    assert verify_point(world.store(), point.id).ok  # the lost chunk is stored again
    assert world.restored(point, "vdb") == bytes(world.dom.disk("vdb").data)


def test_a_checkpoint_libvirt_forgot_is_redefined_from_the_catalog(world: World) -> None:
    first = world.ok()
    assert first.checkpoint is not None
    world.driver.forget_checkpoint(UUID, first.checkpoint)  # the bitmaps stay in the images
    world.dom.disk("vdb").write(0, b"x")
    out = world.backup()
    assert out.result is not None and all(d.incremental for d in out.result.disks)
    assert any("redefined from the catalog" in line for line in world.log(out.job.id))
    world.assert_clean()


def test_a_broken_bitmap_falls_back_to_a_full_read(world: World) -> None:
    first = world.ok()
    world.dom.disk("vda").broken.add(str(first.checkpoint))
    out = world.backup()
    assert out.result is not None and not any(d.incremental for d in out.result.disks)
    assert all("chain broken" in (d.reason or "") for d in out.result.disks), out.result.disks
    assert out.result.bytes_new == 0  # unchanged chunks deduplicate
    world.assert_clean()


def test_a_disk_added_since_the_previous_point_is_read_in_full(world: World) -> None:
    """The checkpoint has no bitmap for the new disk: that disk is read in full and the chain
    of the others is kept (their reads stay incremental)."""
    world.ok()
    world.dom.disks.append(MemoryDisk("vdc", 2 * MiB))
    world.dom.disk("vdc").write(0, b"new disk")
    point = world.ok()
    reads = {d.target: (d.incremental, d.reason or "") for d in point.disks}
    assert reads["vdc"] == (False, "disk added since the previous point: full read")
    assert reads["vda"][0] and reads["vdb"][0], reads
    assert world.restored(point, "vdc") == bytes(world.dom.disk("vdc").data)
    nxt = world.ok()  # and the next one is incremental on all three
    assert [d.incremental for d in nxt.disks] == [True, True, True]


# --- failures, the window -----------------------------------------------------------------------


def test_a_failed_read_is_discarded(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = world.ok()
    store_before = sorted(world.store().list_index_dirs())

    def broken(self: Any, buf: memoryview, offset: int) -> None:
        raise DiskReadFailed("I/O error", disk="vdb", offset=offset)

    world.dom.disk("vdb").write(0, b"x")
    monkeypatch.setattr("vmvault.hypervisor.memory.MemorySource.pread_into", broken)
    out = world.backup()
    monkeypatch.undo()
    assert out.result is None and world.job(out.job.id).state is JobState.FAILED
    assert [p.id for p in world.points()] == [first.id]  # no half point in the catalog
    assert sorted(world.store().list_index_dirs()) == store_before  # nor in the vault
    assert world.dom.checkpoints == [first.checkpoint]  # no stray checkpoint
    world.assert_clean()
    again = world.ok()
    assert all(d.incremental for d in again.disks)


def test_a_vault_gone_mid_backup_keeps_its_error_when_the_discard_fails_too(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vault (an S3 endpoint) vanishes while chunks are written: the undo cannot delete
    what was written either; the job fails with the vault's error, not an internal one."""
    first = world.ok()
    world.dom.disk("vdb").write(0, b"y")

    def gone(*_args: Any, **_kw: Any) -> Any:
        raise StorageUnreachable(path="s3://b/v/", why="the endpoint cannot be reached")

    monkeypatch.setattr("vmvault.dataplane.chunkstore.ChunkBatch.commit", gone)
    monkeypatch.setattr("vmvault.dataplane.vault.VaultStore.delete_point", gone)
    out = world.backup()
    monkeypatch.undo()
    job = world.job(out.job.id)
    assert job.state is JobState.FAILED and job.error_code == "STORAGE_UNREACHABLE"
    log = world.log(out.job.id)
    assert any("could not remove what was written" in line for line in log), log
    assert [p.id for p in world.points()] == [first.id]
    assert world.dom.checkpoints == [first.checkpoint]  # the checkpoint went all the same
    again = world.ok()
    assert all(d.incremental for d in again.disks)


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_an_agent_that_cannot_freeze_gives_a_crash_consistent_point(
    world: World, mode: str
) -> None:
    assert world.dom.agent is not None
    world.dom.agent.mode = mode
    out = world.backup()
    assert out.result is not None and out.result.consistency is Consistency.CRASH
    assert world.job(out.job.id).state is JobState.COMPLETED_WITH_WARNINGS
    assert any("could not be frozen" in w for w in out.result.warnings)
    world.assert_clean()


def test_a_failed_thaw_is_retried_by_the_next_backup(world: World) -> None:
    assert world.dom.agent is not None
    world.dom.agent.thaw_fails = True
    out = world.backup()
    assert out.result is not None and world.dom.agent.frozen
    assert any("may still be frozen" in w for w in out.result.warnings)
    world.dom.agent.thaw_fails = False  # the agent came back
    nxt = world.backup()
    assert nxt.result is not None and not world.dom.agent.frozen
    assert any(
        line.startswith("left by an interrupted backup: thawed") for line in world.log(nxt.job.id)
    )
    assert "cleaned-up" in world.steps(out.job.id)
    third = world.backup()  # the thaw is not repeated
    assert not any("left by" in line for line in world.log(third.job.id))


def test_nothing_touches_the_catalog_while_the_guest_is_held(world: World) -> None:
    """Every catalog transaction of a backup happens with the guest thawed and running."""
    held: list[str] = []

    def check() -> None:
        if world.dom.agent is not None and world.dom.agent.frozen:
            held.append("frozen")
        if world.dom.power is PowerState.PAUSED:
            held.append("paused")

    world.on_catalog.append(check)
    world.ok()  # frozen by the agent
    world.dom.agent = None  # no agent: paused for the point
    with world.uow() as uow:
        vm = uow.vms.get(UUID)
        assert vm is not None
        vm.agent_channel = False
        uow.vms.save(vm)
        uow.commit()
    point = world.ok()
    assert point.consistency is Consistency.CRASH and point.paused_ms > 0 and point.frozen_ms == 0
    assert held == []


@pytest.mark.parametrize("where", ["freezing", "window"])
def test_a_cancel_around_the_window_releases_the_guest_first(
    world: World, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Asked as ``freezing`` is entered (before the guest is touched) or from inside the
    window (seen once the guest is released): cancelled, nothing left."""
    monkeypatch.setattr(JobContext, "CANCEL_POLL_EVERY", 0.0)
    first = world.ok()
    service = world.service()
    seen: list[bool] = []

    def cancel(job: Job, name: str = "window") -> None:
        if name == where:
            seen.append(bool(world.dom.agent and world.dom.agent.frozen))
            JobQueries(world.uow, now).cancel(job.id)

    service.runner.phase_observers.append(cancel)
    service.window_observers.append(cancel)
    out = world.backup(service)
    assert world.job(out.job.id).state is JobState.CANCELLED
    assert seen == [where == "window"]  # frozen inside the window only
    assert [p.id for p in world.points()] == [first.id]
    assert world.dom.checkpoints == [first.checkpoint]
    world.assert_clean()
    assert all(d.incremental for d in world.ok().disks)


# --- recovery after a kill at each journal step -----------------------------------------------

#: every step a backup whose freeze works records on its way (``pausing``:
#: tests/unit/test_backup_consistency; cleaned-up and discard-failed come after it failed)
STEPS = [
    s.value
    for s in BackupStep
    if s not in (BackupStep.CLEANED_UP, BackupStep.PAUSING, BackupStep.DISCARD_FAILED)
]


def _kill_at(world: World, step: str) -> Job:
    """A backup whose process dies just after it recorded ``step`` ("window": inside the
    freeze window, guest frozen and nothing begun)."""
    service = world.service()
    if step == "window":

        def die(job: Job) -> None:
            world.kill()

        service.window_observers.append(die)
    else:
        world.kill_at = step
    with pytest.raises(Killed):
        world.backup(service)
    world.restart()
    with world.uow() as uow:
        (job,) = [j for j in uow.jobs.find(job_type=JobType.BACKUP) if j.state.active]
    return job


@pytest.mark.parametrize("step", [*STEPS[:2], "window", *STEPS[2:]])
@pytest.mark.parametrize("by", ["recovery", "next-backup"])
def test_recovery_after_a_kill_at_each_step(world: World, step: str, by: str) -> None:
    first = world.ok()
    world.dom.disk("vda").write(0, b"more")
    dead = _kill_at(world, step)
    assert world.steps(dead.id)[-1] == (step if step != "window" else "freezing")
    if step == "window":
        assert world.dom.agent is not None and world.dom.agent.frozen  # left frozen
    if by == "recovery":
        [recovered] = world.recovery().recover()
        assert recovered.job.id == dead.id
        assert recovered.job.error_code == "JOB_INTERRUPTED"
        if step != "committed":
            assert world.steps(dead.id)[-1] == "cleaned-up"
        assert world.recovery().recover() == []  # idempotent
        world.assert_clean()
    out = world.backup()
    assert out.result is not None, world.log(out.job.id)
    assert all(d.incremental for d in out.result.disks), out.result.disks
    world.assert_clean()
    ids = [p.id for p in world.points()]
    # from manifest-written on, the dead backup's point is complete: the clean-up commits it
    kept = step in ("manifest-written", "committed")
    assert ids[-1] == first.id and len(ids) == (3 if kept else 2), ids
    store = world.store()
    assert {p for p in store.list_index_dirs() if store.has_manifest(p)} == set(ids)
    if kept:
        dead_point = world.points()[1]
        assert dead_point.job_id == dead.id and all(d.incremental for d in dead_point.disks)
        assert world.restored(dead_point, "vda") == bytes(world.dom.disk("vda").data)
    assert world.restored(out.result, "vda") == bytes(world.dom.disk("vda").data)


def test_the_prune_after_a_backup_comes_back_with_its_outcome(world: World) -> None:
    """Retention's prune job (protected VMs) is returned with the backup's outcome, not kept
    on a list that someone has to clear."""
    service = world.service()
    pruned: list[str] = []
    marker: Any = object()

    def after(vault: Any, vm: VmItem, point: RecoveryPoint) -> Any:
        pruned.append(point.id)
        return marker

    service.after_backup = after
    out = world.backup(service)
    assert out.result is not None and pruned == [out.result.id] and out.prune is marker


# --- selective disks, cluster-managed VMs ---------------------------------------------------------


def _set_excluded(world: World, targets: list[str]) -> None:
    with world.uow() as uow:
        vm = uow.vms.get(UUID)
        assert vm is not None
        vm.excluded_targets = targets
        uow.vms.save(vm)
        uow.commit()


def test_excluding_a_disk_later_keeps_the_chain_and_including_it_reads_it_in_full(
    world: World,
) -> None:
    world.ok()
    _set_excluded(world, ["vdb"])
    out = world.backup()
    point = out.result
    assert point is not None and out.job.state is JobState.COMPLETED  # a choice, not a warning
    disks = {d.target: d for d in point.disks}
    assert disks["vda"].incremental
    assert disks["vdb"].excluded and disks["vdb"].reason == "excluded by user"
    assert disks["vdb"].bytes_read == 0
    entry = {e.target: e for e in world.store().read_manifest(point.id).disks}["vdb"]
    assert entry.excluded and entry.index is None and entry.reason == "excluded by user"
    _set_excluded(world, [])
    world.dom.disk("vdb").write(0, b"back again")
    again = {d.target: d for d in world.ok().disks}
    assert again["vda"].incremental
    assert not again["vdb"].incremental and "disk added" in (again["vdb"].reason or "")
    world.assert_clean()


def test_a_cluster_managed_vm_is_backed_up_without_ever_being_paused(world: World) -> None:
    with world.uow() as uow:
        uow.hosts.set_cluster_managed(URI, ["vm"])
        uow.commit()
    point = world.ok()
    assert point.method is Method.GUEST_QUIESCE
    with world.uow() as uow:
        planned = [s for s in uow.jobs.steps(point.job_id or 0) if s.step == "planned"]
    assert planned[0].data["allow_pause"] is False
    world.dom.agent = None  # no agent: the backup would need a pause → refused, VM untouched
    out = world.backup()
    assert out.result is None and out.job.error_code == "CLUSTER_MANAGED_NO_PAUSE"
    assert world.dom.power is PowerState.RUNNING and world.dom.job is None


def test_operator_changes_made_while_a_backup_runs_survive_its_commit(world: World) -> None:
    """``vm update --exclude-disk`` and ``host update --cluster-managed`` during the read: the
    commit writes only the facts the backup owns, not the VM row it loaded at its start."""
    done: list[bool] = []

    def operator() -> None:
        if done or world.dom.job is None or (world.dom.agent and world.dom.agent.frozen):
            return
        done.append(True)
        with SqlUnitOfWork(world.engine) as uow:  # what vm update / host update write
            vm = uow.vms.get(UUID)
            assert vm is not None
            vm.excluded_targets = ["vdb"]
            vm.cluster_managed = "listed as cluster-managed in the settings of host memory"
            uow.vms.save(vm)
            uow.commit()

    with world.uow() as uow:
        seen_before = uow.vms.get(UUID).last_seen  # type: ignore[union-attr]
    world.on_catalog.append(operator)
    point = world.ok()
    assert done, "the operator's change never ran during the backup"
    assert not any(d.excluded for d in point.disks)  # this backup had planned both disks
    with world.uow() as uow:
        vm = uow.vms.get(UUID)
    assert vm is not None
    assert vm.excluded_targets == ["vdb"]
    assert vm.cluster_managed == "listed as cluster-managed in the settings of host memory"
    assert vm.last_seen > seen_before  # the backup's facts were written


def test_unknown_cluster_ownership_keeps_the_catalogs_and_never_pauses(world: World) -> None:
    """cibadmin failed (the adapter says ``cluster_unknown``): the VM recorded as pacemaker's
    stays cluster-managed, so a backup that would pause it is refused, with a warning."""
    owner = "pacemaker resource vm-db (VirtualDomain)"
    with world.uow() as uow:
        vm = uow.vms.get(UUID)
        assert vm is not None
        vm.cluster_managed = owner
        uow.vms.save(vm)
        uow.commit()
    world.dom.cluster_unknown = "pacemaker ownership not known: cibadmin --query failed (exit 1)"
    world.dom.agent = None  # a backup would need the saved-state pause
    out = world.backup()
    assert out.result is None and out.job.error_code == "CLUSTER_MANAGED_NO_PAUSE"
    assert owner in (out.job.message or "")
    assert world.dom.power is PowerState.RUNNING and not world.dom.paused_by_backup
    assert any("cibadmin --query failed" in line for line in world.log(out.job.id))
    with world.uow() as uow:
        vm = uow.vms.get(UUID)
    assert vm is not None and vm.cluster_managed == owner


def test_allow_pause_reaches_the_point_session(world: World) -> None:
    """A cluster-managed VM's session is told it may not pause (for a failed freeze's
    fallback); another VM's may."""
    seen: list[bool] = []
    take = world.driver.take_point

    def spy(*args: Any, **kw: Any) -> Any:
        session = take(*args, **kw)
        seen.append(session.allow_pause)
        return session

    world.driver.take_point = spy  # type: ignore[method-assign]
    world.ok()
    with world.uow() as uow:
        uow.hosts.set_cluster_managed(URI, ["vm"])
        uow.commit()
    world.ok()
    assert seen == [True, False]


def test_the_drivers_refusal_names_the_vm_and_why(world: World) -> None:
    """The driver's own refusal (the service refuses first): HOST/NAME, not a uuid."""
    from vmvault.domain.errors import ClusterManagedNoPause

    with pytest.raises(ClusterManagedNoPause) as exc:
        world.driver.take_point(
            URI, UUID, [], checkpoint=None, incremental_from=None, quiesce="pause",
            cancel=lambda: False, allow_pause=False,
        )  # fmt: skip
    assert exc.value.fields["vm"] == "memory/vm" and UUID not in exc.value.text
    assert "allow_pause=False" in exc.value.text and "pause" in exc.value.fields["need"]
    assert exc.value.kind == "usage"
