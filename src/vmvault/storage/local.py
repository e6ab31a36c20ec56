"""The local-directory backend: :class:`LocalBackend`, and the vault directory's marker file.

Object ``a/b/c`` is the file ``<root>/a/b/c``; ``create_layout`` makes the directories a
vault uses (``chunks/00`` … ``chunks/ff``, ``indexes``, ``manifests``), and any other is made
when a key first needs it; ``delete_prefix`` removes the directory of the prefix.  How each operation of the contract (:mod:`vmvault.storage.backend`) is kept:

* **put** (put-if-absent): write a temporary file ``.<name>.tmp.<pid>.<random>`` next to the
  final name, fsync it, ``link(2)`` it to the final name — which fails with ``EEXIST`` if
  the name exists, so of two racing puts exactly one wins — unlink the temporary, fsync the
  directory.  (A file system without hard links gets "rename if absent", which two racing
  puts of *different* content could both pass; chunk objects are content-addressed.)
* **publish**: temporary file, fsync, ``rename(2)`` over the final name, fsync the directory.
* **batches** (:mod:`vmvault.storage.local_batch`): each object goes to its temporary file
  written with **O_DIRECT** where the file system takes it (:mod:`vmvault.storage.fsutil`),
  without fsync; ``commit`` fsyncs them all in 8 threads (the file system groups them into
  few journal commits), links them into place and fsyncs each touched directory once.  A
  crash leaves temporary files only.
* **list** skips dot-names (temporaries, registrations being made) and the ``locks/``
  directory; **touch** is ``utime``; **delete** unlinks (and fsyncs the directory unless
  ``sync=False``); **sweep_leftovers** removes old temporary files.
* **locks and writers**: ``flock(2)`` files under ``<root>/locks/`` (:mod:`vmvault.storage.flock`).
* Errors: ``ENOENT`` → :class:`ObjectMissing`, ``ENOSPC``/``EDQUOT`` → :class:`StorageFull`,
  ``EAGAIN``/``ETIMEDOUT``/``EBUSY``/``ESTALE``/connection errors → transient, anything else
  → :class:`PermanentStorageError`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from vmvault.storage import fsutil, local_hold
from vmvault.storage.backend import (
    RESERVED,
    Data,
    Guard,
    ObjectHold,
    ObjectInfo,
    Usage,
    WriterInfo,
    check_key,
    parts_of,
    usage_of,
)
from vmvault.storage.errors import (
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    PermanentStorageError,
    StorageError,
    StorageFull,
    TransientStorageError,
)
from vmvault.storage.flock import FileLocks
from vmvault.storage.local_batch import LocalBatch

#: Written at the root of every vault directory; the data-path format builds on it.
VAULT_MARKER = "vmvault-vault.json"
VAULT_FORMAT = 1
_FULL = {errno.ENOSPC, errno.EDQUOT}
_TRANSIENT = {
    errno.EAGAIN,
    errno.ETIMEDOUT,
    errno.EBUSY,
    errno.ESTALE,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
}
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


class VaultDirectoryInUse(Exception):
    """The directory exists and holds something."""


def is_unusable(path: Path) -> bool:
    """True when ``path`` exists and is not an empty directory."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def initialise(path: Path, meta: dict[str, Any]) -> None:
    """Create the vault directory with its marker file (format version + identity)."""
    if is_unusable(path):
        raise VaultDirectoryInUse(str(path))
    path.mkdir(parents=True, exist_ok=True)
    doc = {"format": VAULT_FORMAT, **meta}
    fsutil.write_atomic(
        path / VAULT_MARKER, [(json.dumps(doc, indent=2) + "\n").encode()], vault=path
    )


