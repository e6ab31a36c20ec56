"""File-level restore: list, find and extract files of a point without writing its disks.

Each call serves the point read-only (:meth:`ExportService.serving`, a private socket),
attaches each disk through the ``FileSystems`` port (nbdfuse), reads its partition table
from the export itself, and finds the file systems (a whole disk or each partition) and
where the guest mounted them (ext4's "Last mounted on").  A guest path (``/data/docs/x``)
goes to the file system mounted at its longest prefix; with ``disk`` a path is from that
disk's file system root (its first file system: a partition is named ``vdb2``).  Nothing
is written but the files ``get`` extracts; a missing path is ``FILE_NOT_FOUND`` (nothing
written).  These calls are short and read-only: they are not jobs (docs/files.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vmvault.dataplane.export import ExportedDisk
from vmvault.domain.errors import FileNotInPoint, FileReadFailed, InvalidInput, NoFileSystem
from vmvault.domain.files import (
    SECTOR,
    FileEntry,
    Volume,
    fstab,
    fstab_volume,
    gpt_span,
    guest_path,
    matches,
    normal,
    partitions,
    resolve,
    with_fstab,
)
from vmvault.services.context import Service, ServiceContext
from vmvault.services.exports import ExportService
from vmvault.services.paths import user_path
from vmvault.services.ports import FileSystems

#: The most entries ``files find`` returns.
MAX_FOUND = 10_000
FSTAB = "/etc/fstab"
FSTAB_LIMIT = 1 << 20


@dataclass
class Browse:
    """A point being read: its volumes with a file system, and each disk as a local file."""

    point: str
    volumes: list[Volume]
    images: dict[str, Path]
    errors: list[str] = field(default_factory=list)  # reads the export failed (on_error)

    def image(self, v: Volume) -> Path:
        return self.images[v.disk]

    def check(self, written: tuple[Path, ...] = ()) -> None:
        """FILE_READ_FAILED when a read of the export failed (what was written deleted):
        debugfs may answer with a short or partial result then."""
        if self.errors:
            _delete(written)
            raise FileReadFailed(path="(export)", point=self.point, why=self.errors[0])


class FileService(Service):
    def __init__(self, ctx: ServiceContext, exports: ExportService, fs: FileSystems) -> None:
        super().__init__(ctx)
        self.exports = exports
        self.fs = fs

    def volumes(self, point_id: str) -> list[Volume]:
        """The point's file systems (``files ls POINT`` with no path)."""
        with self._browse(point_id, None) as b:
            return b.volumes

    def ls(self, point_id: str, path: str, disk: str | None = None) -> list[FileEntry]:
        """The entries of directory ``path`` (or the entry itself when it is no directory)."""
        with self._browse(point_id, _disk_of(disk)) as b:
            v, inner = self._where(b, path, disk)
            entry = self._entry(b, v, inner, path)
            found = [entry] if entry.kind != "dir" else self.fs.listdir(b.image(v), v, inner)
            b.check()
            return [_as_guest(v, e, disk) for e in found]

    def find(self, point_id: str, pattern: str, disk: str | None = None) -> list[FileEntry]:
        """Every file whose name (or, with a ``/`` in ``pattern``, path) matches."""
        if not pattern.strip():
            raise InvalidInput("give a name pattern such as '*.conf'", what="pattern")
        found: list[FileEntry] = []
        with self._browse(point_id, _disk_of(disk)) as b:
            for v in self._searched(b, disk):
                for e in self.fs.walk(b.image(v), v, "/"):
                    shown = _as_guest(v, e, disk)
                    if matches(pattern, shown.path):
                        found.append(shown)
                        if len(found) >= MAX_FOUND:
                            b.check()
                            return found
            b.check()
        return found

    def get(self, point_id: str, paths: list[str], to: str, disk: str | None = None) -> list[Path]:
        """Extract ``paths`` (files or whole trees) into directory ``to``; every path is
        checked before the first is written."""
        if not paths:
            raise InvalidInput("name at least one path", what="files get")
        names = [normal(p).rsplit("/", 1)[-1] for p in paths]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # rdump would overwrite the first with the second
            raise InvalidInput(
                f"two paths have the same name {', '.join(twice)}: get them into different"
                " directories (one 'files get' each)",
                what="files get",
            )
        target = user_path(to, "--to").path
        if not target.is_dir():
            raise InvalidInput("it is not a directory", what=f"--to {to}")
        with self._browse(point_id, _disk_of(disk)) as b:
            todo = []
            for path, name in zip(paths, names, strict=True):
                v, inner = self._where(b, path, disk)
                entry = self._entry(b, v, inner, path)
                todo.append((v, entry, entry.name if entry.path != "/" else name or v.label))
            for _, _, name in todo:
                if (target / name).exists() or (target / name).is_symlink():
                    raise InvalidInput(f"{target / name} already exists", what="--to")
            written: list[Path] = []
            try:
                for v, e, name in todo:
                    if e.path == "/":  # a file system's root (a mount point): named as asked
                        written.append(self._root(b, v, e, target / name.replace("/", "-")))
                    else:
                        written.append(self.fs.extract(b.image(v), v, e, target))
            except FileReadFailed:
                _delete(written)  # what the earlier paths wrote
                raise
            b.check(tuple(written))
            return written

    def extract_file(self, point_id: str, path: str, to: Path, disk: str | None = None) -> Path:
        """Extract one regular file into ``to`` (a download); anything else is refused."""
        with self._browse(point_id, _disk_of(disk)) as b:
            v, inner = self._where(b, path, disk)
            entry = self._entry(b, v, inner, path)
            if entry.kind != "file":
                raise InvalidInput(
                    f"it is a {entry.kind}: download regular files (or use 'files get')",
                    what=f"path {path}",
                )
            written = self.fs.extract(b.image(v), v, entry, to)
            b.check((written,))
            return written

    # --- helpers -------------------------------------------------------------------------

    def _root(self, b: Browse, v: Volume, root: FileEntry, dest: Path) -> Path:
        """The tree of a file system's root ``root`` at ``dest`` (its entries, one extract
        each; the directory itself with the root's mode and owner)."""
        dest.mkdir()
        try:
            for e in self.fs.listdir(b.image(v), v, "/"):
                self.fs.extract(b.image(v), v, e, dest)
            os.chown(dest, root.uid, root.gid)
            os.chmod(dest, stat.S_IMODE(root.mode) & 0o1777)
        except (FileReadFailed, OSError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, OSError):
                raise FileReadFailed(path=v.label, point=b.point, why=str(exc)) from None
            raise
        return dest

    @contextlib.contextmanager
    def _browse(self, point_id: str, disk: str | None) -> Iterator[Browse]:
        errors: list[str] = []
        with (
            self.exports.serving(point_id, disk, on_error=errors.append) as export,
            contextlib.ExitStack() as attached,
        ):
            images: dict[str, Path] = {}
            volumes: list[Volume] = []
            for target, served in export.served.items():
                images[target] = attached.enter_context(self.fs.attach(export.socket, target))
                for place in _candidates(target, served):
                    volumes += self.fs.volumes(images[target], place)
            yield Browse(export.point.id, self._mounted(volumes, images), images, errors)

    def _mounted(self, volumes: list[Volume], images: dict[str, Path]) -> list[Volume]:
        """``volumes`` mounted where the root file system's /etc/fstab says: the first
        volume whose /etc/fstab mounts itself at ``/``, else the first with one.  ext2/3/4
        volumes are read first (debugfs: fast), the others (an appliance to start) only
        when no ext volume has an /etc/fstab."""
        tables: list[tuple[Volume, str]] = []
        for cheap in (True, False):
            for v in (v for v in volumes if v.fs.startswith("ext") == cheap):
                data = self.fs.read(images[v.disk], v, FSTAB, FSTAB_LIMIT)
                if data is None:
                    continue
                tables.append((v, data.decode(errors="replace")))
                if _mounts_itself(volumes, *tables[-1]):
                    return with_fstab(volumes, *tables[-1])
            if tables:
                break
        return with_fstab(volumes, *tables[0]) if tables else volumes

    def _where(self, b: Browse, path: str, disk: str | None) -> tuple[Volume, str]:
        if disk is not None:
            picked = [v for v in b.volumes if disk in (v.label, v.disk)]
            if not picked:
                raise NoFileSystem(point=b.point, path=disk, why="no file system found on it")
            return picked[0], normal(path)
        found = resolve(b.volumes, path)
        if found is None:
            mounts = ", ".join(f"{v.label} on {v.mounted_on}" for v in b.volumes if v.mounted_on)
            raise NoFileSystem(
                point=b.point, path=normal(path), why=f"mounted: {mounts or 'none recorded'}"
            )
        return found

    def _entry(self, b: Browse, v: Volume, inner: str, asked: str) -> FileEntry:
        entry = self.fs.lookup(b.image(v), v, inner)
        if entry is None:
            raise FileNotInPoint(path=asked, point=b.point)
        return entry

    def _searched(self, b: Browse, disk: str | None) -> list[Volume]:
        if disk is None:
            return b.volumes
        picked = [v for v in b.volumes if disk in (v.label, v.disk)]
        if not picked:
            raise NoFileSystem(point=b.point, path=disk, why="no file system found on it")
        return picked


