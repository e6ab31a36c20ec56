"""Copying a recovery point from one vault store to another (docs/copies.md).

**Order** (the vault write order of docs/vault-format.md §7, on the destination B): for each
backed-up disk, the chunks B lacks (one batch per disk: durable, then visible) → the disk's
index → after every disk, each index's chunks re-read and checked on B
(:func:`~vmvault.dataplane.restore.verify_disk`) → the manifest (the point now exists on B)
→ the manifest and indexes read back and authenticated.  The caller writes the catalog row
after that.  A failure or a cancel before the manifest aborts the batch and deletes the
indexes written so far: B holds no point, only chunks for its garbage collection (which the
next copy reuses).  When that deletion fails too (B is what failed), the copy's own error is
raised, not the deletion's, and ``say`` is told what was left.  A kill leaves the same, plus index objects without a manifest, which B's
GC removes like a killed backup's.

**GC safety on B.**  The whole copy of a point runs under B's writer registration
(``dst.writer(point_id)``), and every chunk the point needs that B already holds is
*touched* (``touch_chunks``: under B's shared lock) before it is counted as present, so the
argument of docs/vault-format.md §8 ("why a backup running at the same time loses nothing")
holds word for word: each chunk the copied point references was written or touched by the
copy after its registration.  The source A is read under A's shared lock (``src.reader()``):
no GC sweep of A runs under the copy.

**Two ways to copy** (:func:`copy_mode`):

* ``as-stored`` — A and B share the chunk identity: the same chunk size, the same key set
  (fingerprint) and the same encryption mode.  Chunk ids, chunk objects, indexes and the
  manifest are valid in B byte for byte, so the objects are copied as they are: ciphertext
  stays ciphertext, nothing is decompressed, decrypted, hashed or re-compressed.
* ``re-encoded`` — the key sets differ (every vault gets its own keys at creation): a chunk's
  id in B is the keyed hash under B's ``id_key``, so each chunk of A is read and verified
  (plaintext in memory only), hashed with B's key, looked up (and touched) in B, and — only
  when B lacks it — compressed and sealed with B's config and keys.  The indexes are
  rewritten with B's ids and the manifest re-sealed with B's keys.  ``known`` maps A ids to B
  ids learnt from points already in both vaults: a chunk whose B id is known and present in
  B is not even read from A.

Refused (before anything is written): different chunk sizes (the chunks would have to be
re-cut, and the indexes of every later point with them) and an encrypted A into an
unencrypted B (the copy would hold the data in clear).

**Bounded memory, concurrent requests.**  ``workers`` threads each handle a group of ids
at a time and hold at most one chunk (as-stored: one chunk object; re-encoded: its plaintext
and its new object), so memory is ``workers`` chunks whatever the disk size, and up to
``workers`` requests to each backend are in flight (a copy to object storage is not bound by
one request's latency).  ``progress(done, total)`` (distinct chunks) and ``cancel()`` run in
the caller's thread between groups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Literal

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.chunkstore import ChunkBatch, space_errors
from vmvault.dataplane.index import DiskIndex, digest
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.restore import verify_disk
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    Cancelled,
    CopyChunkSizeDiffers,
    CopyVerifyFailed,
    CopyWouldDecrypt,
    PointNotFound,
    VmvaultError,
)
from vmvault.storage.errors import ObjectMissing, StorageError, retry

Mode = Literal["as-stored", "re-encoded"]
Progress = Callable[[int, int], None]
#: Ids per task: one shared-lock hold of B touches a whole group.
GROUP = 32


@dataclass
class CopyResult:
    point_id: str
    mode: Mode
    chunks_total: int = 0  # distinct stored chunks the point references
    chunks_sent: int = 0  # written to B
    chunks_present: int = 0  # found in B (and touched)
    bytes_sent: int = 0  # chunk, index and manifest objects written to B
    seconds: float = 0.0
    #: A id → B id of every chunk of the point (re-encoded copies; identity when as-stored)
    ids: dict[bytes, bytes] = field(default_factory=dict, repr=False)


def copy_mode(src: VaultStore, dst: VaultStore, names: tuple[str, str] | None = None) -> Mode:
    """How a point of ``src`` goes to ``dst``, or the error that refuses it."""
    source, target = names or (src.location, dst.location)
    if src.chunk_size != dst.chunk_size:
        raise CopyChunkSizeDiffers(
            source=source,
            target=target,
            source_size=src.chunk_size,
            target_size=dst.chunk_size,
        )
    if src.encrypted and not dst.encrypted:
        raise CopyWouldDecrypt(source=source, target=target)
    return "as-stored" if same_identity(src, dst) else "re-encoded"


def same_identity(a: VaultStore, b: VaultStore) -> bool:
    """True when a chunk has the same id and a valid object in both vaults: the same chunk
    size, key set (fingerprint) and encryption mode (the one rule of copy and heal)."""
    return (
        a.chunk_size == b.chunk_size
        and a.encrypted == b.encrypted
        and a.config.key_fingerprint == b.config.key_fingerprint
    )


def copy_point(
    src: VaultStore,
    dst: VaultStore,
    point_id: str,
    *,
    workers: int = 4,
    known: dict[bytes, bytes] | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    names: tuple[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> CopyResult:
    """Copy one recovery point from ``src`` to ``dst`` (module docstring: order, modes).

    ``say`` gets a line for the job log when the clean-up of a failed copy fails too."""
    mode = copy_mode(src, dst, names)
    started = time.monotonic()
    result = CopyResult(point_id, mode)
    with src.reader():
        with space_errors(src.location):
            manifest = src.read_manifest(point_id)
            raw_manifest = _raw_manifest(src, point_id) if mode == "as-stored" else b""
            indexes = {
                d.target: src.read_point_index(manifest, d.target)
                for d in manifest.disks
                if d.index is not None
            }
        result.chunks_total = len(set().union(*(i.referenced() for i in indexes.values())))
        copier = _Copier(src, dst, mode, result, max(1, workers), known or {}, progress, cancel)
        with dst.writer(point_id):
            try:
                written = copier.copy_disks(indexes)
                _verify_on_destination(dst, point_id, written, names)
                if mode == "as-stored":
                    key = dst.manifest_key(point_id)
                    with space_errors(dst.location):
                        retry(lambda: dst.backend.publish(key, raw_manifest))
                    result.bytes_sent += len(raw_manifest)
                else:
                    result.bytes_sent += _write_reencoded_manifest(dst, manifest, written)
            except BaseException:
                _discard(dst, point_id, say)
                raise
    _read_back(dst, point_id, names, say)
    result.seconds = time.monotonic() - started
    return result


class _Copier:
    """The chunks and indexes of one point (one batch per disk on B)."""

    def __init__(
        self,
        src: VaultStore,
        dst: VaultStore,
        mode: Mode,
        result: CopyResult,
        workers: int,
        known: dict[bytes, bytes],
        progress: Progress | None,
        cancel: Callable[[], bool] | None,
    ) -> None:
        self.src, self.dst, self.mode, self.result = src, dst, mode, result
        self.workers, self.known = workers, known
        self.progress, self.cancel = progress, cancel
        self._mu = threading.Lock()
        self._stop = threading.Event()
        self._done = 0

    def copy_disks(self, indexes: dict[str, DiskIndex]) -> dict[str, DiskIndex]:
        """Chunks then index, disk by disk; returns B's index of each disk."""
        written: dict[str, DiskIndex] = {}
        for target, index in indexes.items():
            todo = [cid for cid in sorted(index.referenced()) if cid not in self.result.ids]
            batch = self.dst.begin_batch()
            try:
                self._chunks(todo, batch)
                batch.commit()
            except BaseException:
                batch.abort()
                raise
            ids = self.result.ids
            out = DiskIndex(index.chunk_size, index.disk_size, [ids.get(c, c) for c in index.ids])
            self.dst.write_index(self.result.point_id, target, out)
            self.result.bytes_sent += len(out.to_bytes())
            written[target] = out
        return written

    def _chunks(self, todo: list[bytes], batch: ChunkBatch) -> None:
        groups = [todo[i : i + GROUP] for i in range(0, len(todo), GROUP)]
        pending: set[Future[None]] = set()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="copy") as pool:
            try:
                for group in groups:
                    while len(pending) >= 2 * self.workers:
                        pending = self._drain(pending)
                    pending.add(pool.submit(self._group, group, batch))
                while pending:
                    pending = self._drain(pending)
            except BaseException:
                self._stop.set()
                for f in pending:
                    f.cancel()
                raise

    def _drain(self, pending: set[Future[None]]) -> set[Future[None]]:
        done, rest = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
        for f in done:
            f.result()  # a worker's error stops the copy
        if self.progress is not None:
            self.progress(self._done, self.result.chunks_total)
        if self.cancel is not None and self.cancel():
            raise Cancelled(operation=f"copy of point {self.result.point_id}")
        return set(rest)

    def _group(self, group: list[bytes], batch: ChunkBatch) -> None:
        if self.mode == "as-stored":
            present = self.dst.touch_chunks(group)
            for cid, there in zip(group, present, strict=True):
                if self._stop.is_set():
                    return
                sent = 0 if there else batch.add(cid, [self.src.chunks.read(cid)])
                self._count(cid, cid, sent)
            return
        for cid in group:
            if self._stop.is_set():
                return
            self._reencode(cid, batch)

    def _reencode(self, cid: bytes, batch: ChunkBatch) -> None:
        hint = self.known.get(cid)
        if hint is not None and self.dst.touch_chunk(hint):
            self._count(cid, hint, 0)
            return
        plain = self.src.get_chunk(cid)  # verified; plaintext in memory only
        bid = self.dst.chunk_id(plain)
        if self.dst.touch_chunk(bid) or not batch.reserve(bid):
            self._count(cid, bid, 0)
            return
        self._count(cid, bid, batch.add(bid, self.dst.codec().encode(bid, plain)))

    def _count(self, cid: bytes, bid: bytes, sent: int) -> None:
        with self._mu:
            self.result.ids[cid] = bid
            self._done += 1
            if sent:
                self.result.chunks_sent += 1
                self.result.bytes_sent += sent
            else:
                self.result.chunks_present += 1


