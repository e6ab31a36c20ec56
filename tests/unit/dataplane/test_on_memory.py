"""The data path on the in-memory backend: it speaks only to the storage contract, so backup,
restore, verify, quarantine, delete and GC work on any backend, not just a directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, chunk_bytes, make_image
from vmvault.dataplane import VaultStore, collect_garbage, restore_disk, verify_point
from vmvault.domain.errors import (
    ChunkMissing,
    InvalidInput,
    PointNotFound,
    StorageUnreachable,
    VaultLocked,
    VaultNotInitialised,
)
from vmvault.storage.memory import MemoryBackend


@pytest.fixture()
def mem() -> MemoryBackend:
    return MemoryBackend("memory:test")


@pytest.fixture()
def store(mem: MemoryBackend) -> VaultStore:
    return VaultStore.create(mem, chunk_size=CS)


def _age_chunks(mem: MemoryBackend, seconds: float = 7200) -> None:
    for info in list(mem.list_objects("chunks/")):
        mem.age(info.key, seconds)


def test_create_open_and_round_trip(mem: MemoryBackend, store: VaultStore, tmp_path: Path) -> None:
    with pytest.raises(VaultNotInitialised):
        VaultStore.open(MemoryBackend())
    with pytest.raises(InvalidInput):
        VaultStore.create(mem, chunk_size=CS)
    image = tmp_path / "d.img"
    content = make_image(image, [("rand", 1), ("zero", 0), ("text", 2), ("rand", 1)], tail=99)
    backup_point(store, "p1", {"vda": image})
    again = VaultStore.open(mem)
    m = again.read_manifest("p1")
    out = tmp_path / "out.raw"
    restore_disk(again, again.read_point_index(m, "vda"), out)
    assert out.read_bytes() == content
    assert verify_point(again, "p1").ok
    assert again.has_manifest("p1") and again.list_index_dirs() == ["p1"]
    assert {i.key.split("/")[0] for i in mem.list_objects()} == {
        "config",
        "chunks",
        "indexes",
        "manifests",
        "gc-epoch",
    }
    assert again.chunk_usage().objects == 3  # rand 1 (twice), text 2, the tail


def test_incremental_delete_and_gc(mem: MemoryBackend, store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1), ("rand", 2)])
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    make_image(image, [("rand", 1), ("rand", 3)])
    p2 = backup_point(
        store, "p2", {"vda": image}, previous={"vda": p1.index}, dirty={"vda": [(CS, CS)]}
    )["vda"]
    assert p2.chunks_reused == 1 and p2.chunks_new == 1
    stray, _ = store.put_chunk(chunk_bytes("rand", CS, seed=9))
    _age_chunks(mem)
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 1 and not store.has_chunk(stray)
    store.delete_point("p1")
    with pytest.raises(PointNotFound):
        store.read_manifest("p1")
    assert store.list_index_dirs() == ["p2"]
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 1 and verify_point(store, "p2").ok


def test_gc_respects_a_running_writer_and_readers(
    mem: MemoryBackend, store: VaultStore, tmp_path: Path
) -> None:
    cid, _ = store.put_chunk(chunk_bytes("rand", CS, seed=4))
    _age_chunks(mem)
    with store.writer("w") as w:
        assert store.touch_chunk(cid)  # reused by the running backup
        report = collect_garbage(store, grace_seconds=0)
        assert report.writers == ["w"] and report.cutoff <= w.started_at
        assert report.chunks_removed == 0 and store.has_chunk(cid)
    with store.reader(), pytest.raises(VaultLocked):
        collect_garbage(store, grace_seconds=0, lock_timeout=0.1)
    with store.gc_lock(), pytest.raises(VaultLocked):
        collect_garbage(store)


def test_a_crashed_backup_leaves_debris_that_gc_sweeps(
    mem: MemoryBackend, store: VaultStore
) -> None:
    batch = store.begin_batch()
    cid = store.chunk_id(chunk_bytes("rand", CS, seed=5))
    batch.add(cid, [b"debris"])  # the writer dies here: no commit, no abort
    assert not store.has_chunk(cid)
    assert collect_garbage(store, grace_seconds=3600).tmp_removed == 0  # could be live
    mem.clock = lambda: threading.TIMEOUT_MAX  # much later
    assert collect_garbage(store, grace_seconds=0).tmp_removed == 1


def test_quarantine_without_rename(mem: MemoryBackend, store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("text", 1)])
    r = backup_point(store, "p1", {"vda": image})["vda"]
    bad = r.index.ids[0]
    key = store.chunks.key(bad)
    blob = bytearray(mem.get(key))
    blob[-1] ^= 0xFF
    mem.publish(key, blob)
    report = verify_point(store, "p1", quarantine=True)
    assert report.disks["vda"].corrupt == [bad]
    assert not store.has_chunk(bad) and mem.exists(key + ".bad")
    with pytest.raises(ChunkMissing):
        store.get_chunk(bad)
    backup_point(store, "p2", {"vda": image})  # stores it again: p1 heals
    assert verify_point(store, "p1").ok


@pytest.mark.parametrize("op", ["register_writer", "lock", "live_writers"])
def test_storage_gone_when_a_backup_or_gc_starts_is_storage_unreachable(
    store: VaultStore, mem: MemoryBackend, op: str
) -> None:
    """An endpoint that is gone before the first chunk (the writer registration, the vault
    lock, GC's list of writers) fails with the error users see, not a raw storage error."""
    mem.inject(op, times=1)
    with pytest.raises(StorageUnreachable):
        if op == "register_writer":
            with store.writer("p1"):
                pass
        elif op == "lock":
            with store.shared_lock():
                pass
        else:
            store.writers.live()
    with store.writer("p1"), store.shared_lock():  # the next attempt works
        assert [w.name for w in store.writers.live()] == ["p1"]
