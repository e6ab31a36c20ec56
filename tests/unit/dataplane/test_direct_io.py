"""O_DIRECT writes (chunk files, restored images), their fallbacks, and the incompressible
sample: every path must give the same bytes, readable by the store."""

from __future__ import annotations

import errno
import mmap as real_mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.unit.dataplane.conftest import CS, backup_point, chunk_bytes, chunk_files, make_image
from vmvault.dataplane import FileSource, VaultStore, backup_disk, keys, qcow2, restore_disk
from vmvault.dataplane import backup as backup_mod
from vmvault.dataplane.chunk import (
    DATA_OFFSET,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    HEADER,
    MAGIC,
    SAMPLE_SIZE,
    ChunkCodec,
    file_capacity,
)
from vmvault.storage import fsutil

SIZES = [0, 1, 11, 4095, 4096, 4097, CS + HEADER.size, 3 * 4096 + 100]


def _direct_works(directory: Path) -> bool:
    probe = directory / ".direct-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | fsutil.O_DIRECT, 0o600)
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    os.close(fd)
    return bool(fsutil.O_DIRECT)


@pytest.fixture(autouse=True)
def _fresh_refusals() -> Iterator[None]:
    fsutil._refused.clear()
    yield
    fsutil._refused.clear()


@pytest.fixture()
def opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The flags of every ``os.open`` made meanwhile."""
    seen: list[int] = []
    real = os.open

    def spy(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        seen.append(flags)
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", spy)
    return seen


def _refusing_open(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make O_DIRECT opens fail as Linux does on a file system without it: the file is
    created (O_CREAT), then the open fails with EINVAL."""
    refused: list[str] = []
    real = os.open

    def fake(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & fsutil.O_DIRECT:
            refused.append(str(path))
            if flags & os.O_CREAT:
                os.close(real(path, flags & ~fsutil.O_DIRECT, mode))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", fake)
    return refused


def _parts(size: int) -> list[bytes]:
    data = random.Random(size).randbytes(size)
    return [data[: HEADER.size], data[HEADER.size :]] if size > HEADER.size else [data]


@pytest.mark.parametrize("size", SIZES)
def test_direct_file_equals_buffered_file(tmp_path: Path, size: int, opens: list[int]) -> None:
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    opens.clear()
    a, b = tmp_path / "a", tmp_path / "b"
    assert fsutil.write_parts_direct(a, _parts(size)) == size
    assert any(f & fsutil.O_DIRECT for f in opens)  # the direct path was taken
    fsutil.write_parts(b, _parts(size), sync=False)
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size == size
    assert oct(a.stat().st_mode & 0o777) == oct(b.stat().st_mode & 0o777)


@pytest.mark.parametrize("size", [0, 4097, CS + HEADER.size])
def test_refused_o_direct_falls_back_once_per_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    refused = _refusing_open(monkeypatch)
    a, b = tmp_path / "a", tmp_path / "b"
    assert fsutil.write_parts_direct(a, _parts(size)) == size
    assert a.read_bytes() == b"".join(_parts(size))
    assert len(refused) == 1 and fsutil.direct_refused(tmp_path)
    fsutil.write_parts_direct(b, _parts(size))  # not tried again in that directory
    assert len(refused) == 1 and b.read_bytes() == a.read_bytes()
    with pytest.raises(FileExistsError):  # still O_EXCL on the fallback
        fsutil.write_parts_direct(a, _parts(size))


def test_einval_from_the_direct_write_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    real = os.pwrite
    calls = []

    def picky(fd: int, data: Any, offset: int) -> int:
        calls.append(fd)
        if len(calls) == 1:  # e.g. a device whose sectors are larger than 4 KiB
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", picky)
    path = tmp_path / "c"
    assert fsutil.write_parts_direct(path, _parts(9000)) == 9000
    assert path.read_bytes() == b"".join(_parts(9000))
    assert fsutil.direct_refused(tmp_path)


# --- chunk files -----------------------------------------------------------------------------


def _codec(encrypted: bool = False, max_size: int = 4 << 20) -> ChunkCodec:
    return ChunkCodec(keys.KeySet.generate(), level=1, encrypted=encrypted, max_size=max_size)


def _in_place(codec: ChunkCodec, data: bytes) -> bytes:
    buf = bytearray(file_capacity(len(data)))
    buf[DATA_OFFSET : DATA_OFFSET + len(data)] = data
    size = codec.encode_in_place(b"i" * 32, buf, len(data))
    return bytes(buf[:size])


MIB = 1 << 20
KINDS = {
    "random": lambda: random.Random(1).randbytes(MIB),
    "text": lambda: chunk_bytes("text", MIB),
    "random, text in its second half": lambda: (
        random.Random(2).randbytes(MIB // 2) + chunk_bytes("text", MIB // 2)
    ),
    "small random": lambda: random.Random(3).randbytes(5000),
    "small text": lambda: chunk_bytes("text", 5000),
}


@pytest.mark.parametrize("kind", KINDS)
def test_encode_in_place_makes_the_same_file_as_encode(kind: str) -> None:
    data = KINDS[kind]()
    codec = _codec()
    cid = codec.chunk_id(data)
    parts = codec.encode(cid, data)
    expected = b"".join(bytes(p) for p in parts)
    buf = bytearray(file_capacity(len(data)))
    buf[DATA_OFFSET : DATA_OFFSET + len(data)] = data
    size = codec.encode_in_place(cid, buf, len(data))
    assert bytes(buf[:size]) == expected
    assert codec.decode(cid, bytes(buf[:size])) == data


@pytest.mark.parametrize("kind", KINDS)
def test_encode_in_place_encrypted_round_trip(kind: str) -> None:
    data = KINDS[kind]()
    codec = _codec(encrypted=True)
    cid = codec.chunk_id(data)
    buf = bytearray(file_capacity(len(data)))
    buf[DATA_OFFSET : DATA_OFFSET + len(data)] = data
    size = codec.encode_in_place(cid, buf, len(data))
    blob = bytes(buf[:size])
    plain_flags = bytes(b"".join(bytes(p) for p in codec.encode(cid, data)))[5]
    assert blob[5] == plain_flags and blob[5] & FLAG_ENCRYPTED
    assert codec.decode(cid, blob) == data


class _Spy:
    """A zstd compressor that records the length of everything it is given."""

    def __init__(self) -> None:
        self.real = zstandard.ZstdCompressor(level=1)
        self.sizes: list[int] = []

    def compress(self, data: Any) -> bytes:
        self.sizes.append(len(memoryview(data)))
        return self.real.compress(data)


def test_an_incompressible_chunk_is_stored_raw_without_compressing_it() -> None:
    codec = _codec()
    spy = _Spy()
    codec._compressor = spy  # type: ignore[assignment]
    data = random.Random(5).randbytes(4 * MIB)
    cid = codec.chunk_id(data)
    blob = _in_place(codec, data)
    assert max(spy.sizes) <= SAMPLE_SIZE // 8 and sum(spy.sizes) == SAMPLE_SIZE  # sample only
    magic, _version, flags, _r, length = HEADER.unpack_from(blob)
    assert magic == MAGIC and flags == 0 and length == len(data)
    assert blob[HEADER.size :] == data  # the payload is the plaintext
    assert codec.decode(cid, blob) == data


@pytest.mark.parametrize("kind", ["text", "random, text in its second half"])
def test_a_chunk_the_sample_finds_compressible_is_compressed_whole(kind: str) -> None:
    codec = _codec()
    spy = _Spy()
    codec._compressor = spy  # type: ignore[assignment]
    data = KINDS[kind]()
    blob = _in_place(codec, data)
    assert spy.sizes[-1] == len(data)  # the whole chunk went through zstd
    assert blob[5] == FLAG_COMPRESSED and len(blob) < 0.7 * len(data)
    assert codec.decode(codec.chunk_id(data), blob) == data


def test_a_chunk_file_of_the_first_writer_still_reads() -> None:
    """Version 1 as written before the sample existed: a whole-chunk zstd frame."""
    codec = _codec()
    data = chunk_bytes("text", MIB)
    frame = zstandard.ZstdCompressor(level=3).compress(data)
    blob = HEADER.pack(MAGIC, 1, FLAG_COMPRESSED, 0, len(data)) + frame
    assert codec.decode(codec.chunk_id(data), blob) == data
    raw = random.Random(9).randbytes(MIB)
    blob = HEADER.pack(MAGIC, 1, 0, 0, len(raw)) + raw
    assert codec.decode(codec.chunk_id(raw), blob) == raw


# --- the pipeline and restore ----------------------------------------------------------------

LAYOUT = [("rand", 1), ("zero", 0), ("text", 2), ("rand", 3), ("text", 4), ("rand", 1)]


def _chunk_files(store: VaultStore) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in chunk_files(store)}


@pytest.mark.parametrize("chunk_size", [CS, 1 << 20])
def test_backup_with_and_without_o_direct_stores_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int, opens: list[int]
) -> None:
    image = tmp_path / "disk.img"
    content = make_image(image, LAYOUT * 2, tail=12345)
    if chunk_size != CS:  # bigger chunks: the sample decides
        content += random.Random(4).randbytes(3 * chunk_size) + chunk_bytes("text", chunk_size)
        image.write_bytes(content)
    ks = keys.KeySet.generate()
    results = {}
    for how in ("direct", "buffered", "refused"):
        store = VaultStore.create(tmp_path / how, chunk_size=chunk_size)
        store.keys = ks  # same id key: same chunk ids in the three vaults
        store._local.__dict__.clear()
        with monkeypatch.context() as m:
            if how == "buffered":
                m.setattr(fsutil, "O_DIRECT", 0)
            elif how == "refused":
                _refusing_open(m)
            opens.clear()
            backup_point(store, "p1", {"vda": image})
            direct_opens = sum(1 for f in opens if f & fsutil.O_DIRECT)
        if how == "direct" and _direct_works(tmp_path):
            assert direct_opens > 0
        results[how] = _chunk_files(store)
        out = tmp_path / f"{how}.raw"
        m1 = store.read_manifest("p1")
        restore_disk(store, store.read_point_index(m1, "vda"), out)
        assert out.read_bytes() == content
    assert results["direct"] == results["buffered"] == results["refused"]
    assert results["direct"]  # chunk files were written (else the next line proves nothing)
    assert all(not name.startswith(".") for name in results["direct"])  # no temp files


