"""``vmvault serve``'s local socket, ``$VMVAULT_HOME/api.sock``: where this host's CLI has
its listings and dashboard answered by the running server instead of opening the catalog
itself (docs/server.md, "The local socket"; what a request there may do: api/local_socket.py).

Why: a CLI command that opens the catalog imports SQLAlchemy and builds the composition root
before it reads a row (0.6–0.9 s on these machines, docs/deployment.md "The CLI's start"); the
server has both ready, so asking it costs an HTTP round trip on a unix socket.

Bound by :func:`bind` at step 0 of the start-up (jobs/server.py), after the API's port:

* none with ``VMVAULT_LOCAL_SOCKET=0``, nor when the path is longer than a unix socket's
  address (107 bytes): logged; the CLI then reads the catalog itself;
* the path is owned through an exclusive ``flock`` on ``api.sock.lock`` beside it, held for
  the server's life (the kernel drops it when the process dies, however it dies): when another
  ``vmvault serve`` of this home holds it, none (logged) — the socket is not taken from it;
  with the lock, a socket file left there is a dead server's and is removed (any other file
  there is left alone: none, logged);
* created with umask 0177: mode 0600 from its first moment, so no other user ever connects;
* bound at step 0, but **listening only once it is served** (:meth:`Listener.start`, after
  recovery): until then a CLI's connection is refused at once, and the CLI reads the catalog
  itself instead of waiting in the backlog for a server still starting;
* removed by :meth:`Bound.close` whenever ``serve`` ends — a refused or failed start-up too —,
  when the file is still the one this server bound (its device and inode).

Served by :class:`Listener`: a second uvicorn server, without TLS, on a thread of its own,
with the API's app (the same services) wrapped by :class:`~vmvault.api.local_socket.LocalSocket`;
stopped with the API, before its jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.config import Settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

log = logging.getLogger("vmvault.serve")

#: The longest path of a unix socket's address (``sun_path`` is 108 bytes with its NUL).
MAX_PATH = 107


@dataclass
class Bound:
    """The local socket this server bound (not listening yet), and the lock that owns it."""

    path: Path
    sock: socket.socket
    lock: int  # the descriptor of the flock on api.sock.lock
    identity: tuple[int, int]  # the socket file's device and inode

    def close(self) -> None:
        """Close the socket and remove its file if it is still ours; then release the lock."""
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            found = self.path.lstat()
            if (found.st_dev, found.st_ino) == self.identity:
                self.path.unlink()
        os.close(self.lock)


def bind(settings: Settings) -> Bound | None:
    """The local socket, bound (listening from :meth:`Listener.start`); None (logged why) when
    there is none."""
    path = settings.api_socket
    if not settings.local_socket:
        return None
    if len(os.fsencode(path)) > MAX_PATH:
        log.warning(
            "no local socket: %s is longer than a unix socket's %d bytes; this host's CLI "
            "reads the catalog itself",
            path,
            MAX_PATH,
        )
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(
        path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        log.warning("no local socket: another vmvault serve of this home holds %s", path)
        return None
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISSOCK(mode):
        os.close(lock)
        log.warning("no local socket: %s exists and is not a socket; left alone", path)
        return None
    if mode is not None:
        path.unlink()  # a dead server's: no live one holds the lock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # step 0: no other thread creates files yet
    try:
        sock.bind(str(path))
        found = path.lstat()
    except OSError as exc:
        sock.close()
        os.close(lock)
        log.warning("no local socket on %s: %s", path, exc.strerror or exc)
        return None
    finally:
        os.umask(old)
    return Bound(path, sock, lock, (found.st_dev, found.st_ino))


class Listener:
    """The local socket served with ``app`` on a thread of its own until :meth:`stop`."""

    def __init__(self, bound: Bound, app: ASGIApp) -> None:
        import uvicorn

        self.bound = bound
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server: uvicorn.Server = uvicorn.Server(config)
        # not the main thread: uvicorn leaves the signals to the API's server
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [bound.sock]},
            name="local-socket",
            daemon=True,
        )

    def start(self) -> None:
        self.bound.sock.listen(128)
        self.thread.start()
        log.info("local socket %s answers this host's CLI's reads", self.bound.path)

    def stop(self) -> None:
        """Stop serving (the file stays until :meth:`Bound.close`)."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
