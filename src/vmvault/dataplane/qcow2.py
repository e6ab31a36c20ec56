"""A writer of fresh qcow2 (version 3) images, so a restore needs no ``qemu-img convert``.

The image is laid out before any data is read, which lets restore workers ``pwrite`` chunks
in parallel, and gets its metadata written once at the end::

    cluster 0           header (104 bytes, version 3, 64 KiB clusters, 16-bit refcounts)
    L1 table            one entry per 512 MiB of virtual disk
    refcount table      → refcount blocks (each counts 32768 clusters)
    refcount blocks
    L2 tables           only for the 512 MiB regions holding data
    data slots          one slot per non-zero chunk, in disk order, ceil(len / 64 KiB) clusters

Inside a slot, clusters that are all zero are not written (they stay holes in the file) and
are left unallocated in the L2 table (refcount 0), so the image is as sparse as one made by
``qemu-img convert``.  Every allocated cluster has refcount 1 (so the COPIED flag is set), no
backing file, no compression, no encryption: the simplest image QEMU reads natively, checked
with ``qemu-img check`` in the tests.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from vmvault.dataplane.chunk import ZERO_ID, BytesLike, is_zero
from vmvault.storage.fsutil import DIRECT_ALIGN, aligned_buffer, pwrite_direct

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER // 8
L2_SPAN = CLUSTER * L2_ENTRIES  # virtual bytes one L2 table maps: 512 MiB
REFCOUNTS_PER_BLOCK = CLUSTER // 2  # 16-bit refcounts
COPIED = 1 << 63
HEADER = struct.Struct(">IIQIIQIIQQIIQQQQII")
MAGIC = 0x514649FB


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Qcow2Layout:
    """Where everything goes in the image of a disk with the given chunk ids."""

    disk_size: int
    chunk_size: int
    ids: list[bytes]
    slots: dict[int, int] = field(init=False)  # chunk no -> host offset of its slot
    l2_tables: dict[int, int] = field(init=False)  # L1 index -> host offset of its L2 table
    l1_offset: int = field(init=False)
    l1_size: int = field(init=False)
    refcount_table_offset: int = field(init=False)
    refcount_table_clusters: int = field(init=False)
    refcount_blocks_offset: int = field(init=False)
    refcount_blocks: int = field(init=False)
    data_offset: int = field(init=False)
    clusters: int = field(init=False)  # host clusters in the file

    def __post_init__(self) -> None:
        if self.chunk_size % CLUSTER or L2_SPAN % self.chunk_size:
            raise ValueError("chunk size must be a multiple of 64 KiB dividing 512 MiB")
        self.virtual_size = _ceil(self.disk_size, 512) * 512
        nonzero = [i for i, cid in enumerate(self.ids) if cid != ZERO_ID]
        self.l1_size = _ceil(self.virtual_size, L2_SPAN)
        l1_clusters = max(1, _ceil(self.l1_size * 8, CLUSTER))
        l2_indexes = sorted({i * self.chunk_size // L2_SPAN for i in nonzero})
        data_clusters = sum(_ceil(self._length(i), CLUSTER) for i in nonzero)
        fixed = 1 + l1_clusters + len(l2_indexes) + data_clusters
        blocks = table = 0
        while True:  # the refcount structures count themselves too
            total = fixed + table + blocks
            new_blocks = _ceil(total, REFCOUNTS_PER_BLOCK)
            new_table = max(1, _ceil(new_blocks * 8, CLUSTER))
            if (new_blocks, new_table) == (blocks, table):
                break
            blocks, table = new_blocks, new_table
        self.clusters = total
        self.l1_offset = CLUSTER
        self.refcount_table_offset = self.l1_offset + l1_clusters * CLUSTER
        self.refcount_table_clusters = table
        self.refcount_blocks_offset = self.refcount_table_offset + table * CLUSTER
        self.refcount_blocks = blocks
        l2_start = self.refcount_blocks_offset + blocks * CLUSTER
        self.l2_tables = {l1: l2_start + k * CLUSTER for k, l1 in enumerate(l2_indexes)}
        self.data_offset = l2_start + len(l2_indexes) * CLUSTER
        self.slots = {}
        offset = self.data_offset
        for i in nonzero:
            self.slots[i] = offset
            offset += _ceil(self._length(i), CLUSTER) * CLUSTER
        assert offset == self.clusters * CLUSTER

    def _length(self, i: int) -> int:
        return min(self.chunk_size, self.disk_size - i * self.chunk_size)

    @property
    def file_size(self) -> int:
        return self.clusters * CLUSTER

    def metadata(self, written: dict[int, bytes]) -> list[tuple[int, bytes]]:
        """(offset, bytes) of the header, L1, L2 and refcount structures.

        ``written[i]`` has one byte per cluster of chunk ``i``'s slot: 1 if it was written.
        """
        per_chunk = self.chunk_size // CLUSTER
        refcounts = bytearray(2 * self.refcount_blocks * REFCOUNTS_PER_BLOCK)
        meta_clusters = self.data_offset // CLUSTER
        refcounts[1 : 2 * meta_clusters : 2] = b"\1" * meta_clusters
        l2: dict[int, list[int]] = {l1: [0] * L2_ENTRIES for l1 in self.l2_tables}
        for i, slot in self.slots.items():
            flags = written[i]
            first = slot // CLUSTER
            refcounts[2 * first + 1 : 2 * (first + len(flags)) : 2] = flags
            vcluster = i * per_chunk
            table = l2[vcluster // L2_ENTRIES]
            base = vcluster % L2_ENTRIES
            for k, flag in enumerate(flags):
                if flag:
                    table[base + k] = (slot + k * CLUSTER) | COPIED
        out: list[tuple[int, bytes]] = []
        for l1, entries in l2.items():
            out.append((self.l2_tables[l1], struct.pack(f">{L2_ENTRIES}Q", *entries)))
        l1_entries = [0] * self.l1_size
        for l1, offset in self.l2_tables.items():
            l1_entries[l1] = offset | COPIED
        out.append((self.l1_offset, struct.pack(f">{self.l1_size}Q", *l1_entries)))
        blocks = [self.refcount_blocks_offset + k * CLUSTER for k in range(self.refcount_blocks)]
        out.append((self.refcount_table_offset, struct.pack(f">{len(blocks)}Q", *blocks)))
        out.append((self.refcount_blocks_offset, bytes(refcounts)))
        header = HEADER.pack(
            MAGIC, 3, 0, 0, CLUSTER_BITS, self.virtual_size, 0, self.l1_size, self.l1_offset,
            self.refcount_table_offset, self.refcount_table_clusters, 0, 0, 0, 0, 0, 4, 104,
        )  # fmt: skip
        out.append((0, header))  # last: an interrupted write leaves no valid image
        return out


def write_sparse(
    fd: int, offset: int, data: BytesLike, direct_fd: int | None = None, *, aligned: bool = False
) -> bytes:
    """pwrite the non-zero 64 KiB clusters of ``data`` at ``offset``; one flag byte each.

    With ``direct_fd`` (the same file opened with O_DIRECT, see
    :func:`~vmvault.storage.fsutil.open_direct`) and a 4 KiB-aligned ``offset``, the runs
    of non-zero clusters are written through it, bypassing the page cache: straight from
    ``data`` when it starts on a page (``aligned``), else copied into this thread's aligned
    buffer first.  A tail that is not a multiple of 4 KiB (the end of a disk) goes through
    ``fd``.  The file's bytes are the same either way.
    """
    view = memoryview(data)
    flags = bytearray(_ceil(len(view), CLUSTER))
    staged = None
    if direct_fd is not None and offset % DIRECT_ALIGN == 0:
        staged = view if aligned else memoryview(aligned_buffer(len(view)))
    try:
        run_start = -1
        for k in range(len(flags) + 1):
            nonzero = k < len(flags) and not is_zero(view[k * CLUSTER : (k + 1) * CLUSTER])
            if nonzero:
                flags[k] = 1
                if run_start < 0:
                    run_start = k
            elif run_start >= 0:
                lo, hi = run_start * CLUSTER, min(k * CLUSTER, len(view))
                if staged is not None and direct_fd is not None:
                    cut = lo + (hi - lo) // DIRECT_ALIGN * DIRECT_ALIGN
                    if staged is not view:
                        staged[lo:cut] = view[lo:cut]
                    pwrite_direct(direct_fd, staged[lo:cut], offset + lo)
                    lo = cut
                if hi > lo:
                    _pwrite_all(fd, view[lo:hi], offset + lo)
                run_start = -1
    finally:
        if staged is not None and staged is not view:
            staged.release()
    return bytes(flags)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
