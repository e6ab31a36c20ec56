"""Copying a recovery point between vault stores (dataplane/copy.py) on directory and
in-memory backends: only missing chunks travel, the copy verifies on B, ciphertext is copied
as it is between vaults that share keys, re-encoded otherwise, refusals change nothing, and a
cancelled or failed copy leaves no point on B and a rerun completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, chunk_bytes, make_image
from vmvault.dataplane import VaultStore, collect_garbage, restore_disk, verify_point
from vmvault.dataplane import keys as keys_module
from vmvault.dataplane.copy import copy_mode, copy_point, known_ids
from vmvault.dataplane.vault import manifest_key
from vmvault.domain.errors import (
    Cancelled,
    CopyChunkSizeDiffers,
    CopyVerifyFailed,
    CopyWouldDecrypt,
    PointNotFound,
    StorageAccessDenied,
)
from vmvault.domain.recovery_point import DamagedDisk
from vmvault.storage.errors import AccessDenied, PermanentStorageError, StorageFull
from vmvault.storage.fsutil import is_tmp_name
from vmvault.storage.memory import MemoryBackend

PW = "correct horse"
LAYOUT = [("rand", 1), ("rand", 2), ("text", 3), ("zero", 0), ("rand", 4), ("text", 5)]
MARKER = b"line 3 of a compressible chunk"  # plaintext of one chunk of LAYOUT


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "SCRYPT_N", 2**12)


class CountingBackend(MemoryBackend):
    """The in-memory backend counting the chunk objects put into it."""

    def __init__(self, location: str = "memory:B") -> None:
        super().__init__(location)
        self.chunk_puts: list[str] = []

    def put(self, key: str, data: object) -> bool:  # type: ignore[override]
        created = super().put(key, data)  # type: ignore[arg-type]
        if created and key.startswith("chunks/"):
            self.chunk_puts.append(key)
        return created


def _image(
    tmp_path: Path, name: str = "d.img", layout: list[tuple[str, int]] = LAYOUT, tail: int = 777
) -> Path:
    path = tmp_path / name
    make_image(path, layout, tail=tail)
    return path


def _restore(store: VaultStore, point: str, out: Path) -> bytes:
    m = store.read_manifest(point)
    restore_disk(store, store.read_point_index(m, "vda"), out)
    return out.read_bytes()


def _twin(src: MemoryBackend, location: str = "memory:twin") -> CountingBackend:
    """A second vault with the chunk identity of ``src``: its config (chunk size, keys or key
    fingerprint) copied, nothing else."""
    twin = CountingBackend(location)
    twin.put("config", src.get("config"))
    return twin


def test_half_present_chunks_only_the_other_half_is_sent(tmp_path: Path) -> None:
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    image = _image(tmp_path)
    backup_point(a, "p1", {"vda": image})
    mem = CountingBackend()
    b = VaultStore.create(mem, chunk_size=CS)
    half = _image(tmp_path, "half.img", LAYOUT[:3], tail=0)  # rand 1, rand 2, text 3
    backup_point(b, "other", {"vda": half})
    before = list(mem.chunk_puts)

    r = copy_point(a, b, "p1")

    assert r.mode == "re-encoded"  # two vaults created apart have their own keys
    sent = mem.chunk_puts[len(before) :]
    # p1 stores 6 chunks: 3 are in B already (as B's own ids), 3 (rand 4, text 5, tail) are not
    assert r.chunks_total == 6 and r.chunks_present == 3 and r.chunks_sent == 3
    assert len(sent) == 3 and len(set(sent)) == 3
    assert verify_point(b, "p1").ok
    assert _restore(b, "p1", tmp_path / "out.raw") == image.read_bytes()


def test_same_identity_copies_ciphertext_as_stored(tmp_path: Path) -> None:
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS, passphrase=PW, key_file=tmp_path / "a.key")
    image = _image(tmp_path)
    backup_point(a, "p1", {"vda": image})
    mem_b = _twin(mem_a)
    b = VaultStore.open(mem_b, passphrase=PW, key_file=tmp_path / "a.key")
    assert copy_mode(a, b) == "as-stored"

    r = copy_point(a, b, "p1")

    assert r.mode == "as-stored" and r.chunks_sent == 6
    own = {"gc-epoch"}  # each vault's own GC epoch (random), not the copy's business
    objects_a = {i.key: mem_a.get(i.key) for i in mem_a.list_objects() if i.key not in own}
    objects_b = {i.key: mem_b.get(i.key) for i in mem_b.list_objects() if i.key not in own}
    assert objects_b == objects_a  # the same bytes: ciphertext, indexes, the manifest
    assert not any(MARKER in blob for blob in objects_b.values())
    assert _restore(b, "p1", tmp_path / "out.raw") == image.read_bytes()
    # a second point reusing chunks: only the new chunk travels, the others are touched
    image2 = _image(tmp_path, "d2.img", [*LAYOUT[:5], ("rand", 9)])
    backup_point(a, "p2", {"vda": image2})
    puts = len(mem_b.chunk_puts)
    r2 = copy_point(a, b, "p2")
    assert (r2.chunks_sent, len(mem_b.chunk_puts) - puts) == (1, 1)  # rand 9
    assert r2.chunks_present == 5


def test_different_keys_re_encode_restores_bit_identical(tmp_path: Path) -> None:
    mem_a, mem_b = MemoryBackend("memory:A"), CountingBackend()
    a = VaultStore.create(mem_a, chunk_size=CS, passphrase=PW, key_file=tmp_path / "a.key")
    b = VaultStore.create(mem_b, chunk_size=CS, passphrase=PW, key_file=tmp_path / "b.key")
    image = _image(tmp_path)
    backup_point(a, "p1", {"vda": image})

    r = copy_point(a, b, "p1", workers=3)

    assert r.mode == "re-encoded" and r.chunks_sent == 6
    assert set(r.ids) != set(r.ids.values())  # B names the chunks with its own id key
    assert not any(MARKER in mem_b.get(i.key) for i in mem_b.list_objects())
    assert _restore(b, "p1", tmp_path / "out.raw") == image.read_bytes()
    # the next point learns A→B ids from p1: its shared chunks are not even read from A
    image2 = _image(tmp_path, "d2.img", [*LAYOUT[:5], ("rand", 9)])
    backup_point(a, "p2", {"vda": image2})
    hint = known_ids(a, b, ["p1"])
    assert len(hint) == 6
    reads: list[str] = []
    original_get = mem_a.get

    def counting_get(key: str) -> bytes:
        reads.append(key)
        return original_get(key)

    mem_a.get = counting_get  # type: ignore[method-assign]
    r2 = copy_point(a, b, "p2", known=hint)
    assert r2.chunks_sent == 1 and r2.chunks_present == 5
    assert sum(k.startswith("chunks/") for k in reads) == 1  # rand 9 only
    assert _restore(b, "p2", tmp_path / "out2.raw") == image2.read_bytes()


def test_unencrypted_into_encrypted_is_sealed(tmp_path: Path) -> None:
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    mem_b = CountingBackend()
    b = VaultStore.create(mem_b, chunk_size=CS, passphrase=PW, key_file=tmp_path / "b.key")
    image = _image(tmp_path)
    backup_point(a, "p1", {"vda": image})
    assert copy_point(a, b, "p1").mode == "re-encoded"
    assert not any(MARKER in mem_b.get(i.key) for i in mem_b.list_objects())
    assert _restore(b, "p1", tmp_path / "out.raw") == image.read_bytes()


def test_refusals_change_nothing(tmp_path: Path) -> None:
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS, passphrase=PW, key_file=tmp_path / "a.key")
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    clear = CountingBackend("memory:clear")
    VaultStore.create(clear, chunk_size=CS)
    other_size = CountingBackend("memory:big")
    VaultStore.create(other_size, chunk_size=2 * CS, passphrase=PW, key_file=tmp_path / "c.key")
    for backend, error in ((clear, CopyWouldDecrypt), (other_size, CopyChunkSizeDiffers)):
        before = {i.key: backend.get(i.key) for i in backend.list_objects()}
        dst = VaultStore.open(backend, passphrase=PW, key_file=tmp_path / "c.key")
        with pytest.raises(error):
            copy_point(a, dst, "p1")
        assert {i.key: backend.get(i.key) for i in backend.list_objects()} == before


def test_cancel_leaves_no_point_and_a_rerun_completes(tmp_path: Path) -> None:
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    layout = [("rand", i) for i in range(1, 200)]
    image = _image(tmp_path, "big.img", layout)
    small = _image(tmp_path, "small.img", [("text", 7), ("text", 8)], tail=0)
    backup_point(a, "p1", {"vda": small, "vdb": image})
    mem_b = CountingBackend()
    b = VaultStore.create(mem_b, chunk_size=CS)
    calls = []

    def cancel() -> bool:  # vda's 2 chunks committed, then a cancel in the middle of vdb
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        copy_point(a, b, "p1", workers=1, cancel=cancel)
    assert not b.has_manifest("p1") and b.list_index_dirs() == []
    assert b.list_manifests() == []

    assert len(mem_b.chunk_puts) == 2
    r = copy_point(a, b, "p1")
    assert r.chunks_total == 2 + 200 and r.chunks_present == 2 and r.chunks_sent == 200
    assert len(mem_b.chunk_puts) == len(set(mem_b.chunk_puts)) == 202  # none sent twice
    assert verify_point(b, "p1").ok


def test_storage_failure_mid_copy_leaves_no_point_and_gc_collects(tmp_path: Path) -> None:
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    image = _image(tmp_path)
    backup_point(a, "p1", {"vda": image, "vdb": _image(tmp_path, "e.img", LAYOUT[2:])})
    mem_b = CountingBackend()
    b = VaultStore.create(mem_b, chunk_size=CS)
    mem_b.inject("publish", PermanentStorageError("endpoint gone", location="memory:B"))
    with pytest.raises(PermanentStorageError):
        copy_point(a, b, "p1")
    assert b.list_manifests() == [] and b.list_index_dirs() == []
    # what was committed is only unreferenced chunks: GC (no grace) takes them
    for info in list(mem_b.list_objects("chunks/")):
        mem_b.age(info.key, 10)
    report = collect_garbage(b, grace_seconds=0)
    assert report.chunks_removed > 0 and b.chunk_usage().objects == 0
    r = copy_point(a, b, "p1")
    assert r.chunks_total == r.chunks_sent and verify_point(b, "p1").ok


def test_a_copy_that_does_not_verify_on_b_is_removed(tmp_path: Path) -> None:
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    victim = next(i.key for i in mem_a.list_objects("chunks/"))
    blob = bytearray(mem_a.get(victim))
    blob[-1] ^= 0xFF  # damaged at rest in A: copied as it is, found by B's verify
    mem_a.publish(victim, bytes(blob))
    mem_b = _twin(mem_a)
    b = VaultStore.open(mem_b)
    with pytest.raises(CopyVerifyFailed) as err:
        copy_point(a, b, "p1", names=("A", "B"))
    assert "vault 'B'" in err.value.text
    assert b.list_manifests() == [] and b.list_index_dirs() == []
    assert not mem_b.exists(victim)  # quarantined: no later copy or backup trusts it
    assert mem_b.exists(victim + ".bad")


@pytest.mark.parametrize(
    "failure",
    [StorageFull("disk full", location="memory:B"), PermanentStorageError("gone", location="B")],
)
def test_a_failed_clean_up_keeps_the_copys_own_error(
    tmp_path: Path, failure: PermanentStorageError
) -> None:
    """B cannot delete what the copy wrote (it is what failed): the cancel, not the clean-up's
    error, is what the copy raises; the job log is told what was left."""
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path), "vdb": _image(tmp_path, "e.img")})
    mem_b = CountingBackend()
    b = VaultStore.create(mem_b, chunk_size=CS)
    mem_b.inject("delete", failure, times=3)
    said: list[str] = []
    with pytest.raises(Cancelled):
        copy_point(a, b, "p1", workers=1, cancel=lambda: True, say=said.append)
    assert len(said) == 1 and "could not remove what was written of point p1" in said[0]
    assert b.list_manifests() == []


def test_a_failed_clean_up_after_a_bad_read_back_keeps_copy_verify_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    mem_b = _twin(mem_a)
    b = VaultStore.open(mem_b)
    real = b.read_manifest

    def unreadable_then_undeletable(point_id: str) -> object:  # B fails after the publish
        mem_b.inject("delete", StorageFull("disk full", location="memory:B"))
        raise PointNotFound(point=point_id, path="memory:B")

    monkeypatch.setattr(b, "read_manifest", unreadable_then_undeletable)
    with pytest.raises(CopyVerifyFailed):
        copy_point(a, b, "p1", names=("A", "B"))
    monkeypatch.setattr(b, "read_manifest", real)


def test_a_point_deleted_from_a_after_its_manifest_was_read_is_point_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As-stored, the manifest object is read again to be published as it is: a point pruned
    from A in between is POINT_NOT_FOUND (the copy service skips it), not a raw storage error."""
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    b = VaultStore.open(_twin(mem_a))
    real = a.read_manifest

    def read_then_pruned(point_id: str) -> object:
        m = real(point_id)
        mem_a.delete(manifest_key(point_id))  # a prune of A, right after
        return m

    monkeypatch.setattr(a, "read_manifest", read_then_pruned)
    with pytest.raises(PointNotFound):
        copy_point(a, b, "p1")
    assert b.list_manifests() == []


