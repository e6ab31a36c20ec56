"""Reuse lists and the GC epoch (vmvault.dataplane.reuse): an incremental keeps the chunks it
takes from its parent with one object instead of a touch per chunk, falls back to touches
when a GC delete step began meanwhile, and GC never deletes a chunk a point references —
on the local backend and the in-memory one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, make_image
from vmvault.dataplane import (
    FileSource,
    VaultStore,
    backup_disk,
    collect_garbage,
    restore_disk,
    verify_point,
)
from vmvault.dataplane.backup import claim_parents
from vmvault.dataplane.chunk import ID_LEN, ZERO_ID
from vmvault.dataplane.chunkstore import chunk_key
from vmvault.dataplane.reuse import EPOCH, REUSE, ReuseLists
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VaultStore:
    backend = LocalBackend(tmp_path / "vault") if request.param == "local" else MemoryBackend()
    return VaultStore.create(backend, chunk_size=CS)


def _age(store: VaultStore, prefix: str, seconds: float = 7200) -> None:
    """Make the objects under ``prefix`` look written ``seconds`` earlier."""
    backend = store.backend
    for info in list(backend.list_objects(prefix)):
        if isinstance(backend, MemoryBackend):
            backend.age(info.key, seconds)
            continue
        assert isinstance(backend, LocalBackend)
        path = backend.root / info.key
        try:
            t = os.stat(path).st_mtime - seconds
            os.utime(path, (t, t))
        except FileNotFoundError:  # collected meanwhile
            continue


@pytest.fixture()
def touches(store: VaultStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys the backend is asked to touch."""
    seen: list[str] = []
    real = store.backend.touch

    def touch(key: str) -> bool:
        seen.append(key)
        return real(key)

    monkeypatch.setattr(store.backend, "touch", touch)
    return seen


def _reuse_lists(store: VaultStore) -> list[set[bytes]]:
    lists = []
    for info in store.backend.list_objects(REUSE + "/"):
        data = store.backend.get(info.key)
        lists.append({data[i : i + ID_LEN] for i in range(0, len(data), ID_LEN)})
    return lists


def _layout(seeds: list[int]) -> list[tuple[str, int]]:
    return [("rand", s) for s in seeds]


def test_an_incremental_keeps_its_reused_chunks_with_one_reuse_list_and_no_touch(
    store: VaultStore, tmp_path: Path, touches: list[str]
) -> None:
    image = tmp_path / "d.img"
    make_image(image, _layout([0, 1, 2, 3, 4, 5]))
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    content = make_image(image, _layout([0, 1, 2, 3, 4, 50]))
    touches.clear()
    p2 = backup_point(store, "p2", {"vda": image}, parent="p1", dirty={"vda": [(5 * CS, CS)]})
    r = p2["vda"]
    assert r.chunks_reused == 5 and r.chunks_new == 1
    reused = set(p1.index.ids[:5])
    assert not {chunk_key(cid) for cid in reused} & set(touches)  # not one touch of them
    assert _reuse_lists(store) == [reused]
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == content and verify_point(store, "p2").ok


def test_without_an_epoch_the_incremental_touches_as_before(
    store: VaultStore, tmp_path: Path, touches: list[str]
) -> None:
    image = tmp_path / "d.img"
    make_image(image, _layout([0, 1, 2]))
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    store.backend.delete(EPOCH)  # a vault made before the epoch existed, never collected since
    touches.clear()
    backup_point(store, "p2", {"vda": image}, parent="p1", dirty={"vda": []})
    assert sorted(touches) == sorted(chunk_key(cid) for cid in p1.index.ids)
    assert _reuse_lists(store) == []
    collect_garbage(store, grace_seconds=0)  # a GC writes the epoch: the next one needs none
    touches.clear()
    backup_point(store, "p3", {"vda": image}, parent="p2", dirty={"vda": []})
    assert touches == [] and _reuse_lists(store) == [set(p1.index.ids)]


