"""Verify, delete, garbage collection and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import (
    CS,
    age,
    backup_point,
    chunk_bytes,
    chunk_files,
    chunk_path,
    make_image,
    manifest_file,
    sample_manifest,
    vault_dir,
)
from vmvault.dataplane import (
    DiskEntry,
    FileSource,
    VaultStore,
    backup_disk,
    collect_garbage,
    restore_disk,
    verify_disk,
    verify_point,
)
from vmvault.domain.errors import (
    Cancelled,
    ChunkCorrupt,
    ChunkMissing,
    ManifestCorrupt,
    VaultLocked,
)
from vmvault.storage.fsutil import is_tmp_name


def _age_everything(store: VaultStore) -> None:
    for path in chunk_files(store):
        age(path)


def test_verify_reports_corrupt_and_missing_chunks(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1), ("text", 2), ("rand", 3), ("zero", 0)])
    r = backup_point(store, "p1", {"vda": image})["vda"]
    assert verify_disk(store, r.index).ok
    flipped, gone = r.index.ids[1], r.index.ids[2]
    path = chunk_path(store, flipped)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    store.chunks.remove(gone)
    report = verify_disk(store, r.index)
    assert report.corrupt == [flipped] and report.missing == [gone]
    assert report.chunks_checked == 3 and not report.ok
    point = verify_point(store, "p1")
    assert not point.ok and point.disks["vda"].corrupt == [flipped]
    with pytest.raises((ChunkCorrupt, ChunkMissing)):
        restore_disk(store, r.index, tmp_path / "out.raw")
    assert not (tmp_path / "out.raw").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    r2 = r.index.__class__(r.index.chunk_size, CS, [flipped])
    with pytest.raises(ChunkCorrupt) as exc:
        restore_disk(store, r2, tmp_path / "out2.raw", workers=1)
    assert exc.value.code == "CHUNK_CORRUPT"


def test_verify_point_reports_a_tampered_manifest(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1)])
    backup_point(store, "p1", {"vda": image})
    manifest_file(store, "p1").write_text(
        manifest_file(store, "p1").read_text().replace("vm1", "vm2")
    )
    report = verify_point(store, "p1")
    assert not report.ok and report.problems[0]["code"] == "MANIFEST_CORRUPT"


def test_gc_deletes_unreferenced_and_keeps_referenced(store: VaultStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    make_image(a, [("rand", 1), ("rand", 2), ("text", 3)])
    make_image(b, [("rand", 1), ("rand", 20)])
    ra = backup_point(store, "pa", {"vda": a})["vda"]
    backup_point(store, "pb", {"vda": b})
    stray, _ = store.put_chunk(chunk_bytes("rand", CS, seed=77))
    _age_everything(store)
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 1 and report.points == 2
    assert not store.has_chunk(stray)
    store.delete_point("pb")
    dry = collect_garbage(store, grace_seconds=0, dry_run=True)
    assert dry.chunks_removed == 1 and store.has_chunk(next(iter(set(store.iter_chunk_ids()))))
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 1  # rand 20; rand 1 is shared with pa
    assert set(store.iter_chunk_ids()) == ra.index.referenced()
    assert verify_point(store, "pa").ok


def test_gc_deletes_nothing_when_a_manifest_cannot_be_read(
    store: VaultStore, tmp_path: Path
) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1)])
    backup_point(store, "p1", {"vda": image})
    stray, _ = store.put_chunk(chunk_bytes("rand", CS, seed=5))
    _age_everything(store)
    path = manifest_file(store, "p1")
    path.write_text(path.read_text().replace("vm1", "vm9"))
    with pytest.raises(ManifestCorrupt):
        collect_garbage(store, grace_seconds=0)
    assert store.has_chunk(stray) and len(list(store.iter_chunk_ids())) == 2


def test_gc_grace_keeps_recent_chunks(store: VaultStore) -> None:
    cid, _ = store.put_chunk(chunk_bytes("rand", CS))
    report = collect_garbage(store)  # default grace: an hour
    assert report.chunks_removed == 0 and report.chunks_kept_recent == 1
    assert store.has_chunk(cid)


def test_deleting_a_middle_point_keeps_the_others(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    contents: dict[str, bytes] = {}
    previous = None
    for n in range(3):
        contents[f"p{n}"] = make_image(image, [("rand", n * 10 + k % (n + 1)) for k in range(6)])
        dirty = None if previous is None else {"vda": [(0, 6 * CS)]}
        r = backup_point(
            store, f"p{n}", {"vda": image}, previous=previous and {"vda": previous}, dirty=dirty
        )
        previous = r["vda"].index
    store.delete_point("p1")
    _age_everything(store)
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed > 0
    for point in ("p0", "p2"):
        m = store.read_manifest(point)
        out = tmp_path / f"{point}.raw"
        restore_disk(store, store.read_point_index(m, "vda"), out)
        assert out.read_bytes() == contents[point]
    assert store.list_manifests() == ["p0", "p2"]
    assert not (vault_dir(store) / "indexes" / "p1").exists()


def test_gc_keeps_the_chunks_of_a_running_writer(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1), ("rand", 2)])
    old = tmp_path / "old.img"
    make_image(old, [("rand", 2)])
    with store.writer("old"), FileSource(old) as src:
        backup_disk(store, src)  # never gets a manifest: garbage
    _age_everything(store)  # ... written long ago
    with store.writer("vm2") as w:
        assert [i.name for i in store.writers.live()] == ["vm2"]
        with FileSource(image) as src:
            r = backup_disk(store, src)
        assert r.chunks_new == 1 and r.chunks_dedup == 1  # rand 2 reused: touched
        report = collect_garbage(store, grace_seconds=0)
        assert report.writers == ["vm2"] and report.cutoff <= w.started_at
        assert report.chunks_removed == 0 and report.chunks_kept_recent == 2
        d = store.write_index("p2", "vda", r.index)
        m = sample_manifest("p2")
        m.disks = [DiskEntry("vda", r.index.disk_size, "vda.fidx", d)]
        store.write_manifest(m)
    assert store.writers.live() == []
    _age_everything(store)
    assert collect_garbage(store, grace_seconds=0).chunks_removed == 0
    assert verify_point(store, "p2").ok


def test_gc_waits_for_readers_and_runs_alone(store: VaultStore) -> None:
    with store.reader(), pytest.raises(VaultLocked) as exc:
        collect_garbage(store, grace_seconds=0, lock_timeout=0.1)
    assert "restore or verify" in exc.value.text
    with store.gc_lock(), pytest.raises(VaultLocked):
        collect_garbage(store)


def test_gc_concurrent_with_backups_never_loses_a_chunk(store: VaultStore, tmp_path: Path) -> None:
    """Backups reuse old unreferenced chunks while GC sweeps with no grace, in a loop."""
    seeds = list(range(24))
    for s in seeds:
        store.put_chunk(chunk_bytes("rand", CS, seed=s))
    _age_everything(store)
    stop = threading.Event()
    sweeps = 0

    def gc_loop() -> None:
        nonlocal sweeps
        while not stop.is_set():
            collect_garbage(store, grace_seconds=0)
            sweeps += 1

    gc = threading.Thread(target=gc_loop)
    gc.start()
    try:
        for n in range(6):
            image = tmp_path / f"d{n}.img"
            make_image(image, [("rand", s) for s in seeds[n * 4 : n * 4 + 8]])
            backup_point(store, f"p{n}", {"vda": image})
    finally:
        stop.set()
        gc.join()
    assert sweeps > 0
    for n in range(6):
        assert verify_point(store, f"p{n}").ok, n


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from vmvault.dataplane import FileSource, VaultStore, backup_disk

    store = VaultStore.open(Path(sys.argv[1]))
    mode = sys.argv[3]
    calls = 0

    def cancel():
        global calls
        calls += 1
        if mode == "mid-chunks" and calls == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return False

    with store.writer("crasher"), FileSource(Path(sys.argv[2])) as src:
        r = backup_disk(store, src, cancel=cancel)
        store.write_index("crashed", "vda", r.index)
        os.kill(os.getpid(), signal.SIGKILL)  # before the manifest
    """
)


