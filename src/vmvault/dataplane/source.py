"""Where the bytes of a disk come from: the :class:`ExtentSource` port.

A source has a ``size``, an allocation map (``extents()``) and a positional read into a
caller's buffer (``pread_into``).  The backup pipeline calls ``pread_into`` from **one**
reader thread unless the source declares ``max_readers`` (see the protocol), so a source need
not be thread-safe; ``extents()`` is called once, before reading.

Implementations: :class:`FileSource` (a raw image file or block device, here) and the NBD
source over libnbd (the export of a libvirt backup job, in ``vmvault.hypervisor``).  An
incremental backup does not ask the source for its dirty extents: the caller passes them to
:func:`vmvault.dataplane.backup.backup_disk` (from the checkpoint's dirty bitmap).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

from vmvault.domain.errors import DiskReadFailed

Extent = tuple[int, int, bool]  # (offset, length, is_data)


class ExtentSource(Protocol):
    """A disk to back up.

    Contract:
    * ``size`` is the disk size in bytes;
    * ``extents()`` yields ``(offset, length, is_data)`` runs that cover ``[0, size)`` in
      order; ``is_data=False`` promises the run reads as zeros (a hole).  A source that does
      not know may yield one run ``(0, size, True)``;
    * ``pread_into(buf, offset)`` fills all of ``buf`` with the bytes at ``offset`` (never
      past ``size``) or raises; it MUST raise :class:`~vmvault.domain.errors.DiskReadFailed`
      (or another ``VmvaultError``) for an expected I/O failure;
    * optional ``max_readers: int`` (default 1): how many threads may call ``pread_into`` at
      once.  A source that sets it above 1 MUST be safe to read from that many threads (an
      NBD source would give each thread its own connection).
    """

    size: int

    def extents(self) -> Iterable[Extent]: ...

    def pread_into(self, buf: memoryview, offset: int) -> None: ...


class FileSource:
    """A raw image file (or block device): ``os.preadv`` and ``SEEK_DATA``/``SEEK_HOLE``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def extents(self) -> Iterator[Extent]:
        pos = 0
        while pos < self.size:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                    yield (pos, self.size - pos, False)
                    return
                yield (pos, self.size - pos, True)  # SEEK_DATA unsupported: all data
                return
            if data > pos:
                yield (pos, data - pos, False)
            hole = min(os.lseek(self._fd, data, os.SEEK_HOLE), self.size)
            yield (data, hole - data, True)
            pos = hole

    def pread_into(self, buf: memoryview, offset: int) -> None:
        done = 0
        want = len(buf)
        while done < want:
            try:
                n = os.preadv(self._fd, [buf[done:]], offset + done)
            except OSError as exc:
                raise DiskReadFailed(str(exc), disk=str(self.path), offset=offset + done) from exc
            if n == 0:
                raise DiskReadFailed(
                    "unexpected end of file", disk=str(self.path), offset=offset + done
                )
            done += n
