"""Backup → restore round trips: raw and qcow2, sparse, partial chunks, incremental, dedup."""

from __future__ import annotations

import subprocess
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.dataplane.conftest import (
    CS,
    backup_point,
    chunk_bytes,
    chunk_files,
    make_image,
    vault_dir,
)
from vmvault.dataplane import ZERO_ID, FileSource, VaultStore, backup_disk, restore_disk
from vmvault.domain.errors import Cancelled, DiskReadFailed, InvalidInput, RestoreTargetExists

LAYOUT = [("rand", 1), ("zero", 0), ("text", 2), ("rand", 1), ("zero", 0), ("rand", 3)]


def test_round_trip_raw_is_identical_and_sparse(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    content = make_image(image, LAYOUT * 3, tail=12345)  # size not a multiple of the chunk
    r = backup_point(store, "p1", {"vda": image})["vda"]
    assert r.index.disk_size == len(content)
    assert r.chunks_zero == 6
    assert r.chunks_new == 4  # rand 1 (x6), text 2 (x3), rand 3 (x3), the tail
    assert r.chunks_dedup == 9
    out = tmp_path / "out.raw"
    m = store.read_manifest("p1")
    res = restore_disk(store, store.read_point_index(m, "vda"), out)
    assert out.read_bytes() == content
    assert res.chunks_zero == 6
    allocated = out.stat().st_blocks * 512
    assert allocated < len(content) - 6 * CS + CS // 2  # the zero chunks are holes


def test_partial_last_chunk_alone(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "tiny.img"
    image.write_bytes(b"x" * 1000)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    assert len(r.index.ids) == 1 and r.index.chunk_length(0) == 1000
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == b"x" * 1000


def test_empty_and_all_zero_disks(store: VaultStore, tmp_path: Path) -> None:
    empty, zeros = tmp_path / "empty.img", tmp_path / "zeros.img"
    empty.write_bytes(b"")
    zeros.write_bytes(bytes(3 * CS + 7))  # written zeros, not holes: detected after reading
    rs = backup_point(store, "p1", {"vda": empty, "vdb": zeros})
    assert rs["vda"].index.ids == []
    assert rs["vdb"].index.ids == [ZERO_ID] * 4 and rs["vdb"].bytes_read == 3 * CS + 7
    assert list(store.iter_chunk_ids()) == []
    out = tmp_path / "out.raw"
    restore_disk(store, rs["vdb"].index, out)
    assert out.read_bytes() == bytes(3 * CS + 7) and out.stat().st_blocks == 0


def test_round_trip_qcow2(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, LAYOUT, tail=4096)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.qcow2"
    restore_disk(store, r.index, out, fmt="qcow2")
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(out)], capture_output=True, text=True, check=True
    )
    assert '"format": "qcow2"' in info.stdout
    cmp = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(image), str(out)],
        capture_output=True,
        text=True,
    )
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_restore_refuses_existing_target_unless_overwrite(
    store: VaultStore, tmp_path: Path
) -> None:
    image = tmp_path / "disk.img"
    content = make_image(image, LAYOUT)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.raw"
    out.write_bytes(b"keep me")
    with pytest.raises(RestoreTargetExists):
        restore_disk(store, r.index, out)
    assert out.read_bytes() == b"keep me"
    restore_disk(store, r.index, out, overwrite=True)
    assert out.read_bytes() == content
    with pytest.raises(InvalidInput):
        restore_disk(store, r.index, tmp_path / "x.vmdk", fmt="vmdk")