def _delete(written: Iterable[Path]) -> None:
    for p in written:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _disk_of(disk: str | None) -> str | None:
    """The disk target of ``--disk`` (``vdb`` of a partition ``vdb2``; None, every disk,
    for an LVM logical volume ``vg/lv``)."""
    if disk is None or "/" in disk:
        return None
    return disk.rstrip("0123456789") or disk


def _candidates(target: str, disk: ExportedDisk) -> list[Volume]:
    """Where file systems may be on ``disk``: its partitions, else the whole disk."""
    head = disk.pread(min(2 * SECTOR, disk.size), 0)
    span = gpt_span(head[SECTOR:]) if len(head) >= 2 * SECTOR else 0
    gpt = disk.pread(min(span, disk.size - SECTOR), SECTOR) if span else b""
    return partitions(target, head[:SECTOR], disk.size, gpt) or [Volume(target, None, 0, disk.size)]


def _mounts_itself(volumes: list[Volume], v: Volume, text: str) -> bool:
    return any(w == "/" and fstab_volume(volumes, s) == v for s, w in fstab(text))


def _as_guest(v: Volume, e: FileEntry, disk: str | None) -> FileEntry:
    path = normal(e.path) if disk is not None else guest_path(v, e.path)
    return FileEntry(path, e.mode, e.uid, e.gid, e.size)