def test_the_pipeline_allocates_workers_plus_2_readers_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VaultStore.create(tmp_path / "v", chunk_size=CS)
    image = tmp_path / "disk.img"
    make_image(image, LAYOUT * 3)
    made: list[int] = []
    real = fsutil.page_buffer

    def counting(size: int) -> real_mmap.mmap:
        made.append(size)
        return real(size)

    monkeypatch.setattr(backup_mod, "page_buffer", counting)
    with store.writer("p"), FileSource(image) as src:
        backup_disk(store, src, workers=3)
    assert len(made) == 3 + 2 * 1
    assert all(n >= file_capacity(CS) for n in made)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("tail", [0, 12345, 4096])
def test_restore_with_and_without_o_direct_is_identical(
    store: VaultStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, tail: int
) -> None:
    image = tmp_path / "disk.img"
    content = make_image(image, LAYOUT * 2, tail=tail)
    backup_point(store, "p1", {"vda": image})
    index = store.read_point_index(store.read_manifest("p1"), "vda")
    direct_writes: list[int] = []
    real = qcow2.pwrite_direct

    def counting(fd: int, view: memoryview, offset: int) -> None:
        direct_writes.append(len(view))
        real(fd, view, offset)

    outs = {}
    for how in ("direct", "buffered", "refused"):
        out = tmp_path / f"{how}.{fmt}"
        with monkeypatch.context() as m:
            m.setattr(qcow2, "pwrite_direct", counting)
            if how == "buffered":
                m.setattr(fsutil, "O_DIRECT", 0)
            elif how == "refused":
                _refusing_open(m)
            fsutil._refused.clear()
            direct_writes.clear()
            restore_disk(store, index, out, fmt=fmt)
        if how == "direct" and _direct_works(tmp_path):
            assert direct_writes and all(n % fsutil.DIRECT_ALIGN == 0 for n in direct_writes)
        else:
            assert not direct_writes
        outs[how] = out.read_bytes()
    assert outs["direct"] == outs["buffered"] == outs["refused"]
    if fmt == "raw":
        assert outs["direct"] == content