def test_b_refusing_the_manifest_stat_is_a_storage_error_users_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    mem_b = CountingBackend()
    b = VaultStore.create(mem_b, chunk_size=CS)  # own keys: re-encoded
    real = b.write_manifest

    def then_refused(m: object) -> None:
        real(m)  # type: ignore[arg-type]
        mem_b.inject("stat", AccessDenied("403", location="memory:B"))

    monkeypatch.setattr(b, "write_manifest", then_refused)
    with pytest.raises(StorageAccessDenied):
        copy_point(a, b, "p1")
    assert b.list_manifests() == []  # the clean-up removed the manifest written


def test_damaged_disk_describes_its_ranges() -> None:
    d = DamagedDisk("vda", ((0, CS), (3 * CS, 4 * CS)))
    assert d.describe() == f"disk vda bytes [0, {CS}), [{3 * CS}, {4 * CS})"


def test_chunks_present_on_b_are_touched(tmp_path: Path) -> None:
    mem_a = MemoryBackend("memory:A")
    a = VaultStore.create(mem_a, chunk_size=CS)
    backup_point(a, "p1", {"vda": _image(tmp_path)})
    mem_b = _twin(mem_a)
    b = VaultStore.open(mem_b)
    copy_point(a, b, "p1")
    b.delete_point("p1")
    for info in list(mem_b.list_objects("chunks/")):
        mem_b.age(info.key, 7200)
    r = copy_point(a, b, "p1")
    assert r.chunks_sent == 0 and r.chunks_present == 6
    now = mem_b.now()
    assert all(now - i.mtime < 60 for i in mem_b.list_objects("chunks/"))


