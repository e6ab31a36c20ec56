"""The vault store: :class:`VaultStore`, chunks, indexes and manifests of one vault.

It reads and writes only through the storage contract
(:class:`~vmvault.storage.backend.StorageBackend`); ``VaultStore.open(path)`` and
``create(path)`` take a directory (the local backend) or a backend.  Object layout (keys)::

    vmvault-vault.json                 identity (local directories; the storage layer's)
    config                             chunk size, compression, encryption, key fingerprint
    chunks/<2 hex>/<64 hex>            chunk objects (vmvault.dataplane.chunk, .chunkstore)
    indexes/<point-id>/<target>.fidx   disk indexes (vmvault.dataplane.index)
    manifests/<point-id>.manifest      manifests (vmvault.dataplane.manifest)
    gc-epoch, reuse/<32 hex>           GC epoch, incrementals' reuse lists (vmvault.dataplane.reuse)
    (locks: lock "vault", lock "gc", the writer registry — vmvault.dataplane.locks)

**Write ordering** of a recovery point: chunks (one batch per disk: durable, then visible) →
disk indexes (atomic publish) → manifest (atomic publish) → (catalog row, by the caller).
A point exists only when its manifest does; it is deleted manifest first (durably), then its
indexes.  The chunks it alone referenced are left to garbage collection.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from vmvault.dataplane import holds
from vmvault.dataplane import manifest as manifest_codec
from vmvault.dataplane.chunk import HEADER, ZERO_ID, BytesLike, ChunkCodec, file_capacity, is_zero
from vmvault.dataplane.chunkstore import (
    CHUNKS,
    ChunkBatch,
    ChunkStore,
    retried,
    space_errors,
)
from vmvault.dataplane.config import CONFIG_NAME, DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL, VaultConfig
from vmvault.dataplane.index import SUFFIX as INDEX_SUFFIX
from vmvault.dataplane.index import DiskIndex, IndexFormatError
from vmvault.dataplane.index import digest as index_digest
from vmvault.dataplane.keys import KeySet, read_key_file, write_key_file
from vmvault.dataplane.locks import DEFAULT_WAIT, GC_LOCK, VAULT_LOCK, WriterRegistry, held
from vmvault.dataplane.manifest import SUFFIX as MANIFEST_SUFFIX
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.reuse import REUSE, ReuseLists
from vmvault.domain.errors import (
    IndexCorrupt,
    InvalidInput,
    KeyFileMismatch,
    KeyFileMissing,
    PassphraseRequired,
    PointNotFound,
    VaultNotInitialised,
)
from vmvault.storage.backend import StorageBackend, Usage, WriterInfo
from vmvault.storage.errors import ObjectMissing, retry
from vmvault.storage.fsutil import DIRECT_ALIGN, align_up, page_buffer
from vmvault.storage.local import LocalBackend

T = TypeVar("T")
R = TypeVar("R")
#: The small objects of one point (indexes, their checks) asked at once on object storage.
SMALL_REQUESTS = 8

INDEXES = "indexes"
MANIFESTS = "manifests"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

#: The prefixes of a vault's objects (``StorageBackend.create_layout``).
LAYOUT = [f"{CHUNKS}/{i:02x}/" for i in range(256)] + [f"{INDEXES}/", f"{MANIFESTS}/", f"{REUSE}/"]

#: Where a vault is: a directory (the local backend) or any backend.
Where = Path | str | os.PathLike[str] | StorageBackend


def backend_of(where: Where) -> StorageBackend:
    if isinstance(where, str | os.PathLike):
        return LocalBackend(Path(where))
    return where


def _get(backend: StorageBackend, key: str) -> bytes:
    """One metadata object (config, index, manifest), retried; storage failures as the errors
    users see (``STORAGE_UNREACHABLE`` …); :class:`ObjectMissing` for the caller to name."""
    return retried(backend.location, lambda: backend.get(key))


def check_name(value: str, what: str) -> str:
    """Point ids and disk targets become parts of keys: keep them plain."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise InvalidInput("use 1-128 of A-Z a-z 0-9 . _ : -", what=f"{what} '{value}'")
    return value


def index_key(point_id: str, target: str) -> str:
    point = check_name(point_id, "recovery point id")
    return f"{INDEXES}/{point}/{check_name(target, 'disk target')}{INDEX_SUFFIX}"