# --- reading chunks without a buffer per chunk -----------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_decode_into_gives_what_decode_gives(kind: str, encrypted: bool) -> None:
    data = KINDS[kind]()
    codec = _codec(encrypted=encrypted)
    cid = codec.chunk_id(data)
    blob = b"".join(bytes(p) for p in codec.encode(cid, data))
    out = bytearray(len(data))
    plain = codec.decode_into(cid, memoryview(blob), out)
    assert plain == codec.decode(cid, blob) == data
    if blob[5] & FLAG_COMPRESSED:
        assert plain.obj is out  # decompressed into the caller's buffer
    elif not encrypted:
        assert plain.obj is blob  # the payload itself: no copy


@pytest.mark.parametrize("damage", ["length too small", "length too big", "truncated frame"])
def test_decode_into_refuses_a_frame_that_does_not_match_its_length(damage: str) -> None:
    from vmvault.domain.errors import ChunkCorrupt

    codec = _codec()
    data = chunk_bytes("text", MIB)
    cid = codec.chunk_id(data)
    frame = zstandard.ZstdCompressor(level=1).compress(data)
    length = {"length too small": MIB - 100, "length too big": MIB + 100}.get(damage, MIB)
    if damage == "truncated frame":
        frame = frame[: len(frame) // 2]
    blob = HEADER.pack(MAGIC, 1, FLAG_COMPRESSED, 0, length) + frame
    with pytest.raises(ChunkCorrupt):
        codec.decode_into(cid, memoryview(blob), bytearray(2 * MIB))


@pytest.mark.parametrize("encrypted", [False, True])
def test_restore_writes_unencrypted_chunks_without_copying_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted: bool
) -> None:
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    kw: dict[str, Any] = {}
    if encrypted:
        kw = {"passphrase": "pw", "key_file": tmp_path / "k.key"}
    store = VaultStore.create(tmp_path / "v", chunk_size=CS, **kw)
    image = tmp_path / "disk.img"
    content = make_image(image, LAYOUT * 2, tail=12345)
    backup_point(store, "p1", {"vda": image})
    staged: list[int] = []
    real = qcow2.aligned_buffer

    def spy(size: int) -> real_mmap.mmap:
        staged.append(size)
        return real(size)

    monkeypatch.setattr(qcow2, "aligned_buffer", spy)
    out = tmp_path / "out.raw"
    restore_disk(store, store.read_point_index(store.read_manifest("p1"), "vda"), out)
    assert out.read_bytes() == content
    if encrypted:  # a raw chunk decrypts into a new buffer, copied to an aligned one
        assert staged
    else:
        assert not staged