def test_a_gc_delete_step_after_the_epoch_was_read_makes_the_incremental_touch_and_reread(
    store: VaultStore, tmp_path: Path, touches: list[str]
) -> None:
    image = tmp_path / "d.img"
    content = make_image(image, _layout([0, 1, 2, 3]))
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    m, epoch = store.read_parent("p1")
    previous = store.read_point_index(m, "vda")
    store.delete_point("p1")  # the parent is deleted mid-backup …
    _age(store, "chunks/")
    assert collect_garbage(store, grace_seconds=0).chunks_removed == 4  # … and collected
    assert store.reuse.epoch() != epoch
    touches.clear()
    with store.writer("p2"), FileSource(image) as src:
        r = backup_disk(store, src, previous=previous, dirty=[], epoch=epoch)
    assert {chunk_key(cid) for cid in p1.index.ids} <= set(touches)  # the fallback ran
    assert r.chunks_reused == 0 and r.chunks_new == 4  # every chunk read again
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == content


def test_a_gc_that_marked_before_the_new_manifest_keeps_what_its_reuse_list_holds(
    store: VaultStore, tmp_path: Path
) -> None:
    """The list outlives its writer: this GC's mark saw neither point, the writer ended before
    its delete step, and only the list keeps the chunks of ``p2`` (delete it at the writer's
    end, or skip it in the sweep, and this test loses them)."""
    image = tmp_path / "d.img"
    make_image(image, _layout([0, 1, 2, 3]))
    ran: list[bool] = []

    def after_the_mark() -> bool:  # GC polls ``cancel`` first right after its mark
        if not ran:
            ran.append(True)
            backup_point(store, "p1", {"vda": image})
            _age(store, "chunks/")  # p1's chunks look old: candidates once p1 is gone
            backup_point(store, "p2", {"vda": image}, parent="p1", dirty={"vda": []})
            store.delete_point("p1")
        return False

    report = collect_garbage(store, grace_seconds=0, cancel=after_the_mark)
    assert ran and report.points == 0
    assert report.chunks_removed == 0 and report.chunks_kept_recent == 4
    assert verify_point(store, "p2").ok
    _age(store, REUSE + "/")  # a later GC sees p2 in its mark; the list goes once it is old
    report = collect_garbage(store, grace_seconds=0)
    assert report.reuse_lists_removed == 1 and _reuse_lists(store) == []
    assert report.chunks_removed == 0 and verify_point(store, "p2").ok


def test_a_fresh_reuse_list_is_not_removed_and_a_dry_run_changes_nothing(
    store: VaultStore, tmp_path: Path
) -> None:
    image = tmp_path / "d.img"
    make_image(image, _layout([0, 1]))
    backup_point(store, "p1", {"vda": image})
    backup_point(store, "p2", {"vda": image}, parent="p1", dirty={"vda": []})
    epoch = store.reuse.epoch()
    assert collect_garbage(store, grace_seconds=0).reuse_lists_removed == 0
    assert len(_reuse_lists(store)) == 1 and store.reuse.epoch() == epoch  # nothing to delete
    store.delete_point("p1")
    store.delete_point("p2")
    _age(store, "")
    dry = collect_garbage(store, grace_seconds=0, dry_run=True)
    assert dry.chunks_removed == 2 and store.reuse.epoch() == epoch
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 2 and report.reuse_lists_removed == 1
    assert store.reuse.epoch() != epoch and store.chunk_usage().objects == 0


def test_claim_is_false_when_the_epoch_moved_or_is_missing(store: VaultStore) -> None:
    ids = [bytes([n]) * ID_LEN for n in range(3)]
    epoch = store.reuse.epoch()
    assert epoch is not None and store.reuse.claim(ids, epoch)
    store.reuse.new_epoch()
    assert not store.reuse.claim(ids, epoch)
    assert not store.reuse.claim(ids, None)
    gc_side = ReuseLists(store.backend, store.shared_lock)
    assert gc_side.begin_delete_step(0.0) == frozenset(ids)
    assert gc_side.begin_delete_step(store.backend.now() + 10) == frozenset()  # all too old


