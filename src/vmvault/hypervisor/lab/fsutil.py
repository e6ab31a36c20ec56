"""Small file-system helpers for the lab: world-traversable directories, locks, atomic dirs.

QEMU runs as ``libvirt-qemu``, not root. libvirt chowns the disk images it is given, but it
does not touch the directories above them, so every parent of the lab and cache directories
must be traversable (``o+x``) by others. ``/root`` (mode 700) is the usual trap: a VM whose
disks live there fails at start with a permission error that says nothing about ``/root``.
:func:`check_traversable` turns that into a clear :class:`LabError` before anything is made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from vmvault.domain.errors import LabError


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """``mkdir -p`` whose created directories get exactly ``mode`` (whatever the umask)."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
            d.chmod(mode)


def check_traversable(path: Path, who: str = "libvirt-qemu") -> None:
    """Raise :class:`LabError` if an existing ancestor of ``path`` (or itself) lacks ``o+x``."""
    path = Path(path).absolute()
    for p in (path, *path.parents):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise LabError(f"{p} is not a directory (needed for {path})")
        if not st.st_mode & stat.S_IXOTH:
            raise LabError(
                f"{p} has mode {stat.filemode(st.st_mode)}: QEMU runs as {who} and cannot "
                f"reach {path} through it. Use a directory outside it (the defaults are "
                f"/var/lib/vmvault/lab and /var/cache/vmvault/lab) or 'chmod o+x {p}'."
            )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def publish_dir(tmp: Path, final: Path) -> None:
    """Move the finished directory ``tmp`` to ``final`` (same file system), replacing it.

    A build writes everything into ``tmp`` first, so a killed build leaves only a ``.tmp-*``
    directory (removed by the next build), never a half-written ``final``.
    """
    tmp.chmod(0o755)
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(final)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy across file systems); ``dst`` must not exist."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