def test_incremental_equals_full_and_reads_only_dirty(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    layout = [("rand", i) for i in range(10)] + [("zero", 0)] * 4
    make_image(image, layout, tail=100)
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    # Change chunk 2 (a few bytes), zero chunk 5, write data into hole 11 and the tail.
    with open(image, "r+b") as fh:
        fh.seek(2 * CS + 10)
        fh.write(b"changed")
        fh.seek(5 * CS)
        fh.write(bytes(CS))
        fh.seek(11 * CS + 500)
        fh.write(b"new data in a hole")
        fh.seek(14 * CS + 50)
        fh.write(b"t")
    dirty = [(2 * CS + 10, 7), (5 * CS, CS), (11 * CS + 500, 18), (14 * CS + 50, 1)]
    before = set(store.iter_chunk_ids())
    inc = backup_point(
        store, "p2", {"vda": image}, previous={"vda": p1.index}, dirty={"vda": dirty}
    )
    r = inc["vda"]
    assert r.incremental
    assert r.bytes_read == 3 * CS + 100  # chunks 2, 5, 11 and the tail
    assert r.chunks_reused == 8  # the untouched data chunks
    assert r.chunks_new == 3  # 2, 11, tail (5 is now zero)
    assert len(set(store.iter_chunk_ids()) - before) == 3
    with FileSource(image) as src, store.writer("full"):
        full = backup_disk(store, src)
    assert full.index == r.index
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == image.read_bytes()


def test_incremental_after_resize_reads_the_changed_tail(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", 1), ("rand", 2)], tail=1000)
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    with open(image, "r+b") as fh:
        fh.truncate(4 * CS)  # grown: old tail chunk is now full length, one more chunk
    r = backup_point(store, "p2", {"vda": image}, previous={"vda": p1.index}, dirty={"vda": []})[
        "vda"
    ]
    assert r.chunks_reused == 2 and r.bytes_read == 2 * CS
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == image.read_bytes()


def test_incremental_rereads_a_reused_chunk_that_was_collected(
    store: VaultStore, tmp_path: Path
) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", 1), ("rand", 2)])
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    store.chunks.remove(p1.index.ids[1])  # as if pruned and collected meanwhile
    r = backup_point(store, "p2", {"vda": image}, previous={"vda": p1.index}, dirty={"vda": []})[
        "vda"
    ]
    assert r.chunks_reused == 1 and r.chunks_new == 1
    assert store.has_chunk(p1.index.ids[1])


def test_dedup_across_two_vms(store: VaultStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    make_image(a, [("rand", i) for i in range(8)])
    make_image(b, [("rand", i) for i in range(4)] + [("rand", 100 + i) for i in range(4)])
    ra = backup_point(store, "pa", {"vda": a}, vm="a")["vda"]
    rb = backup_point(store, "pb", {"vda": b}, vm="b")["vda"]
    assert ra.chunks_new == 8
    assert rb.chunks_dedup == 4 and rb.chunks_new == 4
    assert len(list(store.iter_chunk_ids())) == 12


def test_cancel_leaves_no_index_and_no_chunks(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", i) for i in range(40)])
    calls = 0

    def cancel() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    with store.writer("p1"), FileSource(image) as src, pytest.raises(Cancelled) as exc:
        backup_disk(store, src, cancel=cancel)
    assert exc.value.code == "CANCELLED"
    assert chunk_files(store) == []  # neither chunks nor temporary files
    assert list((vault_dir(store) / "indexes").iterdir()) == []


def test_backup_requires_a_writer_registration(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", 1)])
    with FileSource(image) as src, pytest.raises(RuntimeError):
        backup_disk(store, src)


def test_progress_is_reported_in_bytes_to_read(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", 1), ("zero", 0), ("rand", 2)], tail=10)
    seen: list[tuple[int, int]] = []
    with store.writer("p"), FileSource(image) as src:
        backup_disk(store, src, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2 * CS + 10, 2 * CS + 10)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@settings(
    max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    kinds=st.lists(st.sampled_from(["rand", "zero", "text"]), min_size=0, max_size=9),
    seeds=st.lists(st.integers(0, 3), min_size=9, max_size=9),
    tail=st.integers(0, CS - 1),
    workers=st.integers(1, 3),
)
def test_round_trip_any_layout(kinds: list[str], seeds: list[int], tail: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = VaultStore.create(root / "v", chunk_size=CS)
        image = root / "d.img"
        content = make_image(image, list(zip(kinds, seeds, strict=False)), tail=tail)
        with store.writer("p"), FileSource(image) as src:
            r = backup_disk(store, src, workers=workers)
        out = root / "o.raw"
        restore_disk(store, r.index, out, workers=workers)
        assert out.read_bytes() == content


def test_peak_memory_does_not_grow_with_disk_size(tmp_path: Path) -> None:
    chunk = 1 << 20
    store = VaultStore.create(tmp_path / "v", chunk_size=chunk)

    def peak(size_mib: int) -> int:
        image = tmp_path / f"{size_mib}.img"
        with open(image, "wb") as fh:
            fh.truncate(size_mib << 20)
            for mib in range(0, size_mib, 4):  # every 4th MiB random, the rest holes
                fh.seek(mib << 20)
                fh.write(chunk_bytes("rand", chunk, seed=size_mib * 1000 + mib))
        tracemalloc.start()
        try:
            with store.writer("m"), FileSource(image) as src:
                backup_disk(store, src, workers=2)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            image.unlink()

    small, large = peak(64), peak(256)
    buffers = (2 * 2 + 2) * chunk
    assert large < buffers + 6 * chunk, large  # the pool + a few chunks in flight
    assert large < small + 2 * chunk, (small, large)


class _ThreeReaders(FileSource):
    max_readers = 3


class _FailingSource(FileSource):
    def pread_into(self, buf: memoryview, offset: int) -> None:
        if offset >= 5 * CS:
            raise DiskReadFailed("simulated", disk=str(self.path), offset=offset)
        super().pread_into(buf, offset)


def test_sources_that_take_concurrent_reads(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    content = make_image(image, [("rand", i % 7) for i in range(30)] + [("zero", 0)] * 3, tail=9)
    with store.writer("p"), _ThreeReaders(image) as src:
        r = backup_disk(store, src, workers=2)
    assert r.chunks_new == 8 and r.chunks_dedup == 23
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == content


def test_a_read_error_fails_the_backup_cleanly(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, [("rand", i) for i in range(12)])
    with store.writer("p"), _FailingSource(image) as src, pytest.raises(DiskReadFailed):
        backup_disk(store, src)
    assert chunk_files(store) == []
