"""Vault locks (``<vault>/locks/``), all ``flock(2)`` based so a crashed process holds nothing.

* ``vault.lock`` – **shared** by readers (restore, verify) for their whole run and by writers
  around each "does this chunk exist? then touch it" step (microseconds); **exclusive** by
  garbage collection during its sweep only.  So a sweep never deletes a chunk that a backup
  has just decided to reuse, and never runs under a restore.
* ``gc.lock`` – exclusive, non-blocking: one garbage collection at a time.
* ``writers/<name>.<pid>.<random>`` – one file per running backup, holding its start time,
  kept locked (exclusive) by the writer while it runs.  Garbage collection never deletes a
  chunk modified after the oldest live writer started (see :mod:`vmvault.dataplane.gc`).  A
  file that nobody holds locked is a dead writer's leftover and is removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmvault.domain.errors import VaultLocked

VAULT_LOCK = "vault.lock"
GC_LOCK = "gc.lock"
WRITERS = "writers"
#: How long a reader or writer waits for a garbage-collection sweep before ``VAULT_LOCKED``.
DEFAULT_WAIT = 600.0
_POLL = 0.02
_STAGING_STALE = 60.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _flock(fd: int, op: int, timeout: float | None) -> bool:
    """flock with a timeout (None: wait forever, 0: try once)."""
    if timeout is None:
        fcntl.flock(fd, op)
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)


@contextmanager
def locked(path: Path, *, exclusive: bool, timeout: float | None, holder: str) -> Iterator[None]:
    """Hold ``path`` locked (each call uses its own descriptor, so it is thread-safe).

    Raises :class:`VaultLocked` naming ``holder`` (who we are waiting for) on timeout.
    """
    try:  # read-only is enough for flock, and works on a read-only mount
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout):
            raise VaultLocked(path=str(path.parent.parent), holder=holder)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class WriterInfo:
    name: str
    pid: int
    started_at: float  # time.time() of the registration
    path: Path


class WriterRegistry:
    """The running backups of a vault (``locks/writers/``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def register(self, name: str) -> Iterator[WriterInfo]:
        """Hold a registration for the duration of the ``with`` block.

        The file is created under a dot name, locked and filled, and only then renamed into
        place: a garbage collection never sees a registration that is not yet locked.
        """
        started = time.time()
        safe = _SAFE.sub("_", name)[:80] or "writer"
        path = self.directory / f"{safe}.{os.getpid()}.{secrets.token_hex(4)}"
        staging = path.with_name("." + path.name)
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = {"name": name, "pid": os.getpid(), "started_at": started}
            os.write(fd, json.dumps(doc).encode())
            os.rename(staging, path)
            yield WriterInfo(name, os.getpid(), started, path)
        finally:
            path.unlink(missing_ok=True)
            staging.unlink(missing_ok=True)
            os.close(fd)

    def live(self) -> list[WriterInfo]:
        """The writers still running; removes the files of dead ones."""
        found: list[WriterInfo] = []
        for entry in sorted(os.scandir(self.directory), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith("."):  # being registered, or a crash in that instant
                self._drop_stale_staging(path)
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # ended meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # held: a live writer
                    found.append(self._info(path, fd))
                else:  # nobody holds it: its process died
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return found

    @staticmethod
    def _drop_stale_staging(path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            if time.time() - os.fstat(fd).st_mtime > _STAGING_STALE:
                path.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # its writer holds it: being registered right now
        finally:
            os.close(fd)

    @staticmethod
    def _info(path: Path, fd: int) -> WriterInfo:
        try:
            doc = json.loads(os.pread(fd, 4096, 0))
            return WriterInfo(str(doc["name"]), int(doc["pid"]), float(doc["started_at"]), path)
        except (ValueError, KeyError, TypeError):
            # Unreadable (should not happen: it is filled before it is renamed into place):
            # its change time is later than its start, which is what the cutoff needs.
            return WriterInfo(path.name, 0, os.fstat(fd).st_mtime - 60.0, path)
