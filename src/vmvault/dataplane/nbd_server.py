"""A small NBD server (the fixed-newstyle protocol of the NBD spec) on a unix socket.

It serves named exports (:class:`BlockDevice`: a size, ``pread`` and, when writable,
``pwrite``) to any libnbd or QEMU client (``nbdcopy``, ``nbdfuse``, ``qemu-img``,
``qemu-nbd``, libvirt).  What it speaks (docs/export.md, "The NBD server"):

* handshake: ``NBDMAGIC IHAVEOPT`` with ``FIXED_NEWSTYLE | NO_ZEROES``; options
  ``EXPORT_NAME``, ``LIST``, ``INFO``, ``GO`` (answering ``INFO_EXPORT``) and ``ABORT``; any other option is answered ``ERR_UNSUP`` (so clients
  fall back to simple replies: no structured replies, no block status);
* transmission: ``READ`` (into the zero padding of a last partial sector too), ``WRITE``, ``FLUSH``, ``TRIM`` and ``WRITE_ZEROES`` (the last three
  on a writable export only), ``DISC``; simple replies; a request out of range gets
  ``EINVAL``, a write to a read-only export ``EPERM``, a read that fails ``EIO`` (the
  ``on_error`` callback hears why: a corrupt chunk, say).

One thread per connection serves its requests in order; ``CAN_MULTI_CONN`` is advertised
because every connection of an export shares one device object (and one overlay).  The
socket is created mode 0600 (root's clients only) and removed by :meth:`NbdServer.close`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from vmvault.domain.errors import InvalidInput

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
CLIENT_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_UNKNOWN = 2**31 + 1, 2**31 + 3, 2**31 + 6
INFO_EXPORT = 0

T_HAS_FLAGS, T_READ_ONLY, T_SEND_FLUSH, T_SEND_TRIM = 1, 2, 4, 32
T_SEND_WRITE_ZEROES, T_CAN_MULTI_CONN = 64, 256
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 6
EPERM, EIO, EINVAL, ENOTSUP = 1, 5, 22, 95

#: The largest request served (the spec's usual maximum payload).
MAX_REQUEST = 32 * 1024 * 1024
_REQUEST = struct.Struct(">IHHQQI")


class BlockDevice(Protocol):
    """What an export serves.  ``pread`` returns exactly ``length`` bytes or raises;
    ``pwrite`` is called only when ``writable``; both may be called from several threads."""

    size: int
    writable: bool

    def pread(self, length: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes, offset: int) -> None: ...


def _replaceable(path: Path) -> None:
    """Remove a stale socket file at ``path``; refuse a live socket or anything else."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidInput("it exists and is no socket", what=f"socket {path}")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise InvalidInput("a process listens on it (another export?)", what=f"socket {path}")


class _Closed(Exception):
    """The client went away (or asked to)."""


