"""Immutable vaults (services/immutability.py) over a real SQLite catalog and real local
vaults on this machine's file system, with a clock the test drives: every deletion path is
refused or skips a retained point, policies and soft delete only lengthen, the setting cannot
be undone once locked, ``points lock`` only lengthens; below vmvault, the files of a retained
point carry the Linux immutable attribute (unlink fails with EPERM, even as root) until its
retention ends, and then GC reclaims them."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.catalog_world import catalog
from tests.unit.test_soft_delete_service import DAY, WEB, Clock, World, _protected
from vmvault.domain.errors import (
    ImmutableLocked,
    ImmutableUnsupported,
    PointRetained,
    RetentionShortened,
)
from vmvault.domain.immutability import ImmutableMode
from vmvault.domain.job import JobState
from vmvault.domain.retention import Retention
from vmvault.services.immutability import ImmutabilityService
from vmvault.services.policies import PolicyService
from vmvault.services.protection import ProtectionService
from vmvault.storage import local_hold
from vmvault.storage.memory import MemoryBackend

CS = 64 << 10


def _clear_flags(root: Path) -> None:
    """Let pytest remove what a test left immutable."""
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                local_hold.set_immutable(p, False)


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_url: str) -> Iterator[World]:
    why = local_hold.ImmutableFiles(tmp_path).check()
    if why is not None:
        pytest.skip(f"this file system cannot hold files: {why}")
    with catalog(tmp_path, monkeypatch, {WEB[0]: WEB[1]}, url=catalog_url) as c:
        for name in ("A", "B"):
            c.vaults.create(name, "local", str(tmp_path / name), chunk_size=CS)
        try:
            yield World(tmp_path, c.uow, c.vaults, Clock())
        finally:
            _clear_flags(tmp_path)


def _age(vault: Path) -> None:
    """World.age for held files too: two hours old, their attribute as it was."""
    old = time.time() - 7200
    for p in (vault / "chunks").rglob("*"):
        if p.is_file():
            held = local_hold.set_immutable(p, False)
            os.utime(p, (old, old))
            if held:
                local_hold.set_immutable(p, True)


def _imm(world: World) -> ImmutabilityService:
    return ImmutabilityService(world.ctx)


def _held(path: Path) -> bool:
    return local_hold.is_immutable(path)


def test_a_retained_point_cannot_leave_by_any_path(world: World) -> None:
    # p2 (half a day back) and p3 (now) must fall on one UTC day, whatever the hour it runs
    world.clock.at = world.clock.at.replace(hour=18, minute=0, second=0, microsecond=0)
    imm = _imm(world)
    world.add("A", "p1", 1, world.clock.at - DAY)
    world.add("A", "p2", 2, world.clock.at - DAY / 2)
    vault = imm.update_vault("A", True)
    assert vault.immutable is ImmutableMode.ON
    point, held = imm.lock_point("p1", world.clock.at + 10 * DAY)
    assert point.retain_until == world.clock.at + 10 * DAY
    assert held == 1 + 1 + 7  # manifest, index, 7 stored chunks (6 of data, the tail)

    with pytest.raises(PointRetained) as err:  # points delete: refused up front
        world.points().delete_point("p1")
    assert err.value.code == "POINT_RETAINED"
    assert world.listed("A") == ["p2", "p1"] and world.deleted("A") == []

    vm = _protected(world, Retention(daily=2))
    protection = ProtectionService(world.ctx, lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(PointRetained):  # protection stop --delete-data: refused, nothing done
        protection.stop("A", ["web"], retain_data=False)
    assert world.listed("A") == ["p2", "p1"]

    # p2 retained as its policy would have it (a retain-until, no keep-until); p3 supersedes
    # it within its day, so retention alone would remove it: it is kept, and says why
    with world.uow() as u:
        u.points.set_retain_until("p2", world.clock.at + 2 * DAY)
        u.commit()
    world.add("A", "p3", 3, world.clock.at)
    pruned = protection.prune(world.vaults.resolve("A"), vm)
    assert pruned.result is not None and pruned.result.removed == []
    [why] = [d for d in pruned.result.decisions if d.point_id == "p2"]
    assert why.keep and why.reasons[0].startswith("retained until ")

    world.clock.at += 10 * DAY  # retention has ended: it may go
    outcome = world.points().delete_point("p1")
    assert outcome.job.state is JobState.COMPLETED and world.deleted("A") == ["p1"]


def test_the_storage_refuses_to_delete_a_retained_points_files(world: World) -> None:
    imm = _imm(world)
    world.add("A", "p1", 1, world.clock.at - DAY)
    before = world.chunks("A")
    world.add("A", "p2", 2, world.clock.at)  # shares p1's 3 common chunks
    only_p2 = world.chunks("A") - before
    world.soft().update_vault("A", mode="off")  # deleted at once when its retention ends
    imm.update_vault("A", True)
    imm.lock_point("p2", world.clock.at + 5 * DAY)
    manifest = world.tmp / "A" / "manifests" / "p2.manifest"
    files = [manifest, *(world.tmp / "A" / "indexes" / "p2").iterdir()]
    files += [p for p in (world.tmp / "A" / "chunks").rglob("*") if p.name in only_p2]
    assert len(files) == 1 + 1 + 3 and all(_held(f) for f in files)
    for f in files:  # as root, straight at the files: the kernel says no
        with pytest.raises(PermissionError) as err:
            f.unlink()
        assert err.value.errno == errno.EPERM
        with pytest.raises(PermissionError):
            f.write_bytes(b"ransom")

    world.clock.at += 5 * DAY  # retention ends: vmvault clears the attribute, then deletes
    world.points().delete_point("p2")  # soft delete off: deleted at once
    assert not manifest.exists() and world.store_manifests("A") == ["p1"]
    _age(world.tmp / "A")
    gc = world.points().gc("A", grace=0)
    assert gc.result is not None and gc.result.chunks_removed == len(only_p2)
    assert world.chunks("A") == before


def test_a_reused_chunk_of_a_held_point_is_still_touched(world: World) -> None:
    """Dedup is unaffected: a backup that finds a held chunk present refreshes its mtime
    (the batch's touch) although the file is immutable, and leaves it immutable."""
    imm = _imm(world)
    world.add("A", "p1", 1, world.clock.at - DAY)
    imm.update_vault("A", True)
    imm.lock_point("p1", world.clock.at + DAY)
    _age(world.tmp / "A")
    chunk = next(p for p in (world.tmp / "A" / "chunks").rglob("*") if p.is_file())
    old = chunk.stat().st_mtime
    store = world.vaults.open_store(world.vaults.resolve("A"))
    assert store.backend.touch(str(chunk.relative_to(world.tmp / "A")))
    assert chunk.stat().st_mtime > old and _held(chunk)


def test_a_soft_deleted_retained_point_is_not_purged(world: World) -> None:
    imm = _imm(world)
    world.add("A", "p1", 1, world.clock.at - DAY)
    world.soft().update_vault("A", days=1)
    world.points().delete_point("p1")  # soft-deleted before the vault became immutable
    with world.uow() as u:  # a lock taken meanwhile (points lock refuses nothing here)
        u.points.set_retain_until("p1", world.clock.at + 3 * DAY)
        u.commit()
    imm.update_vault("A", True)
    world.clock.at += 2 * DAY  # its soft-delete period ended, its retention did not
    gc = world.points().gc("A", grace=0)
    assert gc.result is not None and gc.result.points_purged == []
    assert world.deleted("A") == ["p1"]
    assert any("retained until" in line for line in _log(world, gc.job.id))
    world.clock.at += DAY
    gc = world.points().gc("A", grace=0)
    assert gc.result is not None and gc.result.points_purged == ["p1"]


def _log(world: World, job_id: int) -> list[str]:
    with world.uow() as u:
        return u.jobs.log(job_id)


def test_policies_and_soft_delete_of_an_immutable_vault_only_lengthen(world: World) -> None:
    _protected(world, Retention(daily=7, weekly=4))
    policies = PolicyService(world.ctx)
    policies.update("gold", counts={"daily": 5})  # not immutable yet: allowed
    _imm(world).update_vault("A", True)
    with pytest.raises(RetentionShortened) as err:
        policies.update("gold", counts={"weekly": 3})
    assert "weekly 4 -> 3" in err.value.text
    assert policies.update("gold", counts={"daily": 9, "monthly": 2}).changed
    with pytest.raises(RetentionShortened):
        world.soft().update_vault("A", days=13)
    with pytest.raises(RetentionShortened):
        world.soft().update_vault("A", mode="off")
    assert world.soft().update_vault("A", days=30).soft_delete.days == 30


def test_locking_is_permanent_and_a_lock_only_lengthens(world: World) -> None:
    imm = _imm(world)
    world.add("A", "p1", 1, world.clock.at - DAY)
    assert imm.update_vault("A", True, lock=True).immutable is ImmutableMode.LOCKED
    with pytest.raises(ImmutableLocked):
        imm.update_vault("A", False)
    assert world.vaults.resolve("A").immutable is ImmutableMode.LOCKED
    imm.lock_point("p1", world.clock.at + 2 * DAY)
    with pytest.raises(RetentionShortened):
        imm.lock_point("p1", world.clock.at + DAY)
    p, _ = imm.lock_point("p1", world.clock.at + 3 * DAY)
    assert p.retain_until == p.keep_until == world.clock.at + 3 * DAY
    assert imm.update_vault("B", True).immutable is ImmutableMode.ON
    assert imm.update_vault("B", False).immutable is ImmutableMode.OFF


def test_a_storage_that_cannot_hold_is_refused() -> None:
    from vmvault.dataplane.holds import check_hold
    from vmvault.dataplane.vault import VaultStore

    store = VaultStore.create(MemoryBackend(), chunk_size=CS)
    with pytest.raises(ImmutableUnsupported) as err:
        check_hold(store, "mem")
    assert err.value.code == "IMMUTABLE_UNSUPPORTED"
