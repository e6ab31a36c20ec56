"""Reading a disk over NBD with libnbd: the :class:`NbdSource` of a backup.

An :class:`NbdSource` is the dataplane's ``ExtentSource`` (``size``, ``extents()``,
``pread_into()``) over one NBD export: the export of a libvirt pull-mode backup job
(:mod:`vmvault.hypervisor.libvirt.backup`) or of ``qemu-nbd`` over a shut-off VM's image
(:mod:`vmvault.hypervisor.offline`).  For an incremental export it also gives the dirty
extents (:meth:`NbdSource.dirty_extents`).

How it reads (measured on the lab, see ``docs/backup-adapter.md``):

* ``pread_into`` reads straight into the caller's buffer: ``aio_pread`` is given a memoryview
  of each piece of it, so there is no copy in Python (``h.pread`` returns a new ``bytes`` that
  would then be copied into the buffer).  libnbd 1.14's Python binding takes any writable
  buffer there; an ``nbd.Buffer.from_buffer(view)`` would work too but **leaks** a reference to
  the view on every request (``PyObject_GetAttrString(buf, "_o")`` is never released), which
  pins the caller's buffer forever;
* a buffer is cut into pieces of ``piece`` bytes (256 KiB) with up to ``depth`` (16)
  requests in flight, spread over ``connections`` NBD connections (1): QEMU's NBD server
  answers them in parallel, which hides the per-request round trip that a single synchronous
  read pays.  Smaller, more numerous requests won on a cold cache and a busy host: a 4 MiB
  chunk as 16 x 256 KiB read at 0.74-1.38 GB/s against 0.52-1.02 GB/s as 4 x 1 MiB, and QEMU
  spent a third less CPU serving them (``docs/performance.md``).  Keeping requests in flight
  across chunk boundaries (read-ahead into the next buffer) was tried and measured no
  faster, so each call waits for its own pieces only;
* requests never exceed the server's maximum block size (32 MiB for QEMU);
* ``block_status`` asks for at most 1 GiB at a time and loops on the extents the server
  returns (a server may answer with less than was asked).

**A pull** (domain/pull.py) reads a remote host's export over TCP with TLS (:class:`NbdTls`):
libnbd is told to *require* TLS (``TLS_REQUIRE``: a server that does not offer it is refused,
never read in plain text), with the client certificates of the pull's directory
(``set_tls_certificates``: ``ca-cert.pem``, ``client-cert.pem``, ``client-key.pem``) and the
server's certificate verified against that CA and the address (``set_tls_verify_peer``).  A
connection that fails in TLS is :class:`~vmvault.domain.errors.PullTlsFailed`; only the
directory's path is ever named, never a key.  Its connection is bounded: libnbd's
``aio_connect_tcp`` then a ``poll`` loop until the NBD session is ready, at most
``connect_timeout`` seconds (30) and asking ``cancel()`` each second — a firewall that drops
the packets or a server that accepts and never answers (a stalled TLS handshake) is
:class:`~vmvault.domain.errors.NbdConnectTimeout`, never a job that hangs.  (The host name is
resolved before that, by ``getaddrinfo``, which the system's resolver bounds.)

Every libnbd failure becomes :class:`~vmvault.domain.errors.NbdReadFailed` (a
``DiskReadFailed``).  After a failed read the source is closed: its in-flight requests may still
target the caller's buffer, and closing the connections is what guarantees they never land.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import nbd

from vmvault.domain.errors import Cancelled, NbdConnectTimeout, NbdReadFailed, PullTlsFailed
from vmvault.hypervisor.pull_dir import pull_dir_problems_here

BASE_ALLOCATION = "base:allocation"
DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:"
MiB = 1 << 20
#: QEMU's NBD server accepts requests of at most 32 MiB.
MAX_REQUEST = 32 * MiB
#: How much one block-status request covers (the protocol's length is 32 bits).
BLOCK_STATUS_SPAN = 1 << 30

Extent = tuple[int, int, bool]
#: Words of libnbd's messages when the TLS negotiation (not the network) failed.
_TLS_WORDS = ("tls", "certificate", "handshake", "x509")


@dataclass(frozen=True)
class NbdTls:
    """Where a pull reads (TCP) and the client PKI directory it authenticates with."""

    address: str
    port: int
    certificates: str

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def check_client_files(certificates: str, address: str, vm: str) -> None:
    """``PULL_TLS_FAILED`` unless directory ``certificates`` is usable as the client PKI
    directory libnbd reads (:mod:`~vmvault.hypervisor.pull_dir`: the files
    :data:`~vmvault.domain.pull.PULL_FILES`, the key its owner's only; no key is read)."""
    problems = pull_dir_problems_here(certificates)
    if problems:
        raise PullTlsFailed(
            f"{certificates}: {'; '.join(problems)}",
            disk=f"{vm} (every disk)",
            offset=0,
            address=address,
            host=address,
            certificates=certificates,
        )


def _msg(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NbdSource:
    """One NBD export as an ``ExtentSource`` (+ ``dirty_extents()``).

    ``socket`` is a unix socket; ``export`` the export name (libvirt names a backup export
    after the disk target, qemu-nbd's default is ``""``).  ``dirty_context`` is the meta
    context of the dirty bitmap (``qemu:dirty-bitmap:backup-vda`` for a libvirt incremental,
    ``qemu:dirty-bitmap:NAME`` for ``qemu-nbd --bitmap=NAME``), or None for a full export.

    ``pread_into`` must be called from one thread at a time (the dataplane's reader thread);
    ``extents()`` and ``dirty_extents()`` are meant to be called before reading.
    """

    def __init__(
        self,
        socket: str | Path,
        export: str = "",
        *,
        disk: str | None = None,
        dirty_context: str | None = None,
        connections: int = 1,
        depth: int = 16,
        piece: int = 256 * 1024,
        timeout: float = 120.0,
        tls: NbdTls | None = None,
        connect_timeout: float = 30.0,
        cancel: Callable[[], bool] | None = None,
    ) -> None:
        self.tls = tls
        self.socket = str(tls) if tls is not None else str(socket)
        self.export = export
        self.disk = disk or export or self.socket
        self.dirty_context = dirty_context
        self._depth = max(1, depth)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._cancel = cancel
        self._handles: list[Any] = []
        self._rr = 0
        self._broken: str | None = None
        try:
            for i in range(max(1, connections)):
                self._handles.append(self._connect(meta=(i == 0)))
            h = self._handles[0]
            self.size: int = int(h.get_size())
            self._has_alloc = bool(h.can_meta_context(BASE_ALLOCATION))
            self._has_dirty = dirty_context is not None and bool(h.can_meta_context(dirty_context))
            max_block = 0
            with contextlib.suppress(nbd.Error):
                max_block = int(h.get_block_size(nbd.SIZE_MAXIMUM))
        except TimeoutError as exc:
            self.close()
            raise NbdConnectTimeout(
                str(exc),
                disk=self.disk,
                offset=0,
                address=self.socket,
                seconds=f"{connect_timeout:g}",
            ) from None
        except BaseException as exc:
            self.close()
            if not isinstance(exc, nbd.Error):
                raise
            said = f"cannot connect to export {export!r} at {self.socket}: {_msg(exc)}"
            if tls is not None and any(w in said.lower() for w in _TLS_WORDS):
                raise PullTlsFailed(
                    said,
                    disk=self.disk,
                    offset=0,
                    address=str(tls),
                    host=tls.address,
                    certificates=tls.certificates,
                ) from None
            raise NbdReadFailed(said, disk=self.disk, offset=0) from None
        limit = min(MAX_REQUEST, max_block) if max_block > 0 else MAX_REQUEST
        self._piece = max(4096, min(piece, limit))
        if dirty_context is not None and not self._has_dirty:
            self.close()
            raise NbdReadFailed(
                f"the export offers no meta context {dirty_context}", disk=self.disk, offset=0
            )

    # --- connection ------------------------------------------------------------------------

    def _connect(self, meta: bool) -> Any:
        h = nbd.NBD()
        h.set_handle_name(f"vmvault-{self.disk}")
        h.set_export_name(self.export)
        if meta:
            h.add_meta_context(BASE_ALLOCATION)
            if self.dirty_context is not None:
                h.add_meta_context(self.dirty_context)
        if self.tls is None:
            h.connect_unix(self.socket)
            return h
        h.set_tls(nbd.TLS_REQUIRE)  # never a plain-text fallback
        h.set_tls_certificates(self.tls.certificates)
        h.set_tls_verify_peer(True)
        self._handles.append(h)  # closed with the others if the connection fails
        deadline = time.monotonic() + self._connect_timeout
        h.aio_connect_tcp(self.tls.address, str(self.tls.port))
        while h.aio_is_connecting():
            left = deadline - time.monotonic()
            if left <= 0:
                state = str(h.connection_state()).split(":")[0]
                raise TimeoutError(f"the connection stalled in {state}")
            if self._cancel is not None and self._cancel():
                raise Cancelled(operation="the backup")
            h.poll(max(1, int(min(left, 1.0) * 1000)))  # raises nbd.Error when it failed
        self._handles.pop()
        if not h.aio_is_ready():
            raise nbd.Error("the NBD connection ended before it was ready", 0)
        return h

    @property
    def has_dirty_bitmap(self) -> bool:
        """True when the export offers the dirty bitmap (an incremental export)."""
        return self._has_dirty

    def close(self) -> None:
        """Disconnect; pending requests are abandoned (libnbd never touches their buffers again)."""
        handles, self._handles = self._handles, []
        for h in handles:
            try:
                if not h.aio_is_closed() and not h.aio_is_dead():
                    h.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
            except nbd.Error:
                pass
        # dropping the last reference closes the handle (nbd_close)
        del handles

    def __enter__(self) -> NbdSource:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self, offset: int) -> None:
        if self._broken is not None:
            raise NbdReadFailed(
                f"the source was closed after an earlier failure ({self._broken})",
                disk=self.disk,
                offset=offset,
            )
        if not self._handles:
            raise NbdReadFailed("the source is closed", disk=self.disk, offset=offset)

    # --- allocation and dirty maps ---------------------------------------------------------

    def _block_status(self, context: str) -> Iterator[tuple[int, int, int]]:
        """(offset, length, flags) of ``context`` over the whole export, in order."""
        self._check_open(0)
        h = self._handles[0]
        pos = 0
        while pos < self.size:
            span = min(self.size - pos, BLOCK_STATUS_SPAN)
            entries: list[int] = []

            def callback(
                ctx: str,
                offset: int,
                ents: list[int],
                err: Any,
                _at: int = pos,
                _out: list[int] = entries,
            ) -> int:
                if ctx == context and offset == _at:
                    _out.extend(ents)
                return 0

            try:
                h.block_status(span, pos, callback)
            except nbd.Error as exc:
                raise NbdReadFailed(
                    f"block status ({context}) failed: {_msg(exc)}", disk=self.disk, offset=pos
                ) from None
            end = pos + span
            cur = pos
            for i in range(0, len(entries) - 1, 2):
                length, flags = entries[i], entries[i + 1]
                length = min(length, end - cur)
                if length <= 0:
                    break
                yield cur, length, flags
                cur += length
            if cur == pos:
                raise NbdReadFailed(
                    f"the server returned no extent for {context}", disk=self.disk, offset=pos
                )
            pos = cur

    def extents(self) -> Iterator[Extent]:
        """``(offset, length, is_data)`` runs covering ``[0, size)``; ``is_data=False`` reads
        as zeros (``base:allocation`` says NBD_STATE_ZERO)."""
        if not self._has_alloc:
            if self.size:
                yield (0, self.size, True)
            return
        run_off, run_len, run_data = 0, 0, True
        for off, length, flags in self._block_status(BASE_ALLOCATION):
            data = not (flags & nbd.STATE_ZERO)
            if run_len and data == run_data:
                run_len += length
                continue
            if run_len:
                yield (run_off, run_len, run_data)
            run_off, run_len, run_data = off, length, data
        if run_len:
            yield (run_off, run_len, run_data)

    def dirty_extents(self) -> list[tuple[int, int]]:
        """``(offset, length)`` runs the dirty bitmap marks as changed since the checkpoint.

        Without a dirty bitmap (a full export, e.g. a raw disk or a disk the checkpoint does not
        cover, in an otherwise incremental backup) the answer is the whole disk, which is
        always correct: everything may have changed.
        """
        if not self._has_dirty or self.dirty_context is None:
            return [(0, self.size)] if self.size else []
        out: list[tuple[int, int]] = []
        for off, length, flags in self._block_status(self.dirty_context):
            if not flags & 1:
                continue
            if out and out[-1][0] + out[-1][1] == off:
                out[-1] = (out[-1][0], out[-1][1] + length)
            else:
                out.append((off, length))
        return out

    # --- reading ---------------------------------------------------------------------------

    def pread_into(self, buf: memoryview, offset: int) -> None:
        """Fill all of ``buf`` with the bytes at ``offset`` (zero copy, requests in flight)."""
        self._check_open(offset)
        mv = memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        n = len(mv)
        if n == 0:
            return
        if offset < 0 or offset + n > self.size:
            raise NbdReadFailed(
                f"read of {n} bytes is outside the disk (size {self.size})",
                disk=self.disk,
                offset=offset,
            )
        handles = self._handles
        pending: deque[tuple[Any, int, Any, int]] = deque()
        pos = 0
        step = self._piece
        try:
            while pos < n or pending:
                while pos < n and len(pending) < self._depth:
                    length = min(step, n - pos)
                    h = handles[self._rr]
                    self._rr = (self._rr + 1) % len(handles)
                    view = mv[pos : pos + length]
                    cookie = h.aio_pread(view, offset + pos)
                    pending.append((h, cookie, view, offset + pos))
                    pos += length
                h, cookie, _nbuf, at = pending[0]
                waited_since = time.monotonic()
                while not h.aio_command_completed(cookie):
                    if h.poll(1000) == 0 and time.monotonic() - waited_since > self._timeout:
                        raise TimeoutError(f"no reply within {self._timeout:g}s")
                pending.popleft()
        except (nbd.Error, TimeoutError) as exc:
            at = pending[0][3] if pending else offset
            self._broken = _msg(exc)
            pending.clear()
            self.close()  # in-flight requests must never land in a buffer we gave back
            raise NbdReadFailed(self._broken, disk=self.disk, offset=at) from None
        except BaseException:
            self._broken = "interrupted"
            pending.clear()
            self.close()
            raise
