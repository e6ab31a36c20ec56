"""What file-level restore needs: an NBD export seen as a local file, and a reader of the
file systems in it (``vmvault.hypervisor.fsread``: nbdfuse + debugfs)."""

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

    def mounted_on(self, image: Path, volume: Volume) -> str | None:
        """Where the guest last mounted the file system of ``volume`` ("" when it was
        never mounted), or None when there is no file system this reader reads."""

    def lookup(self, image: Path, volume: Volume, path: str) -> FileEntry | None:
        """The entry at ``path``, or None."""

    def listdir(self, image: Path, volume: Volume, path: str) -> list[FileEntry]:
        """The entries of directory ``path`` (no ``.`` and ``..``), sorted by name."""

    def walk(self, image: Path, volume: Volume, top: str) -> Iterator[FileEntry]:
        """Every entry under directory ``top``, breadth first."""

    def extract(self, image: Path, volume: Volume, entry: FileEntry, to: Path) -> Path:
        """Write ``entry`` (a directory with its whole tree) into the directory ``to``,
        keeping owners, modes, times, symlinks and special files; returns what it wrote."""
