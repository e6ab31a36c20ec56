"""The ``HostFiles`` port on this machine's file system (restores write on the VM's host,
which must be this machine: ``RESTORE_HOST_NOT_LOCAL`` otherwise).

Renames and symlinks are made durable by syncing their directory before returning, so that
what the job journal says was done is on disk when start-up recovery reads it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vmvault.domain.restore import FreeSpace
from vmvault.storage.fsutil import fsync_dir


class LocalHostFiles:
    """``HostFiles`` over the local file system (see the port for each contract)."""

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def free_space(self, path: Path) -> FreeSpace:
        probe = path
        while not probe.exists():
            probe = probe.parent
        return FreeSpace(probe.stat().st_dev, shutil.disk_usage(probe).free, probe)

    def make_dirs(self, path: Path) -> list[Path]:
        missing = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        made = list(reversed(missing))
        for directory in made:
            directory.mkdir(mode=0o755, exist_ok=True)
            directory.chmod(0o755)  # whatever the umask
            fsync_dir(directory.parent)
        return made

    def remove_dir(self, path: Path) -> bool:
        try:
            path.rmdir()
        except OSError:  # missing, not empty, or not a directory: left alone
            return False
        return True

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)
        fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsync_dir(src.parent)

    def symlink(self, link: Path, target: Path) -> None:
        os.symlink(target, link)
        fsync_dir(link.parent)

    def copy(self, src: Path, dst: Path) -> None:
        try:
            shutil.copyfile(src, dst)
        except OSError:
            dst.unlink(missing_ok=True)
            raise

    def remove(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self, directory: Path, prefix: str) -> list[Path]:
        try:
            return sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
        except FileNotFoundError:
            return []
