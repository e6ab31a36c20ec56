"""The copy service (services/copies.py) over a real SQLite catalog and real local vaults:
one job per VM through the job runner, bad input refused with nothing changed, a copy
that is cancelled or killed leaves no point in the target and the next copy completes,
the target's own retention prunes its copies only, and a point deleted from its own vault
stays in the vault that holds a copy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.catalog_world import catalog, now, write_point
from vmvault.dataplane import keys, verify_point
from vmvault.dataplane.restore import restore_disk
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    CopySameVault,
    CopyWouldDecrypt,
    InvalidInput,
    NothingToCopy,
    PointNotInVault,
    VaultNotFound,
    VmNotFound,
)
from vmvault.domain.job import JobState, JobType
from vmvault.domain.policy import CopyOption, Policy
from vmvault.domain.retention import Retention
from vmvault.domain.soft_delete import SoftDelete, SoftDeleteMode
from vmvault.services import copies as copies_module
from vmvault.services import holdings
from vmvault.services.context import ServiceContext
from vmvault.services.copies import CopyService
from vmvault.services.jobs import JobContext, JobQueries, JobRunner
from vmvault.services.vaults import VaultService

CS = 64 << 10
URI = "memory:///"
UUID = "cccccccc-2222-3333-4444-555555555555"
OTHER = "dddddddd-2222-3333-4444-555555555555"


class Killed(BaseException):
    """The copying process dies here: nothing after it runs."""


@dataclass
class World:
    tmp: Path
    uow: Any
    vaults: VaultService
    alive: set[int]
    pid: int = 7000001

    def service(self) -> CopyService:
        runner = JobRunner(self.uow, now, self.pid, lambda p: p in self.alive)
        self.alive.add(self.pid)
        return CopyService(ServiceContext(self.uow, runner, self.vaults, now))

    def die(self) -> None:
        """The process is gone: its pid is no longer alive; the next one has another."""
        self.alive.discard(self.pid)
        self.pid += 1

    def store(self, name: str) -> VaultStore:
        return self.vaults.open_store(self.vaults.resolve(name))

    def files(self, name: str) -> dict[str, bytes]:
        root = self.tmp / name
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and "locks" not in p.parts
        }

    def jobs(self) -> list[Any]:
        return JobQueries(self.uow, now).list_jobs(JobType.COPY)


def add_point(
    w: World, vault: str, point_id: str, seed: int, when: datetime, vm: str = UUID
) -> bytes:
    """A real point (one disk) in ``vault`` and its catalog row; returns the disk."""
    name = "web" if vm == UUID else "db"
    return write_point(w.tmp, w.uow, w.vaults, vault, point_id, seed, when, (vm, name))


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_url: str) -> Iterator[World]:
    with catalog(tmp_path, monkeypatch, {UUID: "web", OTHER: "db"}, URI, catalog_url) as c:
        for name in ("A", "B"):
            c.vaults.create(name, "local", str(tmp_path / name), chunk_size=CS)
        yield World(tmp_path, c.uow, c.vaults, set())


DAY = timedelta(days=1)


def test_copy_one_job_per_vm_then_nothing_more_to_send(world: World) -> None:
    t = now() - 3 * DAY
    disks = {p: add_point(world, "A", p, i, t + i * DAY) for i, p in enumerate(("p1", "p2"))}
    add_point(world, "A", "q1", 9, t, vm=OTHER)

    outcomes = world.service().copy("A", "B", [], all_vms=True)

    assert [o.job.state for o in outcomes] == [JobState.COMPLETED] * 2
    assert {o.job.type for o in outcomes} == {JobType.COPY}
    web = next(o for o in outcomes if o.job.vm_uuid == UUID)
    assert web.result is not None and web.result.points == ["p1", "p2"]  # oldest first
    assert web.result.mode == "re-encoded"
    # p2 shares its first 3 chunks with p1 (and q1 with both): they travel once
    assert web.result.chunks_sent == 6 + 1 and web.result.chunks_present == 3 + 1
    b = world.store("B")
    for p, data in disks.items():
        assert verify_point(b, p).ok
        out = world.tmp / f"{p}.out"
        restore_disk(b, b.read_point_index(b.read_manifest(p), "vda"), out)
        assert out.read_bytes() == data
    with world.uow() as u:
        assert holdings.holders(u, u.points.get("p1")) == ["A", "B"]
        assert [p.id for p in holdings.held_in(u, "B", UUID)] == ["p2", "p1"]
        assert u.jobs.steps(web.job.id)[-1].step == "copied"
    before = world.files("B")
    again = world.service().copy("A", "B", ["web"])
    assert again[0].job.state is JobState.COMPLETED and again[0].result is not None
    assert again[0].result.points == [] and again[0].result.already == 2
    assert world.files("B") == before


def test_bad_input_is_refused_with_nothing_changed(world: World, tmp_path: Path) -> None:
    add_point(world, "A", "p1", 1, now())
    monkey_pw = "secret"
    world.vaults.passphrase = lambda: monkey_pw
    world.vaults.create("C", "local", str(tmp_path / "C"), chunk_size=CS, encrypt=True)
    world.vaults.create("D", "local", str(tmp_path / "D"), chunk_size=2 * CS)
    svc = world.service()
    before = {v: world.files(v) for v in ("A", "B", "C", "D")}
    cases: list[tuple[tuple[Any, ...], type[Exception]]] = [
        (("A", "A", ["web"]), CopySameVault),
        (("A", "nope", ["web"]), VaultNotFound),
        (("nope", "B", ["web"]), VaultNotFound),
        (("A", "B", []), InvalidInput),
        (("A", "B", ["web"], True), InvalidInput),
        (("A", "B", ["ghost"]), VmNotFound),
        (("A", "B", ["db"]), NothingToCopy),  # db has no point in A
        (("B", "A", [], True), NothingToCopy),  # B holds nothing
        (("A", "D", ["web"]), Exception),  # another chunk size
    ]
    for args, error in cases:
        with pytest.raises(error):
            svc.copy(*args)
    add_point(world, "C", "c1", 3, now())
    with pytest.raises(CopyWouldDecrypt):
        svc.copy("C", "B", ["web"])
    assert world.jobs() == []
    assert {v: world.files(v) for v in ("A", "B", "D")} == {v: before[v] for v in ("A", "B", "D")}


def test_cancel_leaves_no_point_in_the_target_and_a_rerun_completes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = now() - DAY
    add_point(world, "A", "p1", 1, t)
    add_point(world, "A", "p2", 2, t + timedelta(hours=1))
    monkeypatch.setattr(JobContext, "cancelled", lambda self: True)  # asked at once
    [outcome] = world.service().copy("A", "B", ["web"])
    assert outcome.job.state is JobState.CANCELLED
    b = world.store("B")
    assert b.list_manifests() == [] and b.list_index_dirs() == []
    with world.uow() as u:
        assert u.copies.in_vault("B") == []
    monkeypatch.undo()
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)
    [rerun] = world.service().copy("A", "B", ["web"])
    assert rerun.job.state is JobState.COMPLETED and rerun.result is not None
    assert rerun.result.points == ["p1", "p2"]
    assert all(verify_point(b, p).ok for p in ("p1", "p2"))


def test_kill_between_manifest_and_catalog_row_is_cleaned_up_by_the_next_copy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = now() - DAY
    add_point(world, "A", "p1", 1, t)
    add_point(world, "A", "p2", 2, t + timedelta(hours=1))
    real = copies_module.copy_point

    def dies_after_p2(*args: Any, **kw: Any) -> Any:
        result = real(*args, **kw)
        if args[2] == "p2":
            raise Killed("after the manifest of p2, before its row")
        return result

    monkeypatch.setattr(copies_module, "copy_point", dies_after_p2)
    with pytest.raises(Killed):
        world.service().copy("A", "B", ["web"])
    world.die()
    b = world.store("B")
    assert b.list_manifests() == ["p1", "p2"]  # p2 is in B, but the catalog does not know
    with world.uow() as u:
        assert [c.point_id for c in u.copies.in_vault("B")] == ["p1"]
    monkeypatch.setattr(copies_module, "copy_point", real)

    [rerun] = world.service().copy("A", "B", ["web"])

    assert rerun.job.state is JobState.COMPLETED and rerun.result is not None
    assert rerun.result.cleaned == ["p2"] and rerun.result.points == ["p2"]
    assert rerun.result.chunks_sent == 0  # its chunks were there: only metadata again
    [killed] = [j for j in world.jobs() if j.id != rerun.job.id]
    assert killed.state is JobState.FAILED and killed.error_code == "JOB_INTERRUPTED"
    assert verify_point(b, "p2").ok


def test_retention_of_the_target_prunes_its_copies_only(world: World) -> None:
    start = now() - 5 * DAY
    for i in range(4):
        add_point(world, "A", f"p{i}", i, start + i * DAY)
    policy = Policy.create(
        "gold",
        "daily@02:00",
        "UTC",
        Retention(daily=7),
        CopyOption("B", Retention(daily=2)),
    )
    assert policy.copy_retention == Retention(daily=2)
    outcome = world.service().copy_vm("A", "B", "web", None, (policy, Retention(daily=2)))
    assert outcome.result is not None
    assert outcome.result.points == ["p0", "p1", "p2", "p3"]
    assert sorted(outcome.result.pruned) == ["p0", "p1"]
    # B's soft delete is on (the default): the pruned copies stay there, soft-deleted
    assert world.store("B").list_manifests() == ["p0", "p1", "p2", "p3"]
    assert world.store("A").list_manifests() == ["p0", "p1", "p2", "p3"]
    with world.uow() as u:
        assert [c.point_id for c in u.copies.in_vault("B")] == ["p2", "p3"]
        assert [c.point_id for c in u.copies.in_vault("B", deleted=True)] == ["p0", "p1"]
        assert {p.id for p in u.points.in_vault("A")} == {"p0", "p1", "p2", "p3"}
    # with B's soft delete off they go at once (today's behaviour)
    with world.uow() as u:
        u.vaults.set_soft_delete("B", SoftDelete(SoftDeleteMode.OFF))
        for pid in ("p0", "p1"):
            u.copies.set_deleted(pid, "B", None)
        u.commit()
    outcome = world.service().copy_vm("A", "B", "web", None, (policy, Retention(daily=2)))
    assert outcome.result is not None and sorted(outcome.result.pruned) == ["p0", "p1"]
    assert world.store("B").list_manifests() == ["p2", "p3"]


def test_retention_of_the_target_leaves_backups_taken_into_it(world: World) -> None:
    """A backup taken directly into B (its own vault is B) is no copy: B's copy retention
    keeps it however old it is, and its catalog row stays."""
    start = now() - 5 * DAY
    add_point(world, "B", "b0", 9, start - DAY)  # the oldest point B holds
    for i in range(4):
        add_point(world, "A", f"p{i}", i, start + i * DAY)
    policy = Policy.create(
        "gold", "daily@02:00", "UTC", Retention(daily=7), CopyOption("B", Retention(daily=2))
    )
    outcome = world.service().copy_vm("A", "B", "web", None, (policy, Retention(daily=2)))
    assert outcome.result is not None
    assert sorted(outcome.result.pruned) == ["p0", "p1"]
    with world.uow() as u:
        assert [p.id for p in holdings.held_in(u, "B")] == ["p3", "p2", "b0"]
        b0 = u.points.get("b0")
        assert b0 is not None and b0.vault == "B"


def test_the_id_hint_comes_from_a_point_both_vaults_hold(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's newest point of the VM is one A does not hold (taken into B): the hint is read
    from the newest point *both* hold, whose two indexes are of the same data."""
    t = now() - 3 * DAY
    add_point(world, "A", "p1", 1, t)
    world.service().copy("A", "B", ["web"])
    add_point(world, "B", "zb", 5, t + DAY)  # newest in B, sorts last, not in A
    add_point(world, "A", "p2", 2, t + 2 * DAY)
    asked: list[list[str]] = []
    real = copies_module.known_ids

    def spy(src: VaultStore, dst: VaultStore, point_ids: Any) -> dict[bytes, bytes]:
        asked.append(list(point_ids))
        return real(src, dst, point_ids)

    monkeypatch.setattr(copies_module, "known_ids", spy)
    [outcome] = world.service().copy("A", "B", ["web"])
    assert outcome.result is not None and outcome.result.points == ["p2"]
    assert asked == [["p1"]]