def manifest_key(point_id: str) -> str:
    return f"{MANIFESTS}/{check_name(point_id, 'recovery point id')}{MANIFEST_SUFFIX}"


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
    """Chunks, indexes and manifests of one vault, on a storage backend.  Thread-safe."""

    def __init__(self, backend: StorageBackend, config: VaultConfig, keys: KeySet) -> None:
        self.backend = backend
        self.location = backend.location
        self.config = config
        self.keys = keys
        self.chunk_size = config.chunk_size
        self.zstd_level = config.zstd_level
        self.encrypted = config.encryption != "none"
        self.chunks = ChunkStore(backend, self.shared_lock)
        self.writers = WriterRegistry(backend)
        self.reuse = ReuseLists(backend, self.shared_lock)
        self._local = threading.local()
        self._mu = threading.Lock()
        self.active_writers = 0  # registrations held through this object

    # --- life cycle --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        where: Where,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        zstd_level: int = DEFAULT_LEVEL,
        passphrase: str | None = None,
        key_file: Path | None = None,
    ) -> VaultStore:
        """Create the chunk store in ``where`` (a directory: new, empty, or holding only the
        marker; or a backend holding no ``config``).

        With ``passphrase`` the vault is encrypted and its keys go to ``key_file``, which
        must be given, must not exist yet, and should live outside the vault.
        """
        backend = backend_of(where)
        keys = KeySet.generate()
        config = VaultConfig.new(chunk_size, zstd_level, keys, encrypted=passphrase is not None)
        taken = InvalidInput("it already holds a chunk store", what=f"vault {backend.location}")
        if backend.exists(CONFIG_NAME):
            raise taken
        if passphrase is not None:
            if key_file is None:
                raise InvalidInput(
                    "an encrypted vault needs a key file path (outside the vault)",
                    what="key file",
                )
            write_key_file(key_file, keys, passphrase)
        with space_errors(backend.location):
            backend.create_layout(LAYOUT)
            ReuseLists(backend, contextlib.nullcontext).new_epoch()
            if not backend.put(CONFIG_NAME, config.to_bytes()):  # last: "initialised"
                raise taken
        return cls(backend, config, keys)

    @staticmethod
    def read_config(where: Where) -> VaultConfig:
        """The vault's ``config`` (no key needed: an encrypted vault's has no keys in it)."""
        backend = backend_of(where)
        try:
            data = _get(backend, CONFIG_NAME)
        except ObjectMissing:
            raise VaultNotInitialised(path=backend.location) from None
        return VaultConfig.from_bytes(data, backend.location)

    @classmethod
    def open(
        cls, where: Where, *, passphrase: str | None = None, key_file: Path | None = None
    ) -> VaultStore:
        backend = backend_of(where)
        config = cls.read_config(backend)
        if config.keys is not None:
            return cls(backend, config, config.keys)
        if passphrase is None:
            raise PassphraseRequired(path=backend.location)
        if key_file is None:
            raise KeyFileMissing("none was given", key_file="(none)")
        keys = read_key_file(key_file, passphrase)
        if keys.fingerprint() != config.key_fingerprint:
            raise KeyFileMismatch(key_file=str(key_file), path=backend.location)
        return cls(backend, config, keys)

    # --- locks -------------------------------------------------------------------------------

    def shared_lock(self, timeout: float | None = DEFAULT_WAIT) -> AbstractContextManager[None]:
        """Readers (whole run) and writers (per chunk reuse): waits out a GC sweep."""
        return held(
            self.backend, VAULT_LOCK, exclusive=False, timeout=timeout, holder="garbage collection"
        )

    def exclusive_lock(self, timeout: float) -> AbstractContextManager[None]:
        return held(
            self.backend, VAULT_LOCK, exclusive=True, timeout=timeout, holder="a restore or verify"
        )

    def gc_lock(self) -> AbstractContextManager[None]:
        return held(
            self.backend,
            GC_LOCK,
            exclusive=True,
            timeout=0,
            holder="another garbage collection",
        )

    def reader(self) -> AbstractContextManager[None]:
        """Hold while restoring or verifying: no GC sweep runs meanwhile."""
        return self.shared_lock()

    @contextmanager
    def writer(self, name: str) -> Iterator[WriterInfo]:
        """Hold around a whole recovery point (first chunk to manifest) of a backup.

        Registers a running writer: garbage collection keeps every chunk written or touched
        since the oldest running writer started.
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
        """:meth:`touch_chunk` for many ids under one shared lock, concurrently
        (:meth:`ChunkStore.touch_many`: on object storage each touch is a request)."""
        stored = [cid for cid in cids if cid != ZERO_ID]
        found = iter(self.chunks.touch_many(stored))
        return [cid == ZERO_ID or next(found) for cid in cids]

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
        return self.decode_chunk_into(cid, scratch, n, scratch.out)

    def decode_chunk_into(
        self, cid: bytes, fetched: ChunkScratch, n: int, out: mmap.mmap
    ) -> tuple[memoryview, bool]:
        """The second half of :meth:`get_chunk_into`, for a chunk file already read into
        ``fetched.blob_view[:n]`` (read-ahead): the plaintext (in ``out`` when compressed)
        and whether it starts at a page boundary.  Raises ``CHUNK_CORRUPT``."""
        plain = self.codec().decode_into(cid, fetched.blob_view[:n], out)
        return plain, plain.obj is out or plain.obj is fetched.blob

    def chunk_scratch(self) -> ChunkScratch:
        return ChunkScratch(self.chunk_size)

    def begin_batch(self) -> ChunkBatch:
        return self.chunks.begin_batch()

    def iter_chunk_ids(self) -> Iterator[bytes]:
        return self.chunks.iter_ids()

    def chunk_usage(self) -> Usage:
        """Bytes and number of the stored chunk objects."""
        return self.backend.usage(CHUNKS + "/")

    # --- indexes -----------------------------------------------------------------------------

    index_key = staticmethod(index_key)

    def write_index(self, point_id: str, target: str, index: DiskIndex) -> str:
        """Publish a disk index (after its chunks are committed); returns its digest."""
        if index.chunk_size != self.chunk_size:
            raise ValueError("index chunk size differs from the vault's")
        key = index_key(point_id, target)
        data = index.to_bytes()
        retried(self.location, lambda: self.backend.publish(key, data))
        return index_digest(data)

    def read_index(self, point_id: str, target: str, digest: str | None = None) -> DiskIndex:
        """Read and parse an index; with ``digest`` (from the manifest) also authenticate it."""
        key = index_key(point_id, target)
        name = f"{point_id}/{target}{INDEX_SUFFIX}"
        try:
            data = _get(self.backend, key)
        except ObjectMissing:
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

    def list_index_dirs(self) -> list[str]:
        """The point ids that have index objects (with or without a manifest)."""
        with space_errors(self.location):
            listed = list(self.backend.list_objects(INDEXES + "/"))
        return sorted({info.key.split("/")[1] for info in listed})

    # --- manifests ---------------------------------------------------------------------------

    manifest_key = staticmethod(manifest_key)

    def has_manifest(self, point_id: str) -> bool:
        """Whether the recovery point exists in the vault."""
        return retried(self.location, lambda: self.backend.exists(manifest_key(point_id)))

    def each(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` of each item, in order: at once (:data:`SMALL_REQUESTS` at a time) on a remote
        backend, where each is a round trip; one after another on a local one.  The first
        failure is raised, after the calls already started have ended."""
        todo = list(items)
        if not self.backend.remote or len(todo) < 2:
            return [fn(item) for item in todo]
        with ThreadPoolExecutor(min(SMALL_REQUESTS, len(todo))) as pool:
            return list(pool.map(fn, todo))

    def write_manifest(self, m: Manifest) -> None:
        """Make the recovery point exist (its indexes must be written already)."""
        keys = [f"{INDEXES}/{m.point_id}/{d.index}" for d in m.disks if d.index is not None]
        for key, there in zip(keys, self.each(self.backend.exists, keys), strict=True):
            if not there:
                name = key.rsplit("/", 1)[1]
                raise ValueError(f"index {name} of point {m.point_id} is not written")
        data = manifest_codec.encode(m, self.keys, encrypted=self.encrypted)
        key = manifest_key(m.point_id)
        retried(self.location, lambda: self.backend.publish(key, data))

    def read_manifest(self, point_id: str) -> Manifest:
        key = manifest_key(point_id)
        try:
            data = _get(self.backend, key)
        except ObjectMissing:
            raise PointNotFound(point=point_id, path=self.location) from None
        return manifest_codec.decode(
            data, point_id, self.keys, encrypted=self.encrypted, where=f"{self.location}:{key}"
        )

    def read_parent(self, point_id: str) -> tuple[Manifest, bytes | None]:
        """The manifest of the point an incremental starts from, and the GC epoch read just
        before it (for :meth:`ReuseLists.claim`: the order matters, see :mod:`.reuse`)."""
        epoch = self.reuse.epoch()
        return self.read_manifest(point_id), epoch

    def read_point_index(self, m: Manifest, target: str) -> DiskIndex:
        """The index of one backed-up disk of a point, checked against the manifest's digest."""
        for disk in m.disks:
            if disk.target == target and disk.index is not None:
                return self.read_index(m.point_id, target, disk.index_digest)
        raise InvalidInput("the recovery point has no such backed-up disk", what=f"disk {target}")

    def list_manifests(self) -> list[str]:
        prefix = MANIFESTS + "/"
        with space_errors(self.location):
            listed = list(self.backend.list_objects(prefix))
        names = (info.key[len(prefix) :] for info in listed)
        return sorted(
            n[: -len(MANIFEST_SUFFIX)]
            for n in names
            if n.endswith(MANIFEST_SUFFIX) and "/" not in n
        )

    def delete_point(self, point_id: str) -> None:
        """Manifest first, durably (the point stops existing), then its indexes.  Where the
        storage holds objects, each goes through its purge (an undated hold released, every
        version deleted), which refuses while the storage still retains it
        (``POINT_RETAINED``: the caller checked the catalog's date, services/immutability.py,
        but the storage's clock decides)."""
        if self.backend.holds is not None:
            holds.purge_point(self, point_id, f"{INDEXES}/{check_name(point_id, 'point id')}/")
            return
        with space_errors(self.location):
            retry(lambda: self.backend.delete(manifest_key(point_id)))
            self.backend.delete_prefix(f"{INDEXES}/{check_name(point_id, 'recovery point id')}/")