class LocalBackend:
    """A vault's objects as files under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.remote = False
        self.holds: ObjectHold | None = local_hold.LocalHold(self)
        self._locks = FileLocks(self.root / RESERVED)

    # --- paths and errors --------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """The file of ``key`` (local only: tests and tools that look at the files)."""
        return self.root / check_key(key)

    def _error(self, exc: OSError, key: str | None) -> StorageError:
        where = self.location
        if exc.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
            return ObjectMissing(f"no object {key}", key=key, location=where)
        if exc.errno in _FULL:
            return StorageFull(str(exc), key=key, location=where)
        if exc.errno in _TRANSIENT:
            return TransientStorageError(str(exc), key=key, location=where)
        return PermanentStorageError(str(exc), key=key, location=where)

    def _ensure_dir(self, directory: Path) -> None:
        """Make ``directory`` (and its missing parents) durably."""
        missing: list[Path] = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            if d == d.parent:
                break
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            fsutil.fsync_dir(d.parent)

    def _write_tmp(self, final: Path, write: Any) -> Path:
        """Run ``write(tmp)`` for a new temporary next to ``final`` (making its directory)."""
        for attempt in range(3):
            tmp = fsutil.tmp_path(final)
            try:
                write(tmp)
                return tmp
            except FileNotFoundError:
                if attempt == 2:
                    raise
                self._ensure_dir(final.parent)  # first object there, or pruned meanwhile
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _link_into_place(tmp: Path, final: Path, *, keep: bool = False) -> bool:
        """Put-if-absent of ``tmp`` as ``final``; the temporary is gone afterwards (``keep``:
        it stays when ``final`` existed, for a caller that may link it again)."""
        try:
            os.link(tmp, final)
            created = True
        except FileExistsError:
            created = False
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                tmp.unlink(missing_ok=True)
                raise
            created = not final.exists()
            if created:
                os.rename(tmp, final)
                return True
        if not (keep and not created):
            tmp.unlink(missing_ok=True)
        return created

    # --- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Data) -> bool:
        final = self.path(key)
        parts = parts_of(data)
        try:
            tmp = self._write_tmp(final, lambda t: fsutil.write_parts(t, parts, sync=True))
            created = self._link_into_place(tmp, final)
            fsutil.fsync_dir(final.parent)
        except OSError as exc:
            raise self._error(exc, key) from exc
        return created

    def publish(self, key: str, data: Data) -> None:
        final = self.path(key)
        parts = parts_of(data)
        try:
            tmp = self._write_tmp(final, lambda t: fsutil.write_parts(t, parts, sync=True))
            try:
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsutil.fsync_dir(final.parent)
        except OSError as exc:
            raise self._error(exc, key) from exc

    def begin_batch(self, guard: Guard | None = None) -> LocalBatch:
        return LocalBatch(self, guard)

    def get(self, key: str) -> bytes:
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._error(exc, key) from exc
        try:
            size = os.fstat(fd).st_size
            parts = [os.pread(fd, size, 0)]
            done = len(parts[0])
            while done < size and (more := os.pread(fd, size - done, done)):
                parts.append(more)
                done += len(more)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        except OSError as exc:
            raise self._error(exc, key) from exc
        finally:
            os.close(fd)

    def get_into(self, key: str, buf: memoryview) -> int:
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._error(exc, key) from exc
        try:
            size = os.fstat(fd).st_size
            if size > len(buf):
                raise ObjectTooLarge(
                    f"{size} bytes for a buffer of {len(buf)}", key=key, location=self.location
                )
            done = 0
            while done < size:
                n = os.preadv(fd, [buf[done:size]], done)
                if n <= 0:
                    break
                done += n
            return done
        except OSError as exc:
            raise self._error(exc, key) from exc
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self.path(key))
        except OSError as exc:
            raise self._error(exc, key) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectMissing(f"no object {key}", key=key, location=self.location)
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self.path(key)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._error(exc, key) from exc

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        head, _, _ = prefix.rpartition("/")
        if head:
            check_key(head)
        try:
            yield from self._walk(head, prefix)
        except OSError as exc:
            raise self._error(exc, prefix) from exc

    def _walk(self, directory: str, prefix: str) -> Iterator[ObjectInfo]:
        base = f"{directory}/" if directory else ""
        try:
            it = os.scandir(self.root / directory if directory else self.root)
        except (FileNotFoundError, NotADirectoryError):
            return
        with it:
            entries = [e for e in it if not e.name.startswith(".")]
        for entry in entries:
            key = base + entry.name
            if not base and entry.name == RESERVED:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if prefix.startswith(key + "/") or (key + "/").startswith(prefix):
                        yield from self._walk(key, prefix)
                    continue
                if key.startswith(prefix):
                    st = entry.stat(follow_symlinks=False)
                    yield ObjectInfo(key, st.st_size, st.st_mtime)
            except FileNotFoundError:
                continue  # deleted meanwhile

    def delete(self, key: str, *, sync: bool = True) -> None:
        path = self.path(key)
        try:
            path.unlink()
            if sync:
                fsutil.fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, key) from exc

    def delete_prefix(self, prefix: str) -> int:
        head, _, rest = prefix.rpartition("/")
        if not head or rest:
            raise InvalidKey("a prefix to delete names a directory: 'a/b/'", key=prefix)
        removed = 0
        for info in list(self.list_objects(prefix)):
            self.delete(info.key, sync=False)
            removed += 1
        if "/" in head:  # remove the emptied directory tree, temporaries included
            shutil.rmtree(self.root / check_key(head), ignore_errors=True)
        return removed

    def touch(self, key: str) -> bool:
        path = self.path(key)
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except PermissionError as exc:  # a held chunk that a new point shares: still touched
            if not local_hold.is_immutable(path):
                raise self._error(exc, key) from exc
            local_hold.set_immutable(path, False)
            try:
                os.utime(path)
            finally:
                local_hold.set_immutable(path, True)
        except OSError as exc:
            raise self._error(exc, key) from exc
        return True

    def usage(self, prefix: str = "") -> Usage:
        return usage_of(self.list_objects(prefix))

    def sweep_leftovers(self, older_than: float, *, dry_run: bool = False) -> int:
        removed = 0
        for dirpath, dirs, filenames in os.walk(self.root):
            if dirpath == str(self.root) and RESERVED in dirs:
                dirs.remove(RESERVED)
            for name in filenames:
                if not fsutil.is_tmp_name(name):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path).st_mtime >= older_than:
                        continue
                    if not dry_run:
                        os.unlink(path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def now(self) -> float:
        return time.time()

    def create_layout(self, prefixes: Sequence[str]) -> None:
        try:
            for prefix in prefixes:
                self._ensure_dir(self.root / check_key(prefix.rstrip("/")))
            self._ensure_dir(self.root / RESERVED)
        except OSError as exc:
            raise self._error(exc, None) from exc

    # --- locks and writers -------------------------------------------------------------------

    def lock(
        self, name: str, *, exclusive: bool, timeout: float | None
    ) -> AbstractContextManager[None]:
        return self._locks.lock(name, exclusive=exclusive, timeout=timeout)

    def register_writer(self, name: str) -> AbstractContextManager[WriterInfo]:
        return self._locks.register_writer(name)

    def live_writers(self) -> list[WriterInfo]:
        return self._locks.live_writers()
