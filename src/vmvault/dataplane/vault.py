"""The vault's chunk store on a local directory: :class:`VaultStore`.

Layout (the marker ``vmvault-vault.json`` is written by the storage layer and left alone)::

    <vault>/
      vmvault-vault.json          identity (storage layer)
      config                      chunk size, compression, encryption, key fingerprint
      chunks/<2 hex>/<64 hex>     chunk files (vmvault.dataplane.chunk)
      indexes/<point-id>/<target>.fidx   disk indexes (vmvault.dataplane.index)
      manifests/<point-id>.manifest      manifests (vmvault.dataplane.manifest)
      locks/                      vault.lock, gc.lock, writers/ (vmvault.dataplane.locks)

**Write ordering** of a recovery point: chunks (batched, fsynced) → disk indexes → manifest →
(catalog row, by the caller).  Every file is written ``tmp + fsync + rename + fsync(dir)``.
A point exists only when its manifest does; it is deleted manifest first, then its indexes.
The chunks it alone referenced are left to garbage collection.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from vmvault.dataplane import manifest as manifest_codec
from vmvault.dataplane.chunk import HEADER, ZERO_ID, BytesLike, ChunkCodec, file_capacity, is_zero
from vmvault.dataplane.chunkstore import ChunkBatch, ChunkStore
from vmvault.dataplane.config import CONFIG_NAME, DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL, VaultConfig
from vmvault.dataplane.fsutil import DIRECT_ALIGN, align_up, fsync_dir, page_buffer, write_atomic
from vmvault.dataplane.index import SUFFIX as INDEX_SUFFIX
from vmvault.dataplane.index import DiskIndex, IndexFormatError
from vmvault.dataplane.index import digest as index_digest
from vmvault.dataplane.keys import KeySet, read_key_file, write_key_file
from vmvault.dataplane.locks import (
    DEFAULT_WAIT,
    GC_LOCK,
    VAULT_LOCK,
    WRITERS,
    WriterInfo,
    WriterRegistry,
    locked,
)
from vmvault.dataplane.manifest import SUFFIX as MANIFEST_SUFFIX
from vmvault.dataplane.manifest import Manifest
from vmvault.domain.errors import (
    IndexCorrupt,
    InvalidInput,
    KeyFileMismatch,
    KeyFileMissing,
    PassphraseRequired,
    PointNotFound,
    VaultNotInitialised,
)

INDEXES = "indexes"
MANIFESTS = "manifests"
LOCKS = "locks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_name(value: str, what: str) -> str:
    """Point ids and disk targets become file names: keep them plain."""
    if not _NAME.match(value) or ".." in value:
        raise InvalidInput("use 1-128 of A-Z a-z 0-9 . _ : -", what=f"{what} '{value}'")
    return value


class ChunkScratch:
    """Two page-aligned buffers for reading chunks without allocating (one per thread).

    ``blob`` receives chunk files at offset ``DIRECT_ALIGN - HEADER.size``, so that the
    payload of a raw chunk starts on a page; ``out`` receives decompressed plaintext.
    """

    def __init__(self, chunk_size: int) -> None:
        self.blob = page_buffer(align_up(file_capacity(chunk_size)) + DIRECT_ALIGN)
        self.out = page_buffer(chunk_size)
        self.blob_view = memoryview(self.blob)[DIRECT_ALIGN - HEADER.size :]

    def close(self) -> None:
        """Unmap now; a view still held (by an exception's traceback) defers it to GC."""
        self.blob_view.release()
        for buf in (self.blob, self.out):
            with contextlib.suppress(BufferError):
                buf.close()


class VaultStore:
    """Chunks, indexes and manifests of one vault directory.  Thread-safe."""

    def __init__(self, path: Path, config: VaultConfig, keys: KeySet) -> None:
        self.path = path
        self.config = config
        self.keys = keys
        self.chunk_size = config.chunk_size
        self.zstd_level = config.zstd_level
        self.encrypted = config.encryption != "none"
        self.chunks = ChunkStore(path, self.shared_lock)
        self.writers = WriterRegistry(path / LOCKS / WRITERS)
        self._local = threading.local()
        self._mu = threading.Lock()
        self.active_writers = 0  # registrations held through this object

    # --- life cycle --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        zstd_level: int = DEFAULT_LEVEL,
        passphrase: str | None = None,
        key_file: Path | None = None,
    ) -> VaultStore:
        """Create the chunk store in ``path`` (new, empty, or holding only the marker).

        With ``passphrase`` the vault is encrypted and its keys go to ``key_file``, which
        must be given, must not exist yet, and should live outside the vault.
        """
        keys = KeySet.generate()
        config = VaultConfig.new(chunk_size, zstd_level, keys, encrypted=passphrase is not None)
        if (path / CONFIG_NAME).exists():
            raise InvalidInput("it already holds a chunk store", what=f"vault directory {path}")
        if passphrase is not None:
            if key_file is None:
                raise InvalidInput(
                    "an encrypted vault needs a key file path (outside the vault)",
                    what="key file",
                )
            write_key_file(key_file, keys, passphrase)
        path.mkdir(parents=True, exist_ok=True)
        for sub in (INDEXES, MANIFESTS, LOCKS, f"{LOCKS}/{WRITERS}"):
            (path / sub).mkdir(exist_ok=True)
        for name in (VAULT_LOCK, GC_LOCK):
            (path / LOCKS / name).touch()
        ChunkStore.create_layout(path)
        fsync_dir(path)
        write_atomic(path / CONFIG_NAME, [config.to_bytes()], vault=path)  # last: "initialised"
        return cls(path, config, keys)

    @classmethod
    def open(
        cls, path: Path, *, passphrase: str | None = None, key_file: Path | None = None
    ) -> VaultStore:
        try:
            config = VaultConfig.load(path)
        except FileNotFoundError:
            raise VaultNotInitialised(path=str(path)) from None
        if config.keys is not None:
            return cls(path, config, config.keys)
        if passphrase is None:
            raise PassphraseRequired(path=str(path))
        if key_file is None:
            raise KeyFileMissing("none was given", key_file="(none)")
        keys = read_key_file(key_file, passphrase)
        if keys.fingerprint() != config.key_fingerprint:
            raise KeyFileMismatch(key_file=str(key_file), path=str(path))
        return cls(path, config, keys)

    # --- locks -------------------------------------------------------------------------------

    def shared_lock(self, timeout: float | None = DEFAULT_WAIT) -> AbstractContextManager[None]:
        """Readers (whole run) and writers (per chunk reuse): waits out a GC sweep."""
        path = self.path / LOCKS / VAULT_LOCK
        return locked(path, exclusive=False, timeout=timeout, holder="garbage collection")

    def exclusive_lock(self, timeout: float) -> AbstractContextManager[None]:
        path = self.path / LOCKS / VAULT_LOCK
        return locked(path, exclusive=True, timeout=timeout, holder="a restore or verify")

    def gc_lock(self) -> AbstractContextManager[None]:
        path = self.path / LOCKS / GC_LOCK
        return locked(path, exclusive=True, timeout=0, holder="another garbage collection")

    def reader(self) -> AbstractContextManager[None]:
        """Hold while restoring or verifying: no GC sweep runs meanwhile."""
        return self.shared_lock()

    @contextmanager
    def writer(self, name: str) -> Iterator[WriterInfo]:
        """Hold around a whole recovery point (first chunk to manifest) of a backup.

        Registers a running writer in ``locks/writers/``: garbage collection keeps every
        chunk written or touched since the oldest running writer started.
        """
        with self.writers.register(name) as info:
            with self._mu:
                self.active_writers += 1
            try:
                yield info
            finally:
                with self._mu:
                    self.active_writers -= 1

    # --- chunks ------------------------------------------------------------------------------

    def codec(self) -> ChunkCodec:
        """This thread's codec (zstd contexts are not thread-safe)."""
        codec: ChunkCodec | None = getattr(self._local, "codec", None)
        if codec is None:
            codec = ChunkCodec(
                self.keys, level=self.zstd_level, encrypted=self.encrypted, max_size=self.chunk_size
            )
            self._local.codec = codec
        return codec

    def chunk_id(self, data: BytesLike) -> bytes:
        return self.codec().chunk_id(data)

    def has_chunk(self, cid: bytes) -> bool:
        return cid == ZERO_ID or self.chunks.exists(cid)

    def touch_chunk(self, cid: bytes) -> bool:
        """Reuse: True (and the chunk's mtime is now) when it is in the store."""
        return cid == ZERO_ID or self.chunks.touch(cid)

    def touch_chunks(self, cids: list[bytes]) -> list[bool]:
        """:meth:`touch_chunk` for many ids under one shared lock."""
        if not cids:
            return []
        with self.shared_lock():
            return [cid == ZERO_ID or self.chunks.touch_unlocked(cid) for cid in cids]

    def put_chunk(self, data: BytesLike, cid: bytes | None = None) -> tuple[bytes, int]:
        """Store one chunk durably; returns (id, bytes written, 0 when already present).

        The pipeline uses batches (:meth:`begin_batch`); this is for single chunks.
        """
        view = memoryview(data)
        if len(view) > self.chunk_size:
            raise ValueError(f"chunk of {len(view)} bytes exceeds the chunk size")
        if is_zero(view):
            return ZERO_ID, 0
        codec = self.codec()
        cid = codec.chunk_id(view) if cid is None else cid
        if self.chunks.touch(cid):
            return cid, 0
        return cid, self.chunks.write(cid, codec.encode(cid, view))

    def get_chunk(self, cid: bytes) -> bytes:
        """The verified plaintext; raises ``CHUNK_MISSING`` / ``CHUNK_CORRUPT``."""
        if cid == ZERO_ID:
            raise ValueError("the zero chunk has no stored content; its length is the index's")
        return self.codec().decode(cid, self.chunks.read(cid))

    def get_chunk_into(self, cid: bytes, scratch: ChunkScratch) -> tuple[memoryview, bool]:
        """:meth:`get_chunk` into the two buffers of ``scratch`` (no allocation per chunk
        when the chunk is unencrypted).  Returns the verified plaintext and whether it starts
        at a page boundary (so it can be written with O_DIRECT as it is): a raw payload is
        read to land on one, a compressed one is decompressed to the start of ``scratch.out``.
        """
        if cid == ZERO_ID:
            raise ValueError("the zero chunk has no stored content; its length is the index's")
        n = self.chunks.read_into(cid, scratch.blob_view)
        plain = self.codec().decode_into(cid, scratch.blob_view[:n], scratch.out)
        return plain, plain.obj is scratch.out or plain.obj is scratch.blob

    def chunk_scratch(self) -> ChunkScratch:
        return ChunkScratch(self.chunk_size)

    def begin_batch(self) -> ChunkBatch:
        return self.chunks.begin_batch()

    def iter_chunk_ids(self) -> Iterator[bytes]:
        return self.chunks.iter_ids()

    # --- indexes -----------------------------------------------------------------------------

    def index_path(self, point_id: str, target: str) -> Path:
        point = check_name(point_id, "recovery point id")
        return self.path / INDEXES / point / (check_name(target, "disk target") + INDEX_SUFFIX)

    def write_index(self, point_id: str, target: str, index: DiskIndex) -> str:
        """Write a disk index (after its chunks are committed); returns its digest."""
        if index.chunk_size != self.chunk_size:
            raise ValueError("index chunk size differs from the vault's")
        path = self.index_path(point_id, target)
        if not path.parent.exists():
            path.parent.mkdir()
            fsync_dir(path.parent.parent)
        data = index.to_bytes()
        write_atomic(path, [data], vault=self.path)
        return index_digest(data)

    def read_index(self, point_id: str, target: str, digest: str | None = None) -> DiskIndex:
        """Read and parse an index; with ``digest`` (from the manifest) also authenticate it."""
        path = self.index_path(point_id, target)
        name = f"{point_id}/{target}{INDEX_SUFFIX}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IndexCorrupt(index=name, why="file missing") from None
        if digest is not None and index_digest(data) != digest:
            raise IndexCorrupt(index=name, why="digest differs from the manifest's")
        try:
            index = DiskIndex.from_bytes(data)
        except IndexFormatError as exc:
            raise IndexCorrupt(index=name, why=str(exc)) from None
        if index.chunk_size != self.chunk_size:
            raise IndexCorrupt(index=name, why="chunk size differs from the vault's")
        return index

    # --- manifests ---------------------------------------------------------------------------

    def manifest_path(self, point_id: str) -> Path:
        return self.path / MANIFESTS / (check_name(point_id, "recovery point id") + MANIFEST_SUFFIX)

    def write_manifest(self, m: Manifest) -> None:
        """Make the recovery point exist (its indexes must be written already)."""
        for disk in m.disks:
            if (
                disk.index is not None
                and not (self.path / INDEXES / m.point_id / disk.index).exists()
            ):
                raise ValueError(f"index {disk.index} of point {m.point_id} is not written")
        data = manifest_codec.encode(m, self.keys, encrypted=self.encrypted)
        write_atomic(self.manifest_path(m.point_id), [data], vault=self.path)

    def read_manifest(self, point_id: str) -> Manifest:
        path = self.manifest_path(point_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PointNotFound(point=point_id, path=str(self.path)) from None
        return manifest_codec.decode(
            data, point_id, self.keys, encrypted=self.encrypted, where=str(path)
        )

    def read_point_index(self, m: Manifest, target: str) -> DiskIndex:
        """The index of one backed-up disk of a point, checked against the manifest's digest."""
        for disk in m.disks:
            if disk.target == target and disk.index is not None:
                return self.read_index(m.point_id, target, disk.index_digest)
        raise InvalidInput("the recovery point has no such backed-up disk", what=f"disk {target}")

    def list_manifests(self) -> list[str]:
        names = os.listdir(self.path / MANIFESTS)
        return sorted(
            n[: -len(MANIFEST_SUFFIX)]
            for n in names
            if n.endswith(MANIFEST_SUFFIX) and not n.startswith(".")
        )

    def list_index_dirs(self) -> list[str]:
        return sorted(os.listdir(self.path / INDEXES))

    def delete_point(self, point_id: str) -> None:
        """Manifest first (the point stops existing), then its indexes."""
        path = self.manifest_path(point_id)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        else:
            fsync_dir(path.parent)
        shutil.rmtree(self.path / INDEXES / point_id, ignore_errors=True)
