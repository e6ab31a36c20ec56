"""Small facts and tools about the local host that several adapters need: file locks,
whether a process lives, whether QEMU (user ``libvirt-qemu``) can reach a path, the tail of a
domain's QEMU log."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def untraversable(path: Path) -> tuple[Path, str | None] | None:
    """The first existing ancestor of ``path`` (or itself) that others cannot enter — QEMU
    runs as ``libvirt-qemu`` and needs ``o+x`` on each: ``(culprit, its mode as ls shows it)``,
    or ``(culprit, None)`` when the culprit is not a directory; ``None`` if all can."""
    path = Path(path).absolute()
    for p in (path, *path.parents):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            return p, None
        if not st.st_mode & stat.S_IXOTH:
            return p, stat.filemode(st.st_mode)
    return None


def qemu_log_tail(name: str, lines: int = 5) -> str:
    """The last lines libvirt logged for domain ``name`` (empty if there is no log)."""
    try:
        text = (QEMU_LOG_DIR / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