def test_a_point_removed_from_its_own_vault_stays_in_its_copy(world: World) -> None:
    add_point(world, "A", "p1", 1, now())
    world.service().copy("A", "B", ["web"])
    world.store("A").delete_point("p1")
    with world.uow() as u:
        point = u.points.get("p1")
        assert point is not None
        assert holdings.forget(u, point, "A") == "B"
        u.commit()
    with world.uow() as u:
        moved = u.points.get("p1")
        assert moved is not None and moved.vault == "B" and u.copies.of_point("p1") == []
        with pytest.raises(PointNotInVault):
            holdings.vault_holding(u, moved, "A")
        assert holdings.vault_holding(u, moved, None) == "B"


def test_a_policy_copy_is_queued_and_run_by_a_worker_with_the_copy_retention(
    world: World,
) -> None:
    from vmvault.services.queue import QueueService

    start = now() - 4 * DAY
    for i in range(3):
        add_point(world, "A", f"p{i}", i, start + i * DAY)
    policy = Policy.create(
        "gold", "daily@02:00", "UTC", Retention(daily=7), CopyOption("B", Retention(daily=2))
    )
    with world.uow() as u:
        u.policies.add("A", policy, now())
        vm = u.vms.get(UUID)
        u.commit()
    assert vm is not None
    svc = world.service()
    queue = QueueService(
        svc.ctx,
        backups=lambda: None,  # type: ignore[arg-type,return-value]
        points=lambda: None,  # type: ignore[arg-type,return-value]
        restores=lambda: None,  # type: ignore[arg-type,return-value]
        protection=lambda: None,  # type: ignore[arg-type,return-value]
        copies=lambda: svc,
    )
    job = queue.queue_policy_copy("A", vm, policy)
    assert job is not None and job.state is JobState.QUEUED and job.type is JobType.COPY
    assert job.request == {"op": "copy", "vm": UUID, "from": "A", "to": "B", "policy": "gold"}
    # the VM busy with that queued job: a second policy copy is not queued (the first sends all)
    assert queue.queue_policy_copy("A", vm, policy) is None
    claimed = queue.claim_next()
    assert claimed is not None and claimed.id == job.id
    done = queue.execute(claimed)
    assert done.state is JobState.COMPLETED, (done.error_code, done.message)
    with world.uow() as u:  # daily=2 in B: p0 soft-deleted there (B's soft delete is on)
        assert [p.id for p in holdings.held_in(u, "B")] == ["p2", "p1"]
        assert [p.id for p, _ in holdings.deleted_in(u, "B")] == ["p0"]
    assert world.store("A").list_manifests() == ["p0", "p1", "p2"]
