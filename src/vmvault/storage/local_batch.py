"""Batches of the local backend (:class:`LocalBatch`): temporary files written with O_DIRECT,
made durable and linked into place together.

Each staged object goes to ``.<name>.tmp.<pid>.<random>`` next to its final name, written
with O_DIRECT where the file system takes it (:mod:`vmvault.storage.fsutil`) and without
fsync.  ``commit`` fsyncs them all in 8 threads (the file system groups them into few journal
commits), links each to its name (put-if-absent: an existing object is left as it is) and
fsyncs each touched directory once.  A crash leaves temporary files only, which
``LocalBackend.sweep_leftovers`` removes once old enough.
"""

from __future__ import annotations

import mmap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmvault.storage import fsutil
from vmvault.storage.backend import Data, parts_of

if TYPE_CHECKING:
    from vmvault.storage.local import LocalBackend

_SYNC_THREADS = 8


class LocalBatch:
    """Temporary files written with O_DIRECT, made durable and linked into place together."""

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend
        self._mu = threading.Lock()
        self._pending: dict[str, tuple[Path, Path]] = {}  # key -> (temporary, final)

    def _stage(self, key: str, write: Any) -> None:
        final = self._backend.path(key)
        try:
            tmp = self._backend._write_tmp(final, write)
        except OSError as exc:
            raise self._backend._error(exc, key) from exc
        with self._mu:
            old = self._pending.pop(key, None)
            self._pending[key] = (tmp, final)
        if old is not None:
            old[0].unlink(missing_ok=True)

    def add(self, key: str, data: Data) -> int:
        parts = parts_of(data)
        size = sum(len(p) for p in parts)
        self._stage(key, lambda t: fsutil.write_parts_direct(t, parts))
        return size

    def add_buffer(self, key: str, buf: mmap.mmap, size: int) -> int:
        self._stage(key, lambda t: fsutil.write_buffer_direct(t, buf, size))
        return size

    def __len__(self) -> int:
        return len(self._pending)

    def commit(self) -> None:
        with self._mu:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        dirs = {final.parent for _, final in pending.values()}
        try:
            with ThreadPoolExecutor(_SYNC_THREADS) as pool:
                list(pool.map(fsutil.fsync_path, [tmp for tmp, _ in pending.values()]))
                for tmp, final in pending.values():
                    self._backend._link_into_place(tmp, final)
                list(pool.map(fsutil.fsync_dir, dirs))
        except OSError as exc:
            self._discard(pending)
            raise self._backend._error(exc, None) from exc
        except BaseException:
            self._discard(pending)
            raise

    def abort(self) -> None:
        with self._mu:
            pending, self._pending = self._pending, {}
        self._discard(pending)

    @staticmethod
    def _discard(pending: dict[str, tuple[Path, Path]]) -> None:
        for tmp, _ in pending.values():
            tmp.unlink(missing_ok=True)