def test_gc_concurrent_with_incrementals_whose_parent_is_deleted_never_loses_a_chunk(
    store: VaultStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain of incrementals, each from the point before, which is deleted (and its chunks
    aged) once the new backup has read it, while GC sweeps with no grace, in a loop."""
    image = tmp_path / "d.img"
    seeds = list(range(8))
    make_image(image, _layout(seeds))
    backup_point(store, "p0", {"vda": image})
    claims: list[bool] = []
    real_claim = store.reuse.claim

    def claim(cids: list[bytes], epoch: bytes | None) -> bool:
        claims.append(real_claim(cids, epoch))
        return claims[-1]

    monkeypatch.setattr(store.reuse, "claim", claim)
    stop = threading.Event()
    sweeps = 0

    def gc_loop() -> None:
        nonlocal sweeps
        while not stop.is_set():
            collect_garbage(store, grace_seconds=0)
            sweeps += 1
            stop.wait(0.002)

    def drop(point: str) -> None:
        store.delete_point(point)
        _age(store, "chunks/")

    gc = threading.Thread(target=gc_loop)
    gc.start()
    try:
        for n in range(1, 13):
            k = n % len(seeds)
            seeds[k] = 100 + n
            content = make_image(image, _layout(seeds))
            backup_point(
                store,
                f"p{n}",
                {"vda": image},
                parent=f"p{n - 1}",
                dirty={"vda": [(k * CS, CS)]},
                then=lambda p=f"p{n - 1}": drop(p),
            )
            assert verify_point(store, f"p{n}").ok, n
            out = tmp_path / f"out{n}.raw"
            restore_disk(store, store.read_point_index(store.read_manifest(f"p{n}"), "vda"), out)
            assert out.read_bytes() == content, n
    finally:
        stop.set()
        gc.join()
    assert sweeps > 0 and any(claims)  # the reuse-list path ran (and maybe the fallback)
    assert store.list_manifests() == ["p12"]
    assert ZERO_ID not in set().union(*_reuse_lists(store))


def test_one_claim_holds_the_reused_chunks_of_every_disk_of_a_point(
    store: VaultStore, tmp_path: Path, touches: list[str]
) -> None:
    """The backup service claims once per point (claim_parents), not once per disk: one
    reuse list with the ids of all the parent's indexes, then no claim and no touch."""
    images = {t: tmp_path / f"{t}.img" for t in ("vda", "vdb")}
    make_image(images["vda"], _layout([0, 1, 2]))
    make_image(images["vdb"], _layout([3, 4]))
    p1 = backup_point(store, "p1", images)
    m, epoch = store.read_parent("p1")
    parents = {t: store.read_point_index(m, t) for t in images}
    touches.clear()
    with store.writer("p2"):
        assert claim_parents(store, parents.values(), epoch)
        for t, image in images.items():
            with FileSource(image) as src:
                r = backup_disk(store, src, previous=parents[t], dirty=[], held=True)
            assert r.chunks_reused == len(p1[t].index.ids) and r.bytes_read == 0
    assert touches == []
    assert _reuse_lists(store) == [set(p1["vda"].index.ids) | set(p1["vdb"].index.ids)]


def test_a_point_claim_after_a_gc_step_fails_and_the_disks_touch(
    store: VaultStore, tmp_path: Path, touches: list[str]
) -> None:
    image = tmp_path / "d.img"
    make_image(image, _layout([0, 1]))
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    m, epoch = store.read_parent("p1")
    parent = store.read_point_index(m, "vda")
    store.reuse.new_epoch()  # what a GC delete step does first
    touches.clear()
    with store.writer("p2"):
        assert not claim_parents(store, [parent], epoch)
        with FileSource(image) as src:
            r = backup_disk(store, src, previous=parent, dirty=[], held=False)
    assert sorted(touches) == sorted(chunk_key(cid) for cid in p1.index.ids)
    assert r.chunks_reused == 2
