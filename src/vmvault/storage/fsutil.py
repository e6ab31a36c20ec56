"""Local file primitives (the storage layer's, also used to write restored images): durable
file writes: ``tmp + fsync + rename + fsync(dir)``, and writes that bypass the
page cache.

A reader, or a crash, sees either the old file or the new one, never a torn one.  Temporary
files are named ``.<final name>.tmp.<pid>.<random>`` next to their final name, so garbage
collection can recognise (and, once old enough, remove) the leftovers of a crashed writer.

**O_DIRECT** (:func:`write_buffer_direct`, :func:`write_parts_direct`, :func:`open_direct`,
:func:`pwrite_direct`).  On this project's hosts a buffered write of fresh data costs more CPU
than compressing it (the kernel's ``copy_folio_from_iter_atomic`` was 53 % of a backup's
samples, see ``docs/performance.md``), so chunk files and the data clusters of restored
images are written with ``O_DIRECT`` from page-aligned memory (:func:`page_buffer`, or this
thread's :func:`aligned_buffer`): buffer addresses, lengths and file offsets are multiples
of :data:`DIRECT_ALIGN` (4 KiB).  The tail of a file after its last full 4 KiB block goes
through the page cache on the same descriptor.  Durability is unchanged: O_DIRECT does not
make a write durable, the callers still fsync before they rename or report.  A file system
that refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE and network file systems: ``EINVAL``
at ``open``) gets the buffered path instead, remembered per directory, with byte-identical
files.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vmvault.domain.errors import VaultFull

TMP_MARK = ".tmp."
_FULL = {errno.ENOSPC, errno.EDQUOT}

#: Alignment of O_DIRECT buffers, file offsets and lengths (the largest logical block size of
#: the disks in use; 512-byte devices accept it too).
DIRECT_ALIGN = 4096
O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_local = threading.local()
_refused: set[str] = set()  # directories whose file system refused O_DIRECT
_refused_mu = threading.Lock()


def tmp_path(final: Path) -> Path:
    """A unique temporary name in the directory of ``final``."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}")


def is_tmp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """fsync a file by name (a read-only descriptor is enough on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def space_errors(vault: Path) -> Iterator[None]:
    """Turn "no space left" (or quota) into :class:`VaultFull`; other errors pass."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise VaultFull(path=str(vault)) from exc
        raise


def write_parts(
    path: Path, parts: Sequence[bytes | bytearray | memoryview], *, sync: bool, mode: int = 0o644
) -> int:
    """Create ``path`` (must not exist) from ``parts`` with one ``writev``; return its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        total = sum(len(p) for p in parts)
        done = os.writev(fd, parts)
        if done != total:  # short write: finish the rest the slow way
            rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        if sync:
            os.fsync(fd)
        return total
    finally:
        os.close(fd)


def align_up(n: int) -> int:
    return -(-n // DIRECT_ALIGN) * DIRECT_ALIGN


def page_buffer(size: int) -> mmap.mmap:
    """A new page-aligned buffer of ``size`` bytes rounded up to 4 KiB: private anonymous
    memory, zero-filled and unbacked until touched, unmapped when the last reference goes."""
    return mmap.mmap(-1, align_up(max(size, DIRECT_ALIGN)), flags=mmap.MAP_PRIVATE)


def aligned_buffer(size: int) -> mmap.mmap:
    """This thread's page-aligned scratch buffer, at least ``size`` bytes (contents undefined).

    One per thread, grown on demand and reused; it goes away with its thread, so a pipeline's
    worker threads do not leave buffers behind.
    """
    buf: mmap.mmap | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = page_buffer(size)
        _local.buf = buf
    return buf


def direct_refused(directory: Path) -> bool:
    """True once O_DIRECT was refused for a file in ``directory``."""
    return str(directory) in _refused


def _refuse(directory: Path) -> None:
    with _refused_mu:
        _refused.add(str(directory))


def open_direct(path: Path) -> int | None:
    """A second, write-only O_DIRECT descriptor on an existing file; None where refused."""
    if not O_DIRECT or direct_refused(path.parent):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC | O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _refuse(path.parent)
        return None


def pwrite_direct(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` (aligned memory, length and ``offset`` multiples of 4 KiB)."""
    done, want = 0, len(view)
    while done < want:
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0 or n % DIRECT_ALIGN:
            # a short O_DIRECT write (the device filled up): finish through the page cache,
            # whose error (ENOSPC) is the one to report
            done += max(n, 0)
            buffered = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                _pwrite_all(buffered, view[done:], offset + done)
            finally:
                os.close(buffered)
            return
        done += n


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def write_buffer_direct(path: Path, buf: mmap.mmap, size: int, *, mode: int = 0o644) -> int:
    """Create ``path`` from ``buf[:size]`` bypassing the page cache (no fsync); return ``size``.

    ``buf`` is page-aligned (an ``mmap``).  The 4 KiB blocks are written with O_DIRECT; the
    tail after the last full block, if any, is then written through the page cache on the
    same descriptor (``fcntl`` clears O_DIRECT): padding the tail and cutting the file back
    with ``ftruncate`` instead made ext4 read that block back from the disk, synchronously, to
    zero it.  The file is byte-identical to a plain write of ``buf[:size]``, which is what a
    file system that refuses O_DIRECT gets.
    """
    with memoryview(buf) as whole:
        if not O_DIRECT or direct_refused(path.parent):
            return write_parts(path, [whole[:size]], sync=False, mode=mode)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | O_DIRECT
        try:
            fd = os.open(path, flags, mode)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # Linux creates the file before it checks that the file system takes O_DIRECT
            path.unlink(missing_ok=True)
            _refuse(path.parent)
            return write_parts(path, [whole[:size]], sync=False, mode=mode)
        try:
            head = size // DIRECT_ALIGN * DIRECT_ALIGN
            try:
                if head:
                    pwrite_direct(fd, whole[:head], 0)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # e.g. a device with larger sectors
                    raise
                _refuse(path.parent)
                head = 0
            if size > head:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~O_DIRECT)
                _pwrite_all(fd, whole[head:size], head)
            return size
        finally:
            os.close(fd)


def write_parts_direct(
    path: Path, parts: Sequence[bytes | bytearray | memoryview], *, mode: int = 0o644
) -> int:
    """:func:`write_parts` (no fsync) bypassing the page cache; return the file's size.

    The parts are copied into this thread's aligned buffer (:func:`aligned_buffer`), then
    :func:`write_buffer_direct`: the file is byte-identical to the one :func:`write_parts`
    makes, which is what a file system that refuses O_DIRECT gets.
    """
    if not O_DIRECT or direct_refused(path.parent):
        return write_parts(path, parts, sync=False, mode=mode)
    total = sum(len(p) for p in parts)
    buf = aligned_buffer(align_up(total))
    pos = 0
    for part in parts:
        n = len(part)
        buf[pos : pos + n] = part
        pos += n
    return write_buffer_direct(path, buf, total, mode=mode)


def write_atomic(
    path: Path, parts: Sequence[bytes | bytearray | memoryview], *, vault: Path, mode: int = 0o644
) -> int:
    """Write ``path`` durably and atomically (replacing an older file of that name)."""
    tmp = tmp_path(path)
    with space_errors(vault):
        try:
            size = write_parts(tmp, parts, sync=True, mode=mode)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    return size
