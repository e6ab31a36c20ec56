"""Batches of the local backend (:class:`LocalBatch`): temporary files written with O_DIRECT,
made durable and linked into place together.

Each staged object goes to ``.<name>.tmp.<pid>.<random>`` next to its final name, written
with O_DIRECT where the file system takes it (:mod:`vmvault.storage.fsutil`) and without
fsync.  ``commit`` fsyncs them all in 8 threads (the file system groups them into few journal
commits), links each to its name (put-if-absent: an existing object is left as it is, and touched
inside the batch's guard — linked again if it vanished meanwhile) and fsyncs each touched
directory once.  A crash leaves temporary files only, which
``LocalBackend.sweep_leftovers`` removes once old enough.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmvault.storage import fsutil
from vmvault.storage.backend import Data, Guard, parts_of, put_or_touch

if TYPE_CHECKING:
    from vmvault.storage.local import LocalBackend

_SYNC_THREADS = 8


class LocalBatch:
    """Temporary files written with O_DIRECT, made durable and linked into place together."""

    def __init__(self, backend: LocalBackend, guard: Guard | None = None) -> None:
        self._backend = backend
        self._guard = guard or nullcontext
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

    def add_buffer(
        self, key: str, buf: mmap.mmap, size: int, *, release: Callable[[], None] | None = None
    ) -> int:
        try:
            self._stage(key, lambda t: fsutil.write_buffer_direct(t, buf, size))
        finally:
            if release is not None:
                release()  # written (O_DIRECT) before this returns: nothing is kept
        return size

    def __len__(self) -> int:
        return len(self._pending)

    def commit(self) -> frozenset[str]:
        with self._mu:
            pending, self._pending = self._pending, {}
        if not pending:
            return frozenset()
        dirs = {final.parent for _, final in pending.values()}
        present: set[str] = set()
        try:
            with ThreadPoolExecutor(_SYNC_THREADS) as pool:
                list(pool.map(fsutil.fsync_path, [tmp for tmp, _ in pending.values()]))
                for key, (tmp, final) in pending.items():
                    if not self._place(key, tmp, final):
                        present.add(key)
                list(pool.map(fsutil.fsync_dir, dirs))
        except OSError as exc:
            self._discard(pending)
            raise self._backend._error(exc, None) from exc
        except BaseException:
            self._discard(pending)
            raise
        return frozenset(present)

    def _place(self, key: str, tmp: Path, final: Path) -> bool:
        """Link ``tmp`` as ``final``; False when ``final`` existed (then touched)."""

        def link() -> bool:
            return self._backend._link_into_place(tmp, final, keep=True)

        created = put_or_touch(link, lambda: self._backend.touch(key), self._guard)
        if not created:  # kept by the link for another try: not needed any more
            tmp.unlink(missing_ok=True)
        return created

    def abort(self) -> None:
        with self._mu:
            pending, self._pending = self._pending, {}
        self._discard(pending)

    @staticmethod
    def _discard(pending: dict[str, tuple[Path, Path]]) -> None:
        for tmp, _ in pending.values():
            tmp.unlink(missing_ok=True)
