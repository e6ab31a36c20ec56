"""The ``HostFiles`` and ``DiskWriter`` ports in memory, for unit tests of the services.

:class:`MemoryFiles` holds a host's files (bytes), directories and symlinks, and writes a
point's disk image into memory as the dataplane would write it to a file: through a partial
file ``.<name>.tmp.<pid>.<hex>`` renamed onto the target, each chunk read (and verified) from
the real vault.  ``fault(op, paths)`` is called before every change and may raise: an
``OSError`` to inject a failure, or a ``BaseException`` that stands for the process being
killed (then nothing is undone: a partial file stays, as after a real kill).
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmvault.domain.errors import Cancelled
from vmvault.domain.restore import FreeSpace

Fault = Callable[[str, tuple[Path, ...]], None]


@dataclass
class MemoryImage:
    """What writing an image in memory reports (the ``WrittenImage`` of the port)."""

    bytes_written: int
    chunks_written: int
    chunks_zero: int
    seconds: float


class MemoryFiles:
    """A host's file system in memory (see ``HostFiles`` in services/ports/)."""

    def __init__(self, free: int = 1 << 40, pid: int | None = None) -> None:
        self.files: dict[Path, bytes] = {}
        self.links: dict[Path, Path] = {}
        self.dirs: set[Path] = {Path("/")}
        self.free = free  # of every file system
        self.pid = os.getpid() if pid is None else pid  # of the writer (partial file names)
        self.fault: Fault | None = None

    # --- helpers for tests ---------------------------------------------------------------------

    def write(self, path: Path, data: bytes) -> None:
        """Put a file (and its directories) in place, as if it had always been there."""
        self._add_dirs(path.parent)
        self.files[path] = data

    def add_dir(self, path: Path) -> None:
        """A directory (and its parents) that exists before the test."""
        self._add_dirs(path)

    def read(self, path: Path) -> bytes:
        return self.files[self.links.get(path, path)]

    def listing(self) -> set[Path]:
        """Every file and symlink."""
        return set(self.files) | set(self.links)

    # --- the port ------------------------------------------------------------------------------

    def exists(self, path: Path) -> bool:
        return path in self.files or path in self.links or path in self.dirs

    def free_space(self, path: Path) -> FreeSpace:
        probe = path
        while probe not in self.dirs:
            probe = probe.parent
        return FreeSpace(1, self.free, probe)

    def make_dirs(self, path: Path) -> list[Path]:
        self._change("make_dirs", path)
        return self._add_dirs(path)

    def remove_dir(self, path: Path) -> bool:
        if path not in self.dirs or any(p.parent == path for p in self._all()):
            return False
        self._change("remove_dir", path)
        self.dirs.discard(path)
        return True

    def rename(self, src: Path, dst: Path) -> None:
        self._change("rename", src, dst)
        self._need_dir(dst.parent)
        if src.parent != dst.parent:
            raise OSError(errno.EXDEV, "not within one directory", str(src))
        if src in self.files:
            self.links.pop(dst, None)
            self.files[dst] = self.files.pop(src)
        elif src in self.links:
            self.files.pop(dst, None)
            self.links[dst] = self.links.pop(src)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(src))

    def symlink(self, link: Path, target: Path) -> None:
        self._change("symlink", link)
        self._need_dir(link.parent)
        if self.exists(link):
            raise FileExistsError(errno.EEXIST, "exists", str(link))
        self.links[link] = target

    def copy(self, src: Path, dst: Path) -> None:
        self._change("copy", src, dst)
        self._need_dir(dst.parent)
        if self.links.get(src, src) not in self.files:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(src))
        self.files[dst] = self.read(src)

    def remove(self, path: Path) -> bool:
        if path in self.dirs:
            raise IsADirectoryError(errno.EISDIR, "a directory", str(path))
        if path not in self.files and path not in self.links:
            return False
        self._change("remove", path)
        self.files.pop(path, None)
        self.links.pop(path, None)
        return True

    def names(self, directory: Path, prefix: str) -> list[Path]:
        return sorted(p for p in self._all() if p.parent == directory and p.name.startswith(prefix))

    # --- the DiskWriter port -------------------------------------------------------------------

    def write_disk(
        self,
        store: Any,
        index: Any,
        target: Path,
        *,
        fmt: str,
        workers: int,
        overwrite: bool,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> MemoryImage:
        """Write the disk of ``index`` (chunks read from the vault ``store``) at ``target``."""
        t0 = time.monotonic()
        self._need_dir(target.parent)
        if self.exists(target) and not overwrite:
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        partial = target.with_name(f".{target.name}.tmp.{self.pid}.{secrets.token_hex(4)}")
        self._change("write_disk", partial)
        self.files[partial] = b""
        data = bytearray()
        written = chunks = zero = 0
        try:
            for i, cid in enumerate(index.ids):
                if cancel is not None and cancel():
                    raise Cancelled(operation=f"restore of {target}")
                length = index.chunk_length(i)
                if cid == bytes(len(cid)):  # the zero chunk: a hole
                    data += bytes(length)
                    zero += 1
                else:
                    data += store.get_chunk(cid)[:length]
                    written += length
                    chunks += 1
                self._change("write_chunk", partial)
                self.files[partial] = bytes(data)
                if progress is not None:
                    progress(written, written)
            self._change("rename", partial, target)
            self.files[target] = self.files.pop(partial)
        except Exception:  # a failure removes the partial file; a kill (BaseException) not
            self.files.pop(partial, None)
            raise
        return MemoryImage(written, chunks, zero, time.monotonic() - t0)

    # --- inside --------------------------------------------------------------------------------

    def _change(self, op: str, *paths: Path) -> None:
        if self.fault is not None:
            self.fault(op, paths)

    def _need_dir(self, path: Path) -> None:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))

    def _add_dirs(self, path: Path) -> list[Path]:
        missing = []
        probe = path
        while probe not in self.dirs:
            missing.append(probe)
            probe = probe.parent
        made = list(reversed(missing))
        self.dirs.update(made)
        return made

    def _all(self) -> set[Path]:
        return set(self.files) | set(self.links) | self.dirs
