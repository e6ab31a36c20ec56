"""The data path on a backend whose requests are round trips (``remote``: object storage),
here the in-memory backend told to behave as one.

* Backup does not ask whether a new chunk is present: the batch's put-if-absent does, and
  touches what it finds (§8 of docs/vault-format.md); the result still counts such a chunk
  as dedup, not as new bytes.
* Incremental reuse touches the previous point's chunks concurrently.
* Restore reads ahead (more GETs than decoders), and a chunk that the read-ahead could not
  read is read again the ordinary way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, make_image
from vmvault.dataplane import VaultStore, restore_disk
from vmvault.dataplane import restore as restore_module
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.readahead import Fetched, ReadAhead
from vmvault.domain.errors import ChunkCorrupt, ChunkMissing
from vmvault.storage.backend import Data
from vmvault.storage.memory import MemoryBackend

HOUR = 3600.0


class CountingBackend(MemoryBackend):
    """Counts existence checks and touches (each a request on object storage)."""

    def __init__(self, *, remote: bool) -> None:
        super().__init__("memory:counting", remote=remote)
        self.touches: list[str] = []
        self.puts: list[str] = []

    def touch(self, key: str) -> bool:
        self.touches.append(key)
        return super().touch(key)

    def put(self, key: str, data: Data) -> bool:
        self.puts.append(key)
        return super().put(key, data)


def _store(remote: bool) -> tuple[CountingBackend, VaultStore]:
    mem = CountingBackend(remote=remote)
    return mem, VaultStore.create(mem, chunk_size=CS)


def _age_chunks(mem: MemoryBackend) -> None:
    for info in list(mem.list_objects("chunks/")):
        mem.age(info.key, 2 * HOUR)


def test_a_chunk_already_stored_is_found_by_the_batch_counted_once_and_touched(
    tmp_path: Path,
) -> None:
    mem, store = _store(remote=True)
    make_image(tmp_path / "a.img", [("rand", 1), ("text", 2)])
    make_image(tmp_path / "b.img", [("rand", 1), ("rand", 3), ("rand", 3)])
    first = backup_point(store, "p1", {"vda": tmp_path / "a.img"})["vda"]
    assert (first.chunks_new, first.chunks_dedup) == (2, 0)
    _age_chunks(mem)
    mem.touches.clear()
    shared = store.chunks.key(first.index.ids[0])

    second = backup_point(store, "p2", {"vda": tmp_path / "b.img"})["vda"]

    # rand 1 is in the vault: not stored again, not counted as new; rand 3 twice: stored once
    assert (second.chunks_new, second.chunks_dedup) == (1, 2)
    new_key = store.chunks.key(second.index.ids[1])
    assert second.bytes_new == mem.stat(new_key).size  # only the one new chunk file
    assert store.chunk_usage().objects == 3
    assert mem.touches == [shared]  # no pre-check: one touch, by the batch, of the present one
    assert mem.stat(shared).mtime > mem.now() - 60  # refreshed: protected from GC
    assert second.index.ids[0] == first.index.ids[0]


def test_a_local_backend_still_checks_before_compressing(tmp_path: Path) -> None:
    mem, store = _store(remote=False)
    make_image(tmp_path / "a.img", [("rand", 1), ("text", 2)])
    backup_point(store, "p1", {"vda": tmp_path / "a.img"})
    mem.touches.clear()
    mem.puts.clear()
    again = backup_point(store, "p2", {"vda": tmp_path / "a.img"})["vda"]
    assert (again.chunks_new, again.chunks_dedup, again.bytes_new) == (0, 2, 0)
    assert len(mem.touches) == 2  # one pre-check each, and no put of a present chunk
    assert not any(k.startswith("chunks/") for k in mem.puts)


def test_a_second_full_backup_on_remote_stores_nothing_and_counts_nothing_new(
    tmp_path: Path,
) -> None:
    mem, store = _store(remote=True)
    make_image(tmp_path / "a.img", [("rand", 1), ("zero", 0), ("text", 2)], tail=77)
    first = backup_point(store, "p1", {"vda": tmp_path / "a.img"})["vda"]
    _age_chunks(mem)
    objects = store.chunk_usage().objects
    again = backup_point(store, "p2", {"vda": tmp_path / "a.img"})["vda"]
    assert (again.chunks_new, again.bytes_new) == (0, 0)
    assert again.chunks_dedup == first.chunks_new == objects
    assert store.chunk_usage().objects == objects
    assert all(i.mtime > mem.now() - 60 for i in mem.list_objects("chunks/"))


def test_an_incremental_reuse_touches_every_previous_chunk(tmp_path: Path) -> None:
    mem, store = _store(remote=True)
    image = tmp_path / "a.img"
    make_image(image, [("rand", n) for n in range(12)])
    first = backup_point(store, "p1", {"vda": image})["vda"]
    _age_chunks(mem)
    mem.touches.clear()
    inc = backup_point(
        store, "p2", {"vda": image}, previous={"vda": first.index}, dirty={"vda": []}
    )["vda"]
    assert (inc.chunks_reused, inc.chunks_new, inc.bytes_read) == (12, 0, 0)
    assert sorted(mem.touches) == sorted(store.chunks.key(c) for c in first.index.ids)
    assert all(i.mtime > mem.now() - 60 for i in mem.list_objects("chunks/"))


def test_a_restore_reads_ahead_and_writes_what_a_plain_restore_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, store = _store(remote=True)
    image = tmp_path / "a.img"
    content = make_image(image, [("rand", n) for n in range(20)] + [("text", 1)], tail=123)
    index = backup_point(store, "p1", {"vda": image})["vda"].index
    taken: list[int] = []

    class Counted(ReadAhead):
        def take(self) -> Fetched | None:
            item = super().take()
            if item is not None:
                taken.append(item[0])
            return item

    monkeypatch.setattr(restore_module, "ReadAhead", Counted)
    for fmt in ("raw", "qcow2"):
        mem.remote = True
        ahead = tmp_path / f"ahead.{fmt}"
        restore_disk(store, index, ahead, fmt=fmt, workers=2)
        mem.remote = False  # the same vault, read without read-ahead
        plain = tmp_path / f"plain.{fmt}"
        restore_disk(store, index, plain, fmt=fmt, workers=2)
        assert ahead.read_bytes() == plain.read_bytes()
    assert (tmp_path / "ahead.raw").read_bytes() == content
    stored = [i for i, cid in enumerate(index.ids) if cid != ZERO_ID]
    assert len(stored) == 22 and sorted(taken) == sorted(2 * stored)  # each chunk, once a format


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_restore_names_a_chunk_the_read_ahead_could_not_read(tmp_path: Path, damage: str) -> None:
    mem, store = _store(remote=True)
    image = tmp_path / "a.img"
    make_image(image, [("rand", n) for n in range(10)])
    index = backup_point(store, "p1", {"vda": image})["vda"].index
    key = store.chunks.key(index.ids[6])
    if damage == "missing":
        mem.delete(key)
    else:
        blob = bytearray(mem.get(key))
        blob[-3] ^= 0xFF
        mem.publish(key, bytes(blob))
    error = ChunkMissing if damage == "missing" else ChunkCorrupt
    with pytest.raises(error) as caught:
        restore_disk(store, index, tmp_path / "out.raw")
    assert index.ids[6].hex() in str(caught.value.as_dict())
    assert not (tmp_path / "out.raw").exists()
