"""Small file-system helpers for the lab: world-traversable directories, locks, atomic dirs.

QEMU runs as ``libvirt-qemu``, not root. libvirt chowns the disk images it is given, but it
does not touch the directories above them, so every parent of the lab and cache directories
must be traversable (``o+x``) by others. ``/root`` (mode 700) is the usual trap: a VM whose
disks live there fails at start with a permission error that says nothing about ``/root``.
:func:`check_traversable` turns that into a clear :class:`LabFailed` before anything is made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.host import locked, untraversable

__all__ = [
    "check_traversable", "link_or_copy", "locked", "make_dirs", "publish_dir", "write_private"
]  # fmt: skip


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` readable by its owner only (0600, whatever the umask
    and whatever an older file's mode): a new file beside it, renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


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
    """Raise :class:`LabFailed` if an existing ancestor of ``path`` (or itself) lacks ``o+x``."""
    path = Path(path).absolute()
    found = untraversable(path)
    if found is None:
        return
    p, mode = found
    if mode is None:
        raise LabFailed(f"{p} is not a directory (needed for {path})")
    raise LabFailed(
        f"{p} has mode {mode}: QEMU runs as {who} and cannot "
        f"reach {path} through it. Use a directory outside it (the defaults are "
        f"/var/lib/vmvault/lab and /var/cache/vmvault/lab) or 'chmod o+x {p}'."
    )


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
