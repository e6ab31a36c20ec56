"""Self-healing: a damaged chunk of one vault repaired from another vault holding the point.

A recovery point keeps its id in every vault that holds it (its own vault and its copies).
When a chunk of the point is missing or corrupt in one vault (the **damaged** store), the
other **holders** are asked in the order the caller gives (the point's own vault first, then
its copies by vault name, the damaged one left out) until one supplies the chunk intact:

* **Same chunk identity** (equal chunk size and key set, so equal ids, equal encryption and
  equal ciphertext rules): the holder's chunk object is read, decoded and checked against the
  id with the holder's codec, and stored in the damaged vault *as it is* (ciphertext stays
  ciphertext).
* **Different identity** (another id key, chunk size or encryption): chunk ids differ between
  the vaults, so the id cannot be looked up there.  The chunk is found by its **position**:
  the bytes ``[i * chunk_size, i * chunk_size + length)`` of the disk (``i`` a position of the
  id in the damaged vault's index) are assembled from the holder's own index of the same
  point and disk, chunk by chunk, each one verified with the holder's keys; the plaintext must
  then hash to the damaged id under the damaged vault's id key (else that holder's copy is not
  the same data), and it is encoded with the damaged vault's codec.  Plaintext exists only in
  memory.

The repaired object replaces the damaged one with ``ChunkStore.replace`` (a ``publish``: create or replace): a corrupt
object is first moved aside (``ChunkStore.quarantine``, ``<id>.bad``) for the operator, and a
leftover can never block the repair the way a put-if-absent would.  The chunk is then read
back and verified in the damaged vault.

A holder that cannot be opened or read, or whose copy of the chunk is damaged too, is skipped
(its reason kept); a chunk that no holder supplies intact stays damaged, and the caller marks
the point damaged with the byte ranges of the disk it covers (``DiskIndex.ranges_of``).

:class:`PointHealer` does this for one point; :class:`HealingStore` is a vault store whose
chunk reads fall back to it, so a restore meets a damaged chunk, reads it from a copy, repairs
the vault and goes on (the fallback costs nothing while chunks are intact: one ``try``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.copy import same_identity
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.vault import ChunkScratch, VaultStore
from vmvault.domain.errors import ChunkCorrupt, ChunkMissing, PointDamaged, VmvaultError
from vmvault.domain.recovery_point import DamagedDisk
from vmvault.storage.errors import StorageError

Range = tuple[int, int]


@dataclass(frozen=True)
class Holder:
    """Another vault holding the point: its name and how to open its store (lazily: an
    encrypted or remote vault is opened only when a chunk is needed from it)."""

    vault: str
    open: Callable[[], VaultStore]


@dataclass(frozen=True)
class HealedChunk:
    disk: str
    chunk: str  # hex id
    source: str  # the vault it came from
    ranges: tuple[Range, ...]


@dataclass
class HealOutcome:
    healed: list[HealedChunk] = field(default_factory=list)
    #: chunk hex id → why no holder could supply it (each holder's reason)
    failed: dict[str, str] = field(default_factory=dict)


class _Source:
    """One holder, opened on first use, with its indexes of the point read on demand."""

    def __init__(self, holder: Holder, point_id: str) -> None:
        self.holder = holder
        self.point_id = point_id
        self._store: VaultStore | None = None
        self._manifest: Manifest | None = None
        self._indexes: dict[str, DiskIndex] = {}

    @property
    def store(self) -> VaultStore:
        if self._store is None:
            self._store = self.holder.open()
        return self._store

    def index(self, target: str) -> DiskIndex:
        if target not in self._indexes:
            if self._manifest is None:
                self._manifest = self.store.read_manifest(self.point_id)
            self._indexes[target] = self.store.read_point_index(self._manifest, target)
        return self._indexes[target]


class PointHealer:
    """Repairs damaged chunks of one point in ``damaged`` (vault ``vault``) from ``holders``.

    Thread-safe (restore workers call :meth:`recover` concurrently; repairs run one at a
    time).  ``indexes`` gives the damaged vault's index of each disk of the point (read on
    the first failure, never on the hot path).  The caller holds the damaged store's reader
    lock (``VaultStore.reader``, as verify and restore do), so no GC sweep runs while a chunk
    is repaired; each holder's reader lock is taken around each read from it.
    """

    def __init__(
        self,
        damaged: VaultStore,
        vault: str,
        point_id: str,
        holders: Sequence[Holder],
        indexes: Callable[[], dict[str, DiskIndex]],
    ) -> None:
        self.damaged = damaged
        self.vault = vault
        self.point_id = point_id
        self._sources = [_Source(h, point_id) for h in holders]
        self._load_indexes = indexes
        self._indexes: dict[str, DiskIndex] | None = None
        self._where: dict[bytes, str] | None = None
        self._mu = threading.Lock()
        self.outcome = HealOutcome()
        #: disk → chunk ids that no holder could supply (the damage left)
        self.unhealed: dict[str, set[bytes]] = {}

    @property
    def holders(self) -> list[str]:
        return [s.holder.vault for s in self._sources]

    def indexes(self) -> dict[str, DiskIndex]:
        if self._indexes is None:
            self._indexes = self._load_indexes()
        return self._indexes

    # --- verify: a list of bad chunks of one disk -----------------------------------------------

    def heal(self, target: str, cids: Iterable[bytes], corrupt: set[bytes]) -> HealOutcome:
        """Repair each chunk of ``cids`` (disk ``target``; those in ``corrupt`` are present
        but damaged); returns what this call healed and what it could not."""
        out = HealOutcome()
        for cid in cids:
            with self._mu:
                healed, why, _ = self._heal_one(target, cid, cid in corrupt)
            if healed is not None:
                out.healed.append(healed)
            else:
                out.failed[cid.hex()] = why
        return out

    # --- restore: the read path's fallback ----------------------------------------------------

    def recover(self, cid: bytes, error: VmvaultError) -> bytes:
        """The verified plaintext of ``cid`` from another holder, the damaged vault repaired
        on the way; :class:`PointDamaged` (naming the disk and ranges) when none has it."""
        with self._mu:
            target = self._target_of(cid)
            if target is None:  # not a chunk of this point: nothing to heal it from
                raise error
            corrupt = isinstance(error, ChunkCorrupt)
            healed, why, plain = self._heal_one(target, cid, corrupt)
            if healed is None:
                ranges = self.indexes()[target].ranges_of([cid])
                state = "corrupt" if corrupt else "missing"
                raise PointDamaged(
                    f"chunk {cid.hex()} is {state}, and no other vault supplied it intact ({why})",
                    point=self.point_id,
                    vault=self.vault,
                    where=DamagedDisk(target, ranges).describe(),
                ) from None
            return plain

    # --- the work -----------------------------------------------------------------------------

    def _target_of(self, cid: bytes) -> str | None:
        if self._where is None:
            self._where = {}
            for target, index in self.indexes().items():
                for c in index.ids:
                    self._where.setdefault(c, target)
        return self._where.get(cid)

    def _heal_one(
        self, target: str, cid: bytes, corrupt: bool
    ) -> tuple[HealedChunk | None, str, bytes]:
        """(what was healed or None, why not, the verified plaintext or b"")."""
        index = self.indexes()[target]
        ranges = index.ranges_of([cid])
        reasons: list[str] = []
        for source in self._sources:
            try:
                blob, plain = self._fetch(source, target, cid, index, ranges[0])
                self._repair(cid, blob, plain, corrupt)
            except (VmvaultError, StorageError) as exc:
                reasons.append(f"vault {source.holder.vault}: {exc}")
                continue
            healed = HealedChunk(target, cid.hex(), source.holder.vault, ranges)
            self.outcome.healed.append(healed)
            self.unhealed.get(target, set()).discard(cid)
            return healed, "", plain
        why = "; ".join(reasons) if reasons else "no other vault holds the point"
        self.outcome.failed[cid.hex()] = why
        self.unhealed.setdefault(target, set()).add(cid)
        return None, why, b""

    def _fetch(
        self, source: _Source, target: str, cid: bytes, index: DiskIndex, at: Range
    ) -> tuple[bytes | None, bytes]:
        """(the object to store as it is, or None: re-encode; the verified plaintext)."""
        src = source.store
        with src.reader():
            if same_identity(src, self.damaged):
                blob = src.chunks.read(cid)
                return blob, src.codec().decode(cid, blob)
            plain = _assemble(src, source.index(target), index.disk_size, at, cid)
        if self.damaged.chunk_id(plain) != cid:
            raise ChunkCorrupt(chunk=cid.hex(), why="this vault's copy holds other data there")
        return None, plain

    def _repair(self, cid: bytes, blob: bytes | None, plain: bytes, corrupt: bool) -> None:
        dst = self.damaged
        if blob is None:
            blob = b"".join(bytes(p) for p in dst.codec().encode(cid, plain))
        if corrupt:
            dst.chunks.quarantine(cid)
        dst.chunks.replace(cid, blob)
        if dst.get_chunk(cid) != plain:  # read back and verified in the damaged vault
            raise ChunkCorrupt(chunk=cid.hex(), why="the repaired chunk does not read back")


def _assemble(src: VaultStore, index: DiskIndex, disk_size: int, at: Range, cid: bytes) -> bytes:
    """The plaintext of bytes ``at`` of the disk, from ``src``'s chunks (each verified)."""
    if index.disk_size != disk_size:
        why = f"its index of the disk holds {index.disk_size} B, not {disk_size}"
        raise ChunkCorrupt(chunk=cid.hex(), why=why)
    start, end = at
    cs = index.chunk_size
    parts: list[bytes] = []
    for j in range(start // cs, -(-end // cs)):
        sid = index.ids[j]
        length = index.chunk_length(j)
        parts.append(bytes(length) if sid == ZERO_ID else src.get_chunk(sid))
    data = b"".join(parts)
    offset = start - (start // cs) * cs
    return data[offset : offset + end - start]


class HealingStore(VaultStore):
    """The damaged vault's store for a restore: a chunk read that fails (missing, corrupt)
    is answered by :meth:`PointHealer.recover`; everything else is the store's own."""

    def __init__(self, base: VaultStore, healer: PointHealer) -> None:
        super().__init__(base.backend, base.config, base.keys)
        self.healer = healer

    def get_chunk(self, cid: bytes) -> bytes:
        try:
            return super().get_chunk(cid)
        except (ChunkMissing, ChunkCorrupt) as exc:
            return self.healer.recover(cid, exc)

    def get_chunk_into(self, cid: bytes, scratch: ChunkScratch) -> tuple[memoryview, bool]:
        try:
            return super().get_chunk_into(cid, scratch)
        except (ChunkMissing, ChunkCorrupt) as exc:
            plain = self.healer.recover(cid, exc)
        out = memoryview(scratch.out)[: len(plain)]
        out[:] = plain
        return out, True
