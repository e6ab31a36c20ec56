"""Chunks: their id and the format of a chunk file.

A chunk is a run of ``chunk_size`` bytes of a disk, cut at a multiple of ``chunk_size`` from
offset 0 (the last chunk of a disk may be shorter).  Its **id** is the keyed BLAKE3 hash of
its plaintext (``blake3(data, key=id_key)``, 32 bytes).  An all-zero chunk is never stored:
indexes name it :data:`ZERO_ID` (32 zero bytes).

A **chunk file** (``chunks/<first byte hex>/<id hex>``) is::

    offset  size  field
    0       4     magic b"VVCK"
    4       1     version (1)
    5       1     flags: bit 0 = payload is zstd-compressed, bit 1 = encrypted
    6       2     reserved, 0
    8       4     plaintext length (little endian)
    12      ...   unencrypted: the payload
                  encrypted:   12-byte random nonce, then AES-256-GCM(enc_key) of the payload
                               with the 16-byte tag at the end; associated data = header + id

The payload is the zstd frame of the plaintext, or the plaintext itself (flag bit 0 clear)
when compression does not make it smaller, or when a sample says it would not: before
compressing a chunk larger than twice :data:`SAMPLE_SIZE`, the encoder
(:meth:`ChunkCodec.worth_compressing`) compresses :data:`SAMPLE_SLICES` slices spread over
it (64 KiB in all); if they shrink by less than :data:`SAMPLE_MIN_SAVING` together, the
chunk is stored as plaintext without compressing the whole of it (random or
already-compressed data: no zstd pass, no 4 MiB output).  That is a choice of the writer,
not a format change: a raw payload has always been valid, the version stays 1, and chunk
files written before read as they did.  **Every read verifies**: the GCM tag (encrypted),
the length, and in both modes the keyed BLAKE3 of the decompressed plaintext against the id,
so a flipped bit, a truncated file or a chunk stored under the wrong name is always
``CHUNK_CORRUPT``.

zstd (de)compressor objects are not thread-safe: a :class:`ChunkCodec` belongs to one thread.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import TYPE_CHECKING, TypeAlias

import blake3
import zstandard

from vmvault.dataplane.keys import KeySet
from vmvault.domain.errors import ChunkCorrupt

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BytesLike: TypeAlias = bytes | bytearray | memoryview
Buffer: TypeAlias = bytearray | memoryview | mmap.mmap  # writable

ID_LEN = 32
ZERO_ID = bytes(ID_LEN)
MAGIC = b"VVCK"
VERSION = 1
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
HEADER = struct.Struct("<4sBBHI")
NONCE_LEN = 12
TAG_LEN = 16
#: Incompressible-data test: this many bytes in all, taken as SAMPLE_SLICES slices spread
#: evenly over the chunk; the chunk is compressed only if they shrink by SAMPLE_MIN_SAVING.
SAMPLE_SIZE = 64 << 10
SAMPLE_SLICES = 8
SAMPLE_MIN_SAVING = 0.03


#: Where :meth:`ChunkCodec.encode_in_place` expects the plaintext in its buffer: right after
#: the header, so that an unencrypted raw chunk file is the buffer as it is.
DATA_OFFSET = HEADER.size


def file_capacity(chunk_size: int) -> int:
    """The largest chunk file of a chunk of ``chunk_size`` bytes (encrypted, uncompressed)."""
    return HEADER.size + NONCE_LEN + chunk_size + TAG_LEN


_zeros = bytes(4 << 20)


def is_zero(data: BytesLike) -> bool:
    """True when ``data`` is all zero bytes.

    A C-level prefix compare against a zero buffer (35 GB/s); ``memoryview == bytes`` is 60x
    slower.  The zero buffer is calloc'ed, so its untouched pages cost no memory.
    """
    global _zeros
    if len(data) > len(_zeros):
        _zeros = bytes(len(data))
    return _zeros.startswith(data)


class ChunkCodec:
    """Hashes, encodes and decodes chunks for one thread."""

    def __init__(self, keys: KeySet, *, level: int, encrypted: bool, max_size: int) -> None:
        self._id_key = keys.id_key
        self._aead: AESGCM | None = None
        if encrypted:  # imported only for encrypted vaults: cryptography costs ~7 MiB of RSS
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(keys.enc_key)
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._max_size = max_size

    def chunk_id(self, data: BytesLike) -> bytes:
        return blake3.blake3(data, key=self._id_key).digest()

    def worth_compressing(self, data: BytesLike) -> bool:
        """False when a sample of ``data`` says zstd would save less than 3 % of it."""
        view = memoryview(data)
        n = len(view)
        if n <= 2 * SAMPLE_SIZE:
            return True
        piece = SAMPLE_SIZE // SAMPLE_SLICES
        stride = (n - piece) // (SAMPLE_SLICES - 1)
        packed = 0
        for k in range(SAMPLE_SLICES):
            at = k * stride
            packed += len(self._compressor.compress(view[at : at + piece]))
        return packed <= (1 - SAMPLE_MIN_SAVING) * SAMPLE_SIZE

    def encode(self, cid: bytes, data: BytesLike) -> list[BytesLike]:
        """The parts of the chunk file of ``data`` (write them with one ``writev``)."""
        flags = 0
        payload: BytesLike = data
        if self.worth_compressing(data):
            packed = self._compressor.compress(data)
            if len(packed) < len(data):
                payload, flags = packed, FLAG_COMPRESSED
        if self._aead is None:
            return [HEADER.pack(MAGIC, VERSION, flags, 0, len(data)), payload]
        header = HEADER.pack(MAGIC, VERSION, flags | FLAG_ENCRYPTED, 0, len(data))
        nonce = os.urandom(NONCE_LEN)
        return [header, nonce, self._aead.encrypt(nonce, payload, header + cid)]

    def encode_in_place(self, cid: bytes, buf: Buffer, length: int) -> int:
        """Turn ``buf`` into the chunk file of its plaintext; return the file's size.

        The plaintext is ``buf[DATA_OFFSET : DATA_OFFSET + length]``, where the backup
        pipeline reads it; afterwards ``buf[:size]`` holds the same bytes as the parts that
        :meth:`encode` returns (with another random nonce when encrypted).  A raw payload
        stays where it is: in an aligned buffer the file can be written with O_DIRECT
        without a copy.  ``buf`` needs :func:`file_capacity` bytes.
        """
        mv = memoryview(buf)
        data = mv[DATA_OFFSET : DATA_OFFSET + length]
        flags = 0
        packed: bytes | None = None
        if self.worth_compressing(data):
            out = self._compressor.compress(data)
            if len(out) < length:
                packed, flags = out, FLAG_COMPRESSED
        if self._aead is None:
            size = length
            if packed is not None:
                size = len(packed)
                mv[DATA_OFFSET : DATA_OFFSET + size] = packed
            mv[: HEADER.size] = HEADER.pack(MAGIC, VERSION, flags, 0, length)
            return HEADER.size + size
        header = HEADER.pack(MAGIC, VERSION, flags | FLAG_ENCRYPTED, 0, length)
        nonce = os.urandom(NONCE_LEN)
        sealed = self._aead.encrypt(nonce, data if packed is None else packed, header + cid)
        del data  # from here on the plaintext is overwritten
        at = HEADER.size + NONCE_LEN
        mv[at : at + len(sealed)] = sealed
        mv[: HEADER.size] = header
        mv[HEADER.size : at] = nonce
        return at + len(sealed)

    def _open(self, cid: bytes, blob: BytesLike) -> tuple[int, int, BytesLike]:
        """Check the header (and decrypt): (flags, plaintext length, payload)."""
        if len(blob) < HEADER.size:
            raise _corrupt(cid, "file too short")
        magic, version, flags, _reserved, length = HEADER.unpack_from(blob)
        if magic != MAGIC or version != VERSION or flags & ~(FLAG_COMPRESSED | FLAG_ENCRYPTED):
            raise _corrupt(cid, "bad header")
        if length > self._max_size:
            raise _corrupt(cid, "length larger than the chunk size")
        view = memoryview(blob)[HEADER.size :]
        payload: BytesLike = view
        if flags & FLAG_ENCRYPTED:
            if self._aead is None:
                raise _corrupt(cid, "encrypted chunk in an unencrypted vault")
            if len(view) < NONCE_LEN + TAG_LEN:
                raise _corrupt(cid, "file too short")
            from cryptography.exceptions import InvalidTag

            try:
                payload = self._aead.decrypt(
                    view[:NONCE_LEN], view[NONCE_LEN:], bytes(blob[: HEADER.size]) + cid
                )
            except InvalidTag:
                raise _corrupt(cid, "authentication tag mismatch") from None
        elif self._aead is not None:
            raise _corrupt(cid, "unencrypted chunk in an encrypted vault")
        return flags, length, payload

    def _check(self, cid: bytes, plain: BytesLike, length: int) -> None:
        if len(plain) != length:
            raise _corrupt(cid, "wrong length")
        if self.chunk_id(plain) != cid:
            raise _corrupt(cid, "content does not match its id")

    def decode(self, cid: bytes, blob: bytes) -> bytes:
        """The verified plaintext of a chunk file, or :class:`ChunkCorrupt`."""
        flags, length, payload = self._open(cid, blob)
        if flags & FLAG_COMPRESSED:
            try:
                plain = self._decompressor.decompress(payload, max_output_size=length)
            except zstandard.ZstdError as exc:
                raise _corrupt(cid, f"zstd: {exc}") from None
        else:
            plain = bytes(payload)
        self._check(cid, plain, length)
        return plain

    def decode_into(self, cid: bytes, blob: BytesLike, out: Buffer) -> memoryview:
        """:meth:`decode` without a new buffer for the plaintext, where it can be avoided.

        Returns a view of the verified plaintext: of ``blob``'s payload when it is stored
        raw and unencrypted, of ``out`` (from its offset 0, ``out`` holding at least the
        plaintext length) when it is compressed, else of a new ``bytes``.  Raises
        :class:`ChunkCorrupt` like :meth:`decode`.
        """
        flags, length, payload = self._open(cid, blob)
        if flags & FLAG_COMPRESSED:
            target = memoryview(out)[:length]
            done = 0
            try:
                reader = self._decompressor.stream_reader(payload)
                while done < length:
                    n = reader.readinto(target[done:])
                    if n <= 0:
                        break
                    done += n
                extra = reader.read(1) if done == length else b""
            except zstandard.ZstdError as exc:
                raise _corrupt(cid, f"zstd: {exc}") from None
            if done != length or extra:
                raise _corrupt(cid, "wrong length")
            plain = target
        else:
            plain = memoryview(payload)
        self._check(cid, plain, length)
        return plain


def _corrupt(cid: bytes, why: str) -> ChunkCorrupt:
    return ChunkCorrupt(chunk=cid.hex(), why=why)
