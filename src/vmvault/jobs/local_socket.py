"""``vmvault serve``'s local socket, ``$VMVAULT_HOME/api.sock``: where this host's CLI has
its listings and dashboard answered by the running server instead of opening the catalog
itself (docs/server.md, "The local socket"; what a request there may do: api/local_socket.py).

Why: a CLI command that opens the catalog imports SQLAlchemy and builds the composition root
before it reads a row (0.6–0.9 s on these machines, docs/deployment.md "The CLI's start"); the
server has both ready, so asking it costs an HTTP round trip on a unix socket.

Bound by :func:`bind` at step 0 of the start-up (jobs/server.py), after the API's port:

* none with ``VMVAULT_LOCAL_SOCKET=0``, nor when the path is longer than a unix socket's
  address (107 bytes): logged; the CLI then reads the catalog itself;
* none when a server answers there already (another ``vmvault serve`` on this home): it is
  not taken from it (logged);
* a socket file nobody answers on (its server was killed) is removed and bound anew; any other
  file at the path is left alone (none, logged);
* created with umask 077: mode 0600 from its first moment, so no other user ever connects.

Served by :class:`Listener`: a second uvicorn server, without TLS, on a thread of its own,
with the API's app (the same services) wrapped by :class:`~vmvault.api.local_socket.LocalSocket`;
stopped with the API, and its file removed when it is still the one this server bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.config import Settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

log = logging.getLogger("vmvault.serve")

#: The longest path of a unix socket's address (``sun_path`` is 108 bytes with its NUL).
MAX_PATH = 107


def bind(settings: Settings) -> socket.socket | None:
    """The local socket, bound and listening; None (logged why) when there is none."""
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
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            log.warning("no local socket: %s exists and is not a socket; left alone", path)
            return None
        if _answers(path):
            log.warning("no local socket: another vmvault serve answers on %s", path)
            return None
        path.unlink(missing_ok=True)  # its server is gone (killed): nobody answers
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # step 0: no other thread creates files yet
    try:
        sock.bind(str(path))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        log.warning("no local socket on %s: %s", path, exc.strerror or exc)
        return None
    finally:
        os.umask(old)
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Listener:
    """The local socket served with ``app`` on a thread of its own until :meth:`stop`."""

    def __init__(self, sock: socket.socket, app: ASGIApp) -> None:
        import uvicorn

        self.sock = sock
        self.path = Path(sock.getsockname())
        self.inode = self.path.stat().st_ino
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server: uvicorn.Server = uvicorn.Server(config)
        # not the main thread: uvicorn leaves the signals to the API's server
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="local-socket", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        log.info("local socket %s answers this host's CLI's reads", self.path)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self.inode:  # still ours, not a later server's
                self.path.unlink()
