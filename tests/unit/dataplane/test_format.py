"""The on-disk formats: config, chunk files, indexes, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.dataplane.conftest import (
    CS,
    backup_point,
    chunk_bytes,
    chunk_path,
    index_file,
    make_image,
    manifest_file,
    sample_manifest,
    vault_dir,
)
from vmvault.dataplane import ZERO_ID, DiskEntry, DiskIndex, VaultStore
from vmvault.dataplane.chunk import FLAG_COMPRESSED, HEADER
from vmvault.dataplane.index import IndexFormatError
from vmvault.domain.errors import (
    ChunkCorrupt,
    ChunkMissing,
    IndexCorrupt,
    InvalidInput,
    ManifestCorrupt,
    PointNotFound,
    VaultConfigCorrupt,
    VaultFormatUnsupported,
    VaultNotInitialised,
)


def test_layout_and_config(store: VaultStore) -> None:
    root = vault_dir(store)
    assert {p.name for p in root.iterdir()} >= {"config", "chunks", "indexes", "manifests", "locks"}
    assert len(list((root / "chunks").iterdir())) == 256
    doc = json.loads((root / "config").read_text())
    assert doc["format"] == 1 and doc["chunk_size"] == CS
    assert doc["compression"] == {"algorithm": "zstd", "level": 1}
    assert doc["encryption"] == {"algorithm": "none"}
    reopened = VaultStore.open(root)
    assert reopened.chunk_size == CS and not reopened.encrypted


@pytest.mark.parametrize("size", [1000, 3 << 16, 32 << 10, 128 << 20])
def test_chunk_size_must_be_a_power_of_two_in_range(tmp_path: Path, size: int) -> None:
    with pytest.raises(InvalidInput):
        VaultStore.create(tmp_path / "v", chunk_size=size)


def test_create_keeps_the_marker_and_refuses_twice(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    (root / "vmvault-vault.json").write_text('{"format": 1}\n')
    VaultStore.create(root, chunk_size=CS)
    assert (root / "vmvault-vault.json").read_text() == '{"format": 1}\n'
    with pytest.raises(InvalidInput):
        VaultStore.create(root, chunk_size=CS)


def test_open_errors(tmp_path: Path, store: VaultStore) -> None:
    with pytest.raises(VaultNotInitialised):
        VaultStore.open(tmp_path / "nothing")
    cfg = vault_dir(store) / "config"
    doc = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**doc, "format": 2}))
    with pytest.raises(VaultFormatUnsupported) as exc:
        VaultStore.open(vault_dir(store))
    assert "version 2" in exc.value.text
    cfg.write_text("{not json")
    with pytest.raises(VaultConfigCorrupt):
        VaultStore.open(vault_dir(store))


def test_put_get_chunk_and_zero(store: VaultStore) -> None:
    data = chunk_bytes("text", CS)
    cid, written = store.put_chunk(data)
    assert 0 < written < CS // 10  # compressed
    assert store.put_chunk(data) == (cid, 0)  # already present
    assert store.get_chunk(cid) == data
    assert store.chunk_id(data) == cid
    assert store.put_chunk(bytes(CS)) == (ZERO_ID, 0)
    assert store.has_chunk(ZERO_ID)
    raw = chunk_bytes("rand", 5000)
    rid, rwritten = store.put_chunk(memoryview(raw))
    assert rwritten == HEADER.size + 5000  # incompressible: stored raw
    assert store.get_chunk(rid) == raw
    assert sorted(store.iter_chunk_ids()) == sorted([cid, rid])
    flags = chunk_path(store, cid).read_bytes()[5]
    assert flags == FLAG_COMPRESSED


def test_chunk_ids_are_keyed_per_vault(tmp_path: Path) -> None:
    a = VaultStore.create(tmp_path / "a", chunk_size=CS)
    b = VaultStore.create(tmp_path / "b", chunk_size=CS)
    assert a.chunk_id(b"same") != b.chunk_id(b"same")


@pytest.mark.parametrize("where", ["header", "payload", "truncate", "swap"])
def test_every_chunk_read_verifies(store: VaultStore, where: str) -> None:
    cid, _ = store.put_chunk(chunk_bytes("text", CS))
    path = chunk_path(store, cid)
    blob = bytearray(path.read_bytes())
    if where == "header":
        blob[0] ^= 1
    elif where == "payload":
        blob[-5] ^= 0x10
    elif where == "truncate":
        del blob[len(blob) // 2 :]
    else:  # a valid chunk file stored under another chunk's name
        other, _ = store.put_chunk(chunk_bytes("text", CS, seed=7))
        blob = bytearray(chunk_path(store, other).read_bytes())
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkCorrupt) as exc:
        store.get_chunk(cid)
    assert exc.value.code == "CHUNK_CORRUPT" and cid.hex() in exc.value.text
    path.unlink()
    with pytest.raises(ChunkMissing):
        store.get_chunk(cid)


@settings(database=None, max_examples=50)
@given(
    chunk_size=st.sampled_from([1 << 16, 1 << 20, 4 << 20]),
    disk_size=st.integers(0, 20 << 20),
    data=st.data(),
)
def test_index_round_trip(chunk_size: int, disk_size: int, data: st.DataObject) -> None:
    n = -(-disk_size // chunk_size)
    ids = data.draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n))
    index = DiskIndex(chunk_size, disk_size, ids)
    raw = index.to_bytes()
    assert len(raw) == 32 + 32 * n
    assert DiskIndex.from_bytes(raw) == index


def test_index_rejects_garbage() -> None:
    good = DiskIndex(CS, CS + 1, [b"a" * 32, ZERO_ID]).to_bytes()
    for bad in (good[:-1], b"XXXXXX" + good[6:], good[:10], good + b"\0" * 32):
        with pytest.raises(IndexFormatError):
            DiskIndex.from_bytes(bad)
    with pytest.raises(ValueError):
        DiskIndex(CS, CS + 1, [ZERO_ID])


def test_index_digest_in_manifest_detects_tampering(store: VaultStore, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, [("rand", 1), ("rand", 2)])
    backup_point(store, "p1", {"vda": image})
    m = store.read_manifest("p1")
    path = index_file(store, "p1", "vda")
    raw = bytearray(path.read_bytes())
    raw[40] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexCorrupt) as exc:
        store.read_point_index(m, "vda")
    assert "digest" in exc.value.text
    path.unlink()
    with pytest.raises(IndexCorrupt):
        store.read_point_index(m, "vda")


def test_manifest_round_trip_and_listing(store: VaultStore) -> None:
    store.write_manifest(sample_manifest("p1"))
    store.write_manifest(sample_manifest("p0"))
    assert store.read_manifest("p1") == sample_manifest("p1")
    assert store.list_manifests() == ["p0", "p1"]
    store.delete_point("p0")
    assert store.list_manifests() == ["p1"]
    with pytest.raises(PointNotFound):
        store.read_manifest("p0")
    with pytest.raises(InvalidInput):
        store.read_manifest("../config")


@pytest.mark.parametrize("how", ["field", "mac", "rename", "garbage"])
def test_manifest_tampering_is_detected(store: VaultStore, how: str) -> None:
    store.write_manifest(sample_manifest("p1"))
    path = manifest_file(store, "p1")
    doc = json.loads(path.read_text())
    name = "p1"
    if how == "field":
        doc["body"]["consistency"] = "application-consistent-trust-me"
        doc["body"]["frozen_ms"] = 1
        path.write_text(json.dumps(doc))
    elif how == "mac":
        doc["mac"] = "0" * 64
        path.write_text(json.dumps(doc))
    elif how == "rename":
        path.rename(manifest_file(store, "p2"))
        name = "p2"
    else:
        path.write_bytes(b"\x00garbage")
    with pytest.raises(ManifestCorrupt) as exc:
        store.read_manifest(name)
    assert exc.value.code == "MANIFEST_CORRUPT"


def test_write_manifest_refuses_missing_index(store: VaultStore) -> None:
    m = sample_manifest()
    m.disks.append(DiskEntry("vda", 100, "vda.fidx", "00"))
    with pytest.raises(ValueError):
        store.write_manifest(m)
    assert store.list_manifests() == []