class NbdServer:
    """Serves ``exports`` (name → device; the first also answers the empty name) on the unix
    socket ``path`` from :meth:`start` until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        exports: Mapping[str, BlockDevice],
        on_error: Callable[[str], None] = lambda _: None,
    ) -> None:
        if not exports:
            raise ValueError("an NBD server needs an export")
        self.path = path
        self.exports = dict(exports)
        self.on_error = on_error
        self._sock: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._mu = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._bound: tuple[int, int] | None = None  # (device, inode) of the socket bound

    def start(self) -> None:
        """Listen (a stale socket file at ``path`` is replaced; a live one, or anything that
        is no socket, is refused: InvalidInput) and accept in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _replaceable(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        st = self.path.stat()
        self._bound = (st.st_dev, st.st_ino)
        sock.listen(16)
        self._sock = sock
        t = threading.Thread(target=self._accept, name="nbd-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        """Stop accepting, drop every connection, remove the socket file."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._mu:
            clients = list(self._clients)
        for c in clients:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):  # only the socket this server bound
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == self._bound:
                self.path.unlink()

    @property
    def connections(self) -> int:
        with self._mu:
            return len(self._clients)

    def _accept(self) -> None:
        while (sock := self._sock) is not None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self._mu:
                self._clients.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="nbd-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            device = self._handshake(conn)
            if device is not None:
                self._transmit(conn, device)
        except (_Closed, OSError):
            pass
        finally:
            with self._mu:
                self._clients.discard(conn)
            conn.close()

    # --- handshake ---------------------------------------------------------------------------

    def _handshake(self, conn: socket.socket) -> BlockDevice | None:
        conn.sendall(NBDMAGIC + struct.pack(">QH", IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv(conn, 4))
        while True:
            magic, opt, length = struct.unpack(">QII", _recv(conn, 16))
            if magic != IHAVEOPT or length > 65536:
                return None
            data = _recv(conn, length)
            if opt == OPT_EXPORT_NAME:
                device = self._device(data.decode("utf-8", "replace"))
                if device is None:
                    return None
                tail = b"" if client_flags & CLIENT_NO_ZEROES else bytes(124)
                conn.sendall(struct.pack(">QH", device.size, _flags(device)) + tail)
                return device
            if opt == OPT_ABORT:
                _reply(conn, opt, REP_ACK)
                return None
            if opt == OPT_LIST:
                for name in self.exports:
                    raw = name.encode()
                    _reply(conn, opt, REP_SERVER, struct.pack(">I", len(raw)) + raw)
                _reply(conn, opt, REP_ACK)
            elif opt in (OPT_INFO, OPT_GO):
                device = self._info(conn, opt, data)
                if device is not None and opt == OPT_GO:
                    return device
            else:
                _reply(conn, opt, REP_ERR_UNSUP)

    def _info(self, conn: socket.socket, opt: int, data: bytes) -> BlockDevice | None:
        if len(data) < 6:
            _reply(conn, opt, REP_ERR_INVALID)
            return None
        (n,) = struct.unpack(">I", data[:4])
        if len(data) < 4 + n + 2:
            _reply(conn, opt, REP_ERR_INVALID)
            return None
        device = self._device(data[4 : 4 + n].decode("utf-8", "replace"))
        if device is None:
            _reply(conn, opt, REP_ERR_UNKNOWN)
            return None
        _reply(conn, opt, REP_INFO, struct.pack(">HQH", INFO_EXPORT, device.size, _flags(device)))
        _reply(conn, opt, REP_ACK)
        return device

    def _device(self, name: str) -> BlockDevice | None:
        if name == "":
            return next(iter(self.exports.values()))
        return self.exports.get(name)

    # --- transmission ------------------------------------------------------------------------

    def _transmit(self, conn: socket.socket, device: BlockDevice) -> None:
        while True:
            magic, _, cmd, handle, offset, length = _REQUEST.unpack(_recv(conn, _REQUEST.size))
            if magic != REQUEST_MAGIC:
                return
            if cmd == CMD_DISC:
                return
            payload = _recv(conn, length) if cmd == CMD_WRITE else b""
            error, data = self._command(device, cmd, offset, length, payload)
            head = struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, error, handle)
            conn.sendall(head + data if error == 0 and data else head)

    def _command(
        self, device: BlockDevice, cmd: int, offset: int, length: int, payload: bytes
    ) -> tuple[int, bytes]:
        if cmd not in (CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES):
            return EINVAL, b""
        # a read may run into the last sector's padding (qemu rounds the size up to 512)
        limit = -(-device.size // 512) * 512 if cmd == CMD_READ else device.size
        if offset + length > limit or (cmd in (CMD_READ, CMD_WRITE) and length > MAX_REQUEST):
            return EINVAL, b""
        try:
            if cmd == CMD_READ:
                inside = max(0, min(length, device.size - offset))
                data = device.pread(inside, offset) if inside else b""
                return 0, data + bytes(length - inside)
            if not device.writable:
                return EPERM, b""
            if cmd == CMD_WRITE:
                device.pwrite(payload, offset)
            elif cmd in (CMD_TRIM, CMD_WRITE_ZEROES):
                for at in range(offset, offset + length, 1 << 20):
                    device.pwrite(bytes(min(1 << 20, offset + length - at)), at)
            return 0, b""
        except Exception as exc:  # a failed read is EIO for the client, a message for us
            self.on_error(f"{type(exc).__name__}: {exc}")
            return EIO, b""


def _flags(device: BlockDevice) -> int:
    flags = T_HAS_FLAGS | T_CAN_MULTI_CONN
    if device.writable:
        return flags | T_SEND_FLUSH | T_SEND_TRIM | T_SEND_WRITE_ZEROES
    return flags | T_READ_ONLY


def _reply(conn: socket.socket, opt: int, kind: int, data: bytes = b"") -> None:
    conn.sendall(struct.pack(">QIII", OPT_REPLY_MAGIC, opt, kind, len(data)) + data)


def _recv(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            raise _Closed
        buf += part
    return bytes(buf)