def _raw_manifest(src: VaultStore, point_id: str) -> bytes:
    """The manifest object as stored (an as-stored copy publishes it byte for byte).  Read
    after :meth:`VaultStore.read_manifest` authenticated it: a point deleted in between is
    ``PointNotFound``, as the first read would have said."""
    try:
        return retry(lambda: src.backend.get(src.manifest_key(point_id)))
    except ObjectMissing:
        raise PointNotFound(point=point_id, path=src.location) from None


def _discard(dst: VaultStore, point_id: str, say: Callable[[str], None] | None) -> None:
    """Delete what a failed copy wrote in B (manifest first, then the indexes).  When that
    fails too (B unreachable) the copy's own error stays the one reported: the clean-up's
    failure is only said, and what is left goes at B's GC (indexes) or at the next copy's
    step 0 (a manifest without its catalog row)."""
    try:
        dst.delete_point(point_id)
    except (VmvaultError, StorageError) as exc:
        text = exc.text if isinstance(exc, VmvaultError) else str(exc)
        if say is not None:
            say(
                f"could not remove what was written of point {point_id} from "
                f"{dst.location} ({text}): its garbage collection or the next copy removes it"
            )


def _verify_on_destination(
    dst: VaultStore, point_id: str, written: dict[str, DiskIndex], names: tuple[str, str] | None
) -> None:
    """Re-read every chunk the copied indexes reference, in B, before the manifest exists."""
    for target, index in written.items():
        report = verify_disk(dst, index, quarantine=True)
        if not report.ok:
            bad = [*report.missing, *report.corrupt]
            raise CopyVerifyFailed(
                point=point_id,
                vault=names[1] if names else dst.location,
                problem=f"disk {target}: {len(report.missing)} missing, "
                f"{len(report.corrupt)} corrupt chunk(s), first {bad[0].hex()}",
            )