def test_chunk_bytes_helper_marker() -> None:
    assert MARKER in chunk_bytes("text", CS, 3)


def _copy_in_child(a_dir: str, b_dir: str) -> None:
    from vmvault.dataplane import keys as child_keys

    child_keys.SCRYPT_N = 2**12
    a, b = VaultStore.open(Path(a_dir)), VaultStore.open(Path(b_dir))
    copy_point(a, b, "p1", workers=1)


def test_sigkill_mid_copy_leaves_no_point_and_a_rerun_completes(tmp_path: Path) -> None:
    import multiprocessing
    import os
    import signal
    import time

    a = VaultStore.create(tmp_path / "A", chunk_size=CS)
    image = _image(tmp_path, "big.img", [("rand", i) for i in range(1, 400)])
    backup_point(a, "p1", {"vda": _image(tmp_path, "small.img", LAYOUT), "vdb": image})
    b = VaultStore.create(tmp_path / "B", chunk_size=CS)
    chunks_b = tmp_path / "B" / "chunks"
    child = multiprocessing.get_context("fork").Process(
        target=_copy_in_child, args=(str(tmp_path / "A"), str(tmp_path / "B"))
    )
    child.start()
    deadline = time.monotonic() + 60
    # vda's chunks committed (visible: final names, not the batch's temporaries), vdb's in
    # flight: kill it there
    while sum(1 for p in chunks_b.rglob("*") if p.is_file() and not is_tmp_name(p.name)) < 6:
        assert time.monotonic() < deadline and child.is_alive()
        time.sleep(0.005)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert b.list_manifests() == []
    assert verify_point(a, "p1").ok
    r = copy_point(a, b, "p1")
    assert r.chunks_present >= 6 and r.chunks_sent + r.chunks_present == r.chunks_total
    assert verify_point(b, "p1").ok
    collect_garbage(b, grace_seconds=0)  # the killed copy's debris goes, the point stays
    assert verify_point(b, "p1").ok
