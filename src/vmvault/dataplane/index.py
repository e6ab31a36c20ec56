"""The fixed disk index: ``indexes/<point-id>/<disk-target>.fidx``.

The ordered chunk ids of one disk in one recovery point (after Proxmox Backup Server's
"fixed index").  Binary, little endian::

    offset  size    field
    0       6       magic b"VVFIDX"
    6       2       version (1)
    8       8       chunk size
    16      8       disk size in bytes
    24      8       chunk count N = ceil(disk size / chunk size)
    32      32 * N  chunk ids; ZERO_ID (32 zero bytes) for an all-zero chunk

Chunk ``i`` covers bytes ``[i * chunk_size, min((i + 1) * chunk_size, disk_size))``.  The
BLAKE3 digest of the whole file is recorded in the (authenticated) manifest, so an index
cannot be altered or swapped without the point failing verification.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import blake3

from vmvault.dataplane.chunk import ID_LEN, ZERO_ID

MAGIC = b"VVFIDX"
VERSION = 1
SUFFIX = ".fidx"
HEADER = struct.Struct("<6sHQQQ")


class IndexFormatError(ValueError):
    """The bytes are not a valid index (the caller turns this into ``INDEX_CORRUPT``)."""


def chunk_count(disk_size: int, chunk_size: int) -> int:
    return -(-disk_size // chunk_size)


def digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass
class DiskIndex:
    chunk_size: int
    disk_size: int
    ids: list[bytes]

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.disk_size < 0:
            raise ValueError("chunk size must be positive and disk size not negative")
        if len(self.ids) != chunk_count(self.disk_size, self.chunk_size):
            raise ValueError(
                f"{len(self.ids)} ids for {self.disk_size} bytes in chunks of {self.chunk_size}"
            )

    def chunk_length(self, i: int) -> int:
        return min(self.chunk_size, self.disk_size - i * self.chunk_size)

    def ranges_of(self, cids: Iterable[bytes]) -> tuple[tuple[int, int], ...]:
        """The byte ranges ``[start, end)`` of the disk that the chunks ``cids`` cover, in
        order, adjacent ones merged (what a damaged point reports per disk)."""
        wanted = set(cids)
        out: list[tuple[int, int]] = []
        for i, cid in enumerate(self.ids):
            if cid in wanted:
                start = i * self.chunk_size
                end = start + self.chunk_length(i)
                if out and out[-1][1] == start:
                    out[-1] = (out[-1][0], end)
                else:
                    out.append((start, end))
        return tuple(out)

    def referenced(self) -> set[bytes]:
        """The distinct stored chunks this index needs (zero chunks excluded)."""
        return set(self.ids) - {ZERO_ID}

    def to_bytes(self) -> bytes:
        header = HEADER.pack(MAGIC, VERSION, self.chunk_size, self.disk_size, len(self.ids))
        return header + b"".join(self.ids)

    @classmethod
    def from_bytes(cls, data: bytes) -> DiskIndex:
        if len(data) < HEADER.size:
            raise IndexFormatError("file too short")
        magic, version, chunk_size, disk_size, count = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise IndexFormatError("not a vmvault disk index")
        if version != VERSION:
            raise IndexFormatError(f"unsupported index version {version}")
        if chunk_size <= 0 or count != chunk_count(disk_size, chunk_size):
            raise IndexFormatError("header is inconsistent")
        if len(data) != HEADER.size + count * ID_LEN:
            raise IndexFormatError("length does not match the chunk count")
        body = memoryview(data)[HEADER.size :]
        ids = [bytes(body[i : i + ID_LEN]) for i in range(0, count * ID_LEN, ID_LEN)]
        return cls(chunk_size, disk_size, ids)