@pytest.mark.parametrize("mode", ["mid-chunks", "before-manifest"])
def test_a_killed_backup_leaves_a_clean_vault(store: VaultStore, tmp_path: Path, mode: str) -> None:
    good = tmp_path / "good.img"
    content = make_image(good, [("rand", 1), ("text", 2)])
    backup_point(store, "p1", {"vda": good})
    image = tmp_path / "d.img"
    make_image(image, [("rand", 100 + i) for i in range(12)] + [("rand", 1)])
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(vault_dir(store)), str(image), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p for p in chunk_files(store) if is_tmp_name(p.name)]
    if mode == "mid-chunks":
        assert leftovers and not (vault_dir(store) / "indexes" / "crashed").exists()
    else:
        assert (vault_dir(store) / "indexes" / "crashed").exists()
    assert store.list_manifests() == ["p1"]
    assert verify_point(store, "p1").ok
    assert store.writers.live() == []  # the dead writer's registration is recognised as such
    for path in chunk_files(store):
        age(path)
    for path in (vault_dir(store) / "indexes").rglob("*"):
        age(path)
    age(vault_dir(store) / "indexes" / "p1")
    report = collect_garbage(store, grace_seconds=0)
    assert report.tmp_removed == len(leftovers)
    assert [p for p in chunk_files(store) if is_tmp_name(p.name)] == []
    assert not (vault_dir(store) / "indexes" / "crashed").exists()
    assert (
        set(store.iter_chunk_ids())
        == store.read_point_index(store.read_manifest("p1"), "vda").referenced()
    )
    out = tmp_path / "out.raw"
    restore_disk(store, store.read_point_index(store.read_manifest("p1"), "vda"), out)
    assert out.read_bytes() == content
    os.sync()
    time.sleep(0)


