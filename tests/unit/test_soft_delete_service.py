"""Soft delete (services/soft_delete.py) over a real SQLite catalog and real local vaults,
with a clock the test drives: every deletion path soft-deletes (points delete, retention
prune, protection stop --delete-data, a copy vault's retention), a soft-deleted point is
neither listed nor restorable nor verifiable until undeleted, GC keeps its chunks (no grace)
until its period ends and then purges it and reclaims them, per-vault holdings of copies,
the vault setting (off deletes at once; always cannot be turned off)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.catalog_world import catalog, now, write_point
from vmvault.domain.errors import (
    InvalidInput,
    PointNotInVault,
    PointNotSoftDeleted,
    PointSoftDeleted,
    SoftDeleteAlwaysOn,
    SoftDeleteExpired,
)
from vmvault.domain.job import JobState
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.soft_delete import SoftDeleteMode
from vmvault.domain.vm import VmState
from vmvault.services import holdings
from vmvault.services.context import ServiceContext
from vmvault.services.copies import CopyService
from vmvault.services.dashboard import DashboardService
from vmvault.services.jobs import JobRunner
from vmvault.services.point_listing import PointListing
from vmvault.services.points import PointService
from vmvault.services.protection import ProtectionService
from vmvault.services.soft_delete import PURGED, SoftDeleteService
from vmvault.services.vaults import VaultService

CS = 64 << 10
WEB = ("eeeeeeee-2222-3333-4444-555555555555", "web")
DAY = timedelta(days=1)


@dataclass
class Clock:
    at: datetime = field(default_factory=now)

    def __call__(self) -> datetime:
        return self.at


@dataclass
class World:
    tmp: Path
    uow: Any
    vaults: VaultService
    clock: Clock

    @property
    def ctx(self) -> ServiceContext:
        runner = JobRunner(self.uow, self.clock, 7100001, lambda p: True)
        return ServiceContext(self.uow, runner, self.vaults, self.clock)

    def points(self) -> PointService:
        return PointService(self.ctx)

    def listing(self) -> PointListing:
        return PointListing(self.ctx)

    def soft(self) -> SoftDeleteService:
        return SoftDeleteService(self.ctx)

    def add(self, vault: str, point_id: str, seed: int, when: datetime) -> bytes:
        return write_point(self.tmp, self.uow, self.vaults, vault, point_id, seed, when, WEB)

    def store_manifests(self, vault: str) -> list[str]:
        return self.vaults.open_store(self.vaults.resolve(vault)).list_manifests()

    def age(self, vault: str) -> None:
        """Make every chunk file of the vault two hours old: past any grace and the clock
        slack, so only a manifest referencing a chunk keeps it from GC."""
        old = time.time() - 7200
        for p in (self.tmp / vault / "chunks").rglob("*"):
            if p.is_file():
                os.utime(p, (old, old))

    def chunks(self, vault: str) -> set[str]:
        return {p.name for p in (self.tmp / vault / "chunks").rglob("*") if p.is_file()}

    def listed(self, vault: str) -> list[str]:
        return [p.id for p in self.listing().list_points(vault, None)]

    def deleted(self, vault: str) -> list[str]:
        return [g.point.id for g in self.soft().deleted(vault)[1]]


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_url: str) -> Iterator[World]:
    with catalog(tmp_path, monkeypatch, {WEB[0]: WEB[1]}, url=catalog_url) as c:
        for name in ("A", "B"):
            c.vaults.create(name, "local", str(tmp_path / name), chunk_size=CS)
        yield World(tmp_path, c.uow, c.vaults, Clock())


def test_a_deleted_point_is_soft_deleted_refused_and_restorable_after_undelete(
    world: World,
) -> None:
    data = world.add("A", "p1", 1, world.clock.at - DAY)
    outcome = world.points().delete_point("p1")
    assert outcome.job.state is JobState.COMPLETED
    assert world.store_manifests("A") == ["p1"]  # its manifest and indexes stay
    assert world.listed("A") == [] and world.deleted("A") == ["p1"]
    [gone] = world.soft().deleted("A")[1]
    assert gone.deleted.deleted_at == world.clock.at
    assert gone.deleted.purge_after == world.clock.at + 14 * DAY  # the default period
    out = world.tmp / "out"
    with pytest.raises(PointSoftDeleted) as err:
        world.points().restore_disks("web", "p1", str(out), fmt="raw")
    assert "vmvault points undelete p1" in err.value.remedy_text
    assert not out.exists()  # refused up front: nothing written
    with pytest.raises(PointSoftDeleted):
        world.points().verify(None, point_id="p1")
    with pytest.raises(PointSoftDeleted):  # deleting it again: refused too
        world.points().delete_point("p1")

    [back] = world.soft().undelete("p1")
    assert back.vault == "A"
    assert world.listed("A") == ["p1"] and world.deleted("A") == []
    with pytest.raises(PointNotSoftDeleted):
        world.soft().undelete("p1")
    restored = world.points().restore_disks("web", "p1", str(out), fmt="raw")
    assert restored.job.state is JobState.COMPLETED
    assert (out / "web-vda.raw").read_bytes() == data


def test_gc_keeps_soft_deleted_chunks_and_purges_them_after_the_period(world: World) -> None:
    world.add("A", "p1", 1, world.clock.at - 2 * DAY)
    before = world.chunks("A")
    world.add("A", "p2", 2, world.clock.at - DAY)  # shares 3 chunks, the zero one and the tail
    only_p2 = world.chunks("A") - before
    assert len(only_p2) == 3  # its 3 random chunks (the tail is the same in every point)
    world.soft().update_vault("A", days=3)
    world.points().delete_point("p2")
    world.age("A")
    all_chunks = world.chunks("A")

    gc = world.points().gc("A", grace=0)  # no grace: only what a manifest references stays
    assert gc.result is not None and gc.result.points_purged == []
    assert gc.result.chunks_removed == 0 and world.chunks("A") == all_chunks

    world.clock.at += 3 * DAY - timedelta(seconds=1)  # the last second of the period
    gc = world.points().gc("A", grace=0)
    assert gc.result is not None and gc.result.points_purged == []
    assert world.chunks("A") == all_chunks and world.deleted("A") == ["p2"]

    world.clock.at += timedelta(seconds=1)  # the period has ended
    with pytest.raises(SoftDeleteExpired):
        world.soft().undelete("p2")
    dry = world.points().gc("A", dry_run=True, grace=0)
    assert dry.result is not None and dry.result.points_purged == ["p2"]
    assert world.deleted("A") == ["p2"] and world.chunks("A") == all_chunks
    gc = world.points().gc("A", grace=0)
    assert gc.result is not None and gc.result.points_purged == ["p2"]
    assert gc.result.chunks_removed == len(only_p2)
    assert world.chunks("A") == before  # p1's chunks all stay
    assert world.store_manifests("A") == ["p1"] and world.deleted("A") == []
    with world.uow() as u:
        assert u.points.get("p2") is None
        [step] = [s for s in u.jobs.steps(gc.job.id) if s.step == PURGED]
    assert step.data["point"] == "p2" and step.data["vault"] == "A"
    assert step.data["purge_after"] == (world.clock.at).isoformat()


def _protected(world: World, retention: Retention) -> Any:
    policy = Policy.create("gold", "daily@02:00", "UTC", retention)
    with world.uow() as u:
        u.policies.add("A", policy, now())
        vm = u.vms.get(WEB[0])
        vm.state, vm.vault, vm.policy = VmState.PROTECTED, "A", "gold"
        u.vms.save(vm)
        u.commit()
    return vm


def test_retention_soft_deletes_and_does_not_see_them_again(world: World) -> None:
    for i in range(4):
        world.add("A", f"p{i}", i, world.clock.at - (4 - i) * DAY)
    vm = _protected(world, Retention(daily=2))
    protection = ProtectionService(world.ctx, lambda: None)  # type: ignore[arg-type,return-value]
    vault = world.vaults.resolve("A")
    first = protection.prune(vault, vm)
    assert first.result is not None and sorted(first.result.removed) == ["p0", "p1"]
    assert world.listed("A") == ["p3", "p2"] and world.deleted("A") == ["p1", "p0"]
    assert world.store_manifests("A") == ["p0", "p1", "p2", "p3"]
    again = protection.prune(vault, vm)
    assert again.result is not None and again.result.removed == []
    assert {d.point_id for d in again.result.decisions} == {"p2", "p3"}  # p0, p1 not seen


def test_stop_with_data_deletion_soft_deletes(world: World) -> None:
    world.add("A", "p1", 1, world.clock.at - DAY)
    _protected(world, Retention(daily=5))
    protection = ProtectionService(world.ctx, lambda: None)  # type: ignore[arg-type,return-value]
    [outcome] = protection.stop("A", ["web"], retain_data=False)
    assert outcome.job.state is JobState.COMPLETED
    assert world.listed("A") == [] and world.deleted("A") == ["p1"]
    assert world.store_manifests("A") == ["p1"]


def test_holdings_are_per_vault(world: World) -> None:
    world.add("A", "p1", 1, world.clock.at - DAY)
    copies = CopyService(world.ctx)
    copies.copy("A", "B", ["web"])
    world.points().delete_point("p1", "B")  # the copy only
    assert world.listed("A") == ["p1"] and world.deleted("A") == []
    assert world.listed("B") == [] and world.deleted("B") == ["p1"]
    with pytest.raises(PointSoftDeleted):
        world.points().restore_disks("web", "p1", str(world.tmp / "o"), from_vault="B")
    with pytest.raises(PointSoftDeleted):
        world.points().verify("B", point_id="p1")
    assert world.points().verify("A", point_id="p1").job.state is JobState.COMPLETED
    [again] = copies.copy("A", "B", ["web"])  # soft-deleted in B: not copied over it
    assert again.result is not None and again.result.points == []
    assert world.deleted("B") == ["p1"]
    # now the own vault's holding too; the copy undeleted: restores read from B
    world.soft().undelete("p1", "B")
    world.points().delete_point("p1", "A")
    with world.uow() as u:
        point = u.points.get("p1")
        assert point is not None and holdings.vault_holding(u, point, None) == "B"
        with pytest.raises(PointSoftDeleted):
            holdings.vault_holding(u, point, "A")
    assert world.listed("B") == ["p1"] and world.deleted("A") == ["p1"]
    assert [p.id for p in world.listing().list_points(None, "web")] == ["p1"]  # held in B
    with pytest.raises(PointNotSoftDeleted):
        world.soft().undelete("p1", "B")
    world.vaults.create("C", "local", str(world.tmp / "C"), chunk_size=CS)
    with pytest.raises(PointNotInVault):
        world.soft().undelete("p1", "C")
    world.soft().undelete("p1", "A")
    assert world.listed("A") == ["p1"] and world.listed("B") == ["p1"]


def test_the_own_vault_purged_while_a_copy_is_soft_deleted_keeps_the_copy_soft_deleted(
    world: World,
) -> None:
    world.add("A", "p1", 1, world.clock.at - DAY)
    CopyService(world.ctx).copy("A", "B", ["web"])
    world.soft().update_vault("A", days=1)
    world.points().delete_point("p1")  # both holdings soft-deleted: A for 1 day, B for 14
    assert world.deleted("A") == ["p1"] and world.deleted("B") == ["p1"]
    world.clock.at += DAY
    world.points().gc("A", grace=0)
    with world.uow() as u:
        point = u.points.get("p1")
        assert point is not None and point.vault == "B" and point.deleted is not None
        assert point.deleted.purge_after == world.clock.at - DAY + 14 * DAY
    assert world.deleted("B") == ["p1"] and world.store_manifests("A") == []
    world.soft().undelete("p1")
    assert world.listed("B") == ["p1"]


def test_soft_delete_off_deletes_at_once(world: World) -> None:
    world.add("A", "p1", 1, world.clock.at - DAY)
    vault = world.soft().update_vault("A", "off")
    assert vault.soft_delete.mode is SoftDeleteMode.OFF
    world.points().delete_point("p1")
    assert world.store_manifests("A") == [] and world.deleted("A") == []
    with world.uow() as u:
        assert u.points.get("p1") is None


def test_always_on_can_never_be_turned_off(world: World) -> None:
    assert world.vaults.resolve("A").soft_delete.mode is SoftDeleteMode.ON  # the default
    world.soft().update_vault("A", "always")
    for mode in ("off", "on"):
        with pytest.raises(SoftDeleteAlwaysOn) as err:
            world.soft().update_vault("A", mode)
        assert err.value.code == "SOFT_DELETE_ALWAYS_ON"
    assert world.vaults.resolve("A").soft_delete.mode is SoftDeleteMode.ALWAYS
    assert world.soft().update_vault("A", days=30).soft_delete.days == 30
    for days in (0, 3651):
        with pytest.raises(InvalidInput):
            world.soft().update_vault("A", days=days)
    with pytest.raises(InvalidInput):
        world.soft().update_vault("A")
    assert world.vaults.resolve("A").soft_delete.days == 30


def test_the_dashboard_counts_soft_deleted_points_and_their_bytes(world: World) -> None:
    world.add("A", "p1", 1, world.clock.at - 2 * DAY)
    world.add("A", "p2", 2, world.clock.at - DAY)
    world.points().delete_point("p1")
    board = DashboardService(world.ctx).summary("A")
    with world.uow() as u:
        p1 = u.points.get("p1")
    assert p1 is not None
    assert board.points == 1 and board.soft_deleted == 1
    assert board.soft_deleted_bytes == p1.bytes_logical > 0
    assert board.next_purge_at == world.clock.at + 14 * DAY
