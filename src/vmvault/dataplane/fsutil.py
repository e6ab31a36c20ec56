"""Durable file writes: ``tmp + fsync + rename + fsync(dir)``.

A reader, or a crash, sees either the old file or the new one, never a torn one.  Temporary
files are named ``.<final name>.tmp.<pid>.<random>`` next to their final name, so garbage
collection can recognise (and, once old enough, remove) the leftovers of a crashed writer.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vmvault.domain.errors import VaultFull

TMP_MARK = ".tmp."
_FULL = {errno.ENOSPC, errno.EDQUOT}


def tmp_path(final: Path) -> Path:
    """A unique temporary name in the directory of ``final``."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}")


def is_tmp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """fsync a file by name (a read-only descriptor is enough on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def space_errors(vault: Path) -> Iterator[None]:
    """Turn "no space left" (or quota) into :class:`VaultFull`; other errors pass."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise VaultFull(path=str(vault)) from exc
        raise


def write_parts(
    path: Path, parts: Sequence[bytes | bytearray | memoryview], *, sync: bool, mode: int = 0o644
) -> int:
    """Create ``path`` (must not exist) from ``parts`` with one ``writev``; return its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        total = sum(len(p) for p in parts)
        done = os.writev(fd, parts)
        if done != total:  # short write: finish the rest the slow way
            rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        if sync:
            os.fsync(fd)
        return total
    finally:
        os.close(fd)


def write_atomic(
    path: Path, parts: Sequence[bytes | bytearray | memoryview], *, vault: Path, mode: int = 0o644
) -> int:
    """Write ``path`` durably and atomically (replacing an older file of that name)."""
    tmp = tmp_path(path)
    with space_errors(vault):
        try:
            size = write_parts(tmp, parts, sync=True, mode=mode)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    return size