def test_quarantine_lets_the_next_backup_heal_a_corrupt_chunk(
    store: VaultStore, tmp_path: Path
) -> None:
    image = tmp_path / "d.img"
    content = make_image(image, [("rand", 1), ("text", 2)])
    r = backup_point(store, "p1", {"vda": image})["vda"]
    bad = r.index.ids[1]
    path = chunk_path(store, bad)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    report = verify_point(store, "p1", quarantine=True)
    assert report.disks["vda"].corrupt == [bad]
    assert not store.has_chunk(bad) and path.with_name(path.name + ".bad").exists()
    backup_point(store, "p2", {"vda": image})  # reads the same data: stores the chunk again
    assert verify_point(store, "p1").ok
    out = tmp_path / "out.raw"
    restore_disk(store, r.index, out)
    assert out.read_bytes() == content


def test_gc_cancel_stops_it_and_the_next_gc_finishes(store: VaultStore) -> None:
    strays = [store.put_chunk(chunk_bytes("rand", 4096, seed=1000 + n))[0] for n in range(1500)]
    _age_everything(store)
    polls = 0

    def cancel_on_second_poll() -> bool:  # 1: after the mark, 2: during the scan
        nonlocal polls
        polls += 1
        return polls >= 2

    with pytest.raises(Cancelled):
        collect_garbage(store, grace_seconds=0, cancel=cancel_on_second_poll)
    assert polls == 2 and all(store.has_chunk(c) for c in strays)  # stopped before any delete
    report = collect_garbage(store, grace_seconds=0, cancel=lambda: False)
    assert report.chunks_removed == 1500
