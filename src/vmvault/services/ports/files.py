"""What file-level restore needs: an NBD export seen as a local file, and a reader of the
file systems in it (``vmvault.hypervisor.filesystems``: debugfs for ext2/3/4 on a disk or a
partition, libguestfs for the rest: xfs, LVM)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from vmvault.domain.files import FileEntry, Volume


class FileSystems(Protocol):
    """Reads the file systems of a point's disks, served over NBD, without writing them.

    Paths given and returned are inside the volume's file system (``/`` its root).  Failures
    are :class:`~vmvault.domain.errors.VmvaultError` s: ``FILE_READ_FAILED`` (the tool or a
    read failed).  A missing path is ``None`` / ``[]`` here: the service names the error.
    """

    def attach(self, socket: Path, export: str) -> AbstractContextManager[Path]:
        """The export ``export`` of the NBD server at ``socket``, read-only, as a local
        file (its path) until the context ends."""

    def volumes(self, image: Path, place: Volume) -> list[Volume]:
        """The file systems this reader reads in ``place`` (a whole disk or a partition):
        ``place`` itself, or the LVM logical volumes in it; each with its ``fs``, ``uuid``,
        ``fs_label`` and where the guest last mounted it (``mounted_on``, None: not known).
        [] when there is none."""

    def read(self, image: Path, volume: Volume, path: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of the regular file ``path`` (None: no such file)."""

    def lookup(self, image: Path, volume: Volume, path: str) -> FileEntry | None:
        """The entry at ``path``, or None."""

    def listdir(self, image: Path, volume: Volume, path: str) -> list[FileEntry]:
        """The entries of directory ``path`` (no ``.`` and ``..``), sorted by name."""

    def walk(self, image: Path, volume: Volume, top: str) -> Iterator[FileEntry]:
        """Every entry under directory ``top``, breadth first."""

    def extract(self, image: Path, volume: Volume, entry: FileEntry, to: Path) -> Path:
        """Write ``entry`` (a directory with its whole tree) into the directory ``to``,
        keeping owners, modes, times, symlinks and special files; returns what it wrote."""
