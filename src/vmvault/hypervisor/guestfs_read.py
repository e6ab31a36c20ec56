"""File reads with libguestfs (Debian's ``python3-guestfs``): xfs, LVM and any
file system its appliance mounts, on a disk the ``nbdfuse`` file of the export.

One appliance per disk of a browse (``LIBGUESTFS_BACKEND=direct``, TCG forced: the nested
``/dev/kvm`` of these machines aborts it, ../docs/files.md), launched on the first read and
shut down when the disk is detached (:meth:`close`).  The disk is added read-only (a
throw-away overlay takes the appliance's writes, e.g. an xfs log replay), and each file
system is mounted read-only (``ro,norecovery`` for xfs) when a read needs it, one at a time.
Entries come from ``lstatnslist``; files are ``download``-ed and given their owners, modes
and times here; a directory comes as ``tar-out`` with numeric owners (device nodes skipped,
setuid/setgid bits cleared as with debugfs).  A host without a kernel in ``/boot`` (a
container) names one with supermin's ``SUPERMIN_KERNEL``, ``SUPERMIN_MODULES`` and
``SUPERMIN_KERNEL_VERSION`` in the environment.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmvault.domain.errors import FileReadFailed, InvalidInput
from vmvault.domain.files import FileEntry, Volume, normal
from vmvault.hypervisor.fsread import drop_setid, make_node
from vmvault.hypervisor.guest_tar import unpack

#: The appliance's memory (MiB): enough for xfs and LVM metadata, little for the host.
MEMSIZE = 512
_DEVICES = ("char", "block")
_SPECIAL = ("fifo", "socket")
log = logging.getLogger(__name__)


class GuestfsFileSystems:
    """The reads of ``FileSystems`` (lookup, listdir, walk, extract, read) through one
    libguestfs appliance per attached disk (see the module)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._handles: dict[Path, Any] = {}
        self._mounted: dict[Path, str] = {}  # image -> the device mounted at "/"

    # --- the appliance -----------------------------------------------------------------

    def _g(self, image: Path) -> Any:
        g = self._handles.get(image)
        if g is not None:
            return g
        try:
            import guestfs  # Debian's python3-guestfs (the venv sees system packages)
        except ImportError:
            raise FileReadFailed(
                path=str(image), point="(export)", why="python3-guestfs is not installed"
            ) from None
        g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
        try:
            g.set_backend("direct")
            g.set_backend_setting("force_tcg", "1")
            g.set_memsize(MEMSIZE)
            g.add_drive_opts(str(image), format="raw", readonly=True)
            g.launch()
        except RuntimeError as exc:
            g.close()
            raise FileReadFailed(path=str(image), point="(export)", why=_why(exc)) from None
        self._handles[image] = g
        return g

    def close(self, image: Path) -> None:
        """Shut the appliance of ``image`` down (before its disk is detached)."""
        g = self._handles.pop(image, None)
        self._mounted.pop(image, None)
        if g is not None:
            try:
                g.shutdown()
            except RuntimeError as exc:
                log.warning("libguestfs shutdown: %s", _why(exc))
            g.close()

    def _on(self, image: Path, volume: Volume) -> Any:
        """The appliance of ``image`` with ``volume``'s file system mounted at ``/``."""
        g = self._g(image)
        device = _device(volume)
        if self._mounted.get(image) == device:
            return g
        try:
            g.umount_all()
            self._mounted.pop(image, None)
            options = "ro,norecovery" if volume.fs == "xfs" else "ro"
            g.mount_options(options, device, "/")
        except RuntimeError as exc:
            raise FileReadFailed(path=volume.label, point="(export)", why=_why(exc)) from None
        self._mounted[image] = device
        return g

    # --- the port ----------------------------------------------------------------------

    def read(self, image: Path, volume: Volume, path: str, limit: int) -> bytes | None:
        entry = self.lookup(image, volume, path)
        if entry is None or entry.kind != "file":
            return None
        g = self._on(image, volume)
        try:
            return bytes(g.pread(normal(path), min(limit, max(entry.size, 1)), 0))
        except RuntimeError as exc:
            raise FileReadFailed(path=path, point="(export)", why=_why(exc)) from None

    def lookup(self, image: Path, volume: Volume, path: str) -> FileEntry | None:
        g = self._on(image, volume)
        path = normal(path)
        try:
            if not g.exists(path) and not g.is_symlink(path):
                return None
            return _entry(path, g.lstatns(path))
        except RuntimeError as exc:
            raise FileReadFailed(path=path, point="(export)", why=_why(exc)) from None

    def listdir(self, image: Path, volume: Volume, path: str) -> list[FileEntry]:
        g = self._on(image, volume)
        return sorted(self._list(g, normal(path)), key=lambda e: e.name)

    def walk(self, image: Path, volume: Volume, top: str) -> Iterator[FileEntry]:
        g = self._on(image, volume)
        level = [normal(top)]
        while level:  # a file system mounted read-only has no directory cycles
            below = []
            for d in level:
                for e in sorted(self._list(g, d), key=lambda e: e.name):
                    yield e
                    if e.kind == "dir":
                        below.append(e.path)
            level = below

    def extract(self, image: Path, volume: Volume, entry: FileEntry, to: Path) -> Path:
        target = to / entry.name
        if entry.kind in _DEVICES:
            raise InvalidInput(
                f"it is a {entry.kind} device: device nodes are not recreated",
                what=f"path {entry.path}",
            )
        if entry.kind in _SPECIAL:
            return make_node(entry, target)
        g = self._on(image, volume)
        try:
            if entry.kind == "dir":
                self._tree(g, entry, target)
            elif entry.kind == "symlink":
                os.symlink(g.readlink(entry.path), target)
            else:
                g.download(entry.path, str(target))
            st = g.lstatns(entry.path)
            os.chown(target, entry.uid, entry.gid, follow_symlinks=False)
            if entry.kind != "symlink":
                os.chmod(target, stat.S_IMODE(entry.mode))
            times = (_ns(st, "atime"), _ns(st, "mtime"))
            os.utime(target, ns=times, follow_symlinks=False)
        except (RuntimeError, OSError, tarfile.TarError) as exc:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.lexists(target):
                os.unlink(target)
            why = _why(exc) if isinstance(exc, RuntimeError) else str(exc)
            raise FileReadFailed(path=entry.path, point="(export)", why=why) from None
        drop_setid(target)
        return target

    # --- helpers -----------------------------------------------------------------------

    def _list(self, g: Any, path: str) -> list[FileEntry]:
        try:
            names = g.ls(path)
            stats = g.lstatnslist(path, names) if names else []
        except RuntimeError as exc:
            raise FileReadFailed(path=path, point="(export)", why=_why(exc)) from None
        return [_entry(posixpath.join(path, n), st) for n, st in zip(names, stats, strict=True)]

    def _tree(self, g: Any, entry: FileEntry, target: Path) -> None:
        """The tree of directory ``entry`` at ``target`` through ``tar-out``."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.work_dir, suffix=".tar") as tar:
            g.tar_out(entry.path, tar.name, numericowner=True)
            target.mkdir()
            with tarfile.open(tar.name) as tf:
                devices, skipped = unpack(tf, target)  # never extractall: guest_tar.py
            if skipped:
                log.warning("tar members of %s not made: %s", entry.path, ", ".join(skipped))
            if devices:
                log.warning("device nodes not recreated: %s", ", ".join(devices))


def _entry(path: str, st: dict[str, int]) -> FileEntry:
    return FileEntry(normal(path), st["st_mode"], st["st_uid"], st["st_gid"], st["st_size"])


def _ns(st: dict[str, int], which: str) -> int:
    return st[f"st_{which}_sec"] * 1_000_000_000 + st[f"st_{which}_nsec"]


def _device(volume: Volume) -> str:
    """The appliance's device of a volume (the one disk added is ``/dev/sda``; LVM logical
    volumes are activated by the appliance)."""
    if volume.lv is not None:
        return f"/dev/{volume.lv}"
    return "/dev/sda" if volume.partition is None else f"/dev/sda{volume.partition}"


def _why(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