def _write_reencoded_manifest(dst: VaultStore, m: Manifest, written: dict[str, DiskIndex]) -> int:
    """The manifest with B's index digests, sealed with B's keys; returns its size."""
    disks = []
    for d in m.disks:
        if d.index is None:
            disks.append(d)
            continue
        data = written[d.target].to_bytes()
        disks.append(replace(d, index_digest=digest(data)))
    dst.write_manifest(replace(m, disks=disks))
    with space_errors(dst.location):
        return retry(lambda: dst.backend.stat(dst.manifest_key(m.point_id))).size


def _read_back(
    dst: VaultStore,
    point_id: str,
    names: tuple[str, str] | None,
    say: Callable[[str], None] | None,
) -> None:
    """The manifest authenticates and names indexes that match it; else the copy is removed."""
    try:
        m = dst.read_manifest(point_id)
        for d in m.disks:
            if d.index is not None:
                dst.read_point_index(m, d.target)
    except VmvaultError as exc:
        _discard(dst, point_id, say)
        raise CopyVerifyFailed(
            point=point_id, vault=names[1] if names else dst.location, problem=exc.text
        ) from exc


def known_ids(src: VaultStore, dst: VaultStore, point_ids: Iterable[str]) -> dict[bytes, bytes]:
    """A id → B id learnt from points both vaults hold (same disk, same position, same data).

    ``point_ids`` must be points that *both* vaults hold: the two indexes are then of the same
    point, disk and position, so each pair is the same data under A's and B's keys.  That is
    what makes the hint safe — B's verify cannot catch a wrong hint (a hinted B id present in
    B is a valid chunk, just possibly of other data).  Read failures are ignored: a missing
    entry only costs a read of A."""
    out: dict[bytes, bytes] = {}
    for point_id in point_ids:
        try:
            ma, mb = src.read_manifest(point_id), dst.read_manifest(point_id)
            for d in ma.disks:
                if d.index is None:
                    continue
                ia, ib = src.read_point_index(ma, d.target), dst.read_point_index(mb, d.target)
                if len(ia.ids) == len(ib.ids):
                    out.update((a, b) for a, b in zip(ia.ids, ib.ids, strict=True) if a != ZERO_ID)
        except VmvaultError:
            continue
    return out
