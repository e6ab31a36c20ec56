"""Locks and the writer registry of the local backend: ``flock(2)`` on files in ``<root>/locks/``.

``flock`` locks belong to an open file description and vanish with the process that holds
them, which gives the contract's "a hold ends when its holder dies" for free.

* Lock ``NAME`` is the file ``locks/NAME.lock`` (created on first use, never removed): shared
  hold = ``LOCK_SH``, exclusive = ``LOCK_EX``, each hold on its own descriptor (so holds are
  independent, even within a thread).  A wait polls ``LOCK_NB`` every 20 ms until the timeout.
* A writer registration is the file ``locks/writers/<name>.<pid>.<random>`` holding
  ``{"name", "pid", "started_at"}``, locked exclusive by its writer while it runs.  It is
  created under a dot name, locked and filled, and only then renamed into place, so
  :meth:`FileLocks.live_writers` never sees a registration that is not yet locked.  A file
  that nobody holds locked belongs to a dead process and is removed.
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
from pathlib import Path

from vmvault.storage.backend import WriterInfo
from vmvault.storage.errors import LockTimeout

WRITERS = "writers"
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


class FileLocks:
    """The locks and writer registrations under one ``locks/`` directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writers = directory / WRITERS

    @contextmanager
    def lock(self, name: str, *, exclusive: bool, timeout: float | None) -> Iterator[None]:
        path = self.directory / f"{_SAFE.sub('_', name)}.lock"
        try:  # read-only is enough for flock, and works on a read-only mount
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout):
                raise LockTimeout(f"lock {name} is held", key=name, location=str(path))
            yield
        finally:
            os.close(fd)  # releases the hold

    @contextmanager
    def register_writer(self, name: str) -> Iterator[WriterInfo]:
        started = time.time()
        safe = _SAFE.sub("_", name)[:80] or "writer"
        ident = f"{safe}.{os.getpid()}.{secrets.token_hex(4)}"
        path = self.writers / ident
        staging = path.with_name("." + path.name)
        self.writers.mkdir(parents=True, exist_ok=True)
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = {"name": name, "pid": os.getpid(), "started_at": started}
            os.write(fd, json.dumps(doc).encode())
            os.rename(staging, path)
            yield WriterInfo(name, os.getpid(), started, ident)
        finally:
            path.unlink(missing_ok=True)
            staging.unlink(missing_ok=True)
            os.close(fd)

    def live_writers(self) -> list[WriterInfo]:
        try:
            entries = sorted(os.scandir(self.writers), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        found: list[WriterInfo] = []
        for entry in entries:
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
                    found.append(self._info(entry.name, fd))
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
    def _info(ident: str, fd: int) -> WriterInfo:
        try:
            doc = json.loads(os.pread(fd, 4096, 0))
            return WriterInfo(str(doc["name"]), int(doc["pid"]), float(doc["started_at"]), ident)
        except (ValueError, KeyError, TypeError):
            # Unreadable (should not happen: it is filled before it is renamed into place):
            # its change time is later than its start, which is what the cutoff needs.
            return WriterInfo(ident, 0, os.fstat(fd).st_mtime - 60.0, ident)
