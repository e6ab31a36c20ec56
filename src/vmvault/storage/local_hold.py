"""Holding a local vault's files: the Linux immutable attribute (``chattr +i``).

:class:`ImmutableFiles` is the local directory's :class:`~vmvault.storage.backend.ObjectHold`
(docs/immutability.md, "Local directory").  A file with ``FS_IMMUTABLE_FL`` cannot be
unlinked, renamed, written or linked to, by any user, root included, until the flag is
cleared — which needs ``CAP_LINUX_IMMUTABLE`` (root).  So it stops a mistake, a buggy script
and an attacker without root; it does not stop root, who can clear it.  The flag has no date:
vmvault keeps the retain-until in the catalog and clears the flag (:meth:`release`) when a
point's retention has ended, just before it deletes the files.  Set with
``FS_IOC_GETFLAGS``/``FS_IOC_SETFLAGS`` (``ioctl(2)``); ext4, xfs and btrfs have it; tmpfs,
overlayfs over tmpfs and most network file systems do not (:meth:`check` says why).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.domain.immutability import LockMode

if TYPE_CHECKING:  # local.py imports this module
    from vmvault.storage.local import LocalBackend

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010
_UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def _flags(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
    return buf[0]


def set_immutable(path: Path, on: bool) -> bool:
    """Set or clear the flag of ``path``; True when it changed.  A missing file: False."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    try:
        flags = _flags(fd)
        wanted = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
        if wanted == flags:
            return False
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [wanted]))
        return True
    finally:
        os.close(fd)


def is_immutable(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return bool(_flags(fd) & FS_IMMUTABLE_FL)
    finally:
        os.close(fd)


class ImmutableFiles:
    """The immutable attribute on the files of a directory (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> str | None:
        """None when files under the root can be made immutable here; else why not (the
        file system has no such attribute, or this process may not set it)."""
        probe = self.root / f".hold-probe.{secrets.token_hex(4)}"
        try:
            probe.touch()
        except OSError as exc:
            return f"cannot write in {self.root}: {exc.strerror}"
        try:
            set_immutable(probe, True)
            set_immutable(probe, False)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                return f"the file system of {self.root} has no immutable attribute"
            if exc.errno == errno.EPERM:
                return "setting the immutable attribute needs CAP_LINUX_IMMUTABLE (root)"
            return f"the immutable attribute failed: {exc.strerror}"
        finally:
            with contextlib.suppress(OSError):
                set_immutable(probe, False)
            with contextlib.suppress(OSError):
                probe.unlink()
        return None

    def hold(self, paths: Iterable[Path]) -> int:
        """Make each existing file immutable; returns how many were not already."""
        return sum(set_immutable(p, True) for p in paths)

    def release(self, paths: Iterable[Path]) -> int:
        """Clear the attribute of each file that has it; returns how many."""
        return sum(set_immutable(p, False) for p in paths)


class LocalHold:
    """The directory's :class:`~vmvault.storage.backend.ObjectHold`: the immutable attribute
    (module docstring).  Undated: ``until`` is the catalog's to keep."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.files = ImmutableFiles(backend.root)

    def check(self) -> str | None:
        return self.files.check()

    def hold(self, keys: Sequence[str], until: datetime, mode: LockMode, margin: timedelta) -> int:
        try:
            return self.files.hold(self.backend.path(k) for k in keys)
        except OSError as exc:
            raise self.backend._error(exc, None) from exc

    def release(self, keys: Sequence[str]) -> int:
        try:
            return self.files.release(self.backend.path(k) for k in keys)
        except OSError as exc:
            raise self.backend._error(exc, None) from exc

    def purge(self, key: str) -> bool:
        self.release([key])
        self.backend.delete(key, sync=False)
        return True
