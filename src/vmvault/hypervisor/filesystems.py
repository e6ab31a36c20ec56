"""The ``FileSystems`` port with two readers, chosen by what the disk holds.

* ext2/3/4 on a whole disk, a partition or a linear LVM logical volume: :class:`~vmvault.
  hypervisor.fsread.DebugfsFileSystems` (debugfs on the nbdfuse file at the volume's
  offset: a second or two to a first file);
* anything else ``blkid`` names a file system (xfs, btrfs...; xfs on LVM):
  :class:`~vmvault.hypervisor.guestfs_read.GuestfsFileSystems` (a libguestfs appliance under
  TCG: a minute or more to start here, once per disk of a call).

Finding the volumes starts no appliance: debugfs reads ext superblocks, ``blkid -p`` probes
the rest at its offset (type, UUID, label), and an LVM2 physical volume's logical volumes
come from its own label and metadata (:mod:`vmvault.domain.lvm`).  Both readers read the
same local file, the export seen through ``nbdfuse`` (:meth:`attach`); the appliance of a
disk is shut down before that file goes away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from vmvault.domain import lvm
from vmvault.domain.errors import FileReadFailed
from vmvault.domain.files import FileEntry, Volume
from vmvault.hypervisor.fsread import DebugfsFileSystems
from vmvault.hypervisor.guestfs_read import GuestfsFileSystems

log = logging.getLogger(__name__)

_DEBUGFS = ("ext2", "ext3", "ext4")
#: The largest LVM metadata area read (LVM's default is 1 MiB).
MAX_METADATA = 64 << 20


class ChosenFileSystems:
    """``FileSystems``: debugfs where it reads, libguestfs elsewhere (see the module)."""

    def __init__(self, work_dir: Path) -> None:
        self.debugfs = DebugfsFileSystems(work_dir)
        self.guestfs = GuestfsFileSystems(work_dir)

    @contextlib.contextmanager
    def attach(self, socket: Path, export: str) -> Iterator[Path]:
        with self.debugfs.attach(socket, export) as image:
            try:
                yield image
            finally:
                self.guestfs.close(image)

    def volumes(self, image: Path, place: Volume) -> list[Volume]:
        found = self.debugfs.volumes(image, place)
        if found:
            return found
        probe = _blkid(image, place)
        kind = probe.get("TYPE", "")
        if kind == "LVM2_member" and place.lv is None:
            return [v for lv in _logical_volumes(image, place) for v in self.volumes(image, lv)]
        if kind and probe.get("USAGE") == "filesystem":
            uuid, label = probe.get("UUID", ""), probe.get("LABEL", "")
            return [replace(place, fs=kind, uuid=uuid, fs_label=label)]  # xfs records no mount
        return []

    def _reader(self, volume: Volume) -> DebugfsFileSystems | GuestfsFileSystems:
        return self.debugfs if volume.fs in _DEBUGFS else self.guestfs

    def read(self, image: Path, volume: Volume, path: str, limit: int) -> bytes | None:
        return self._reader(volume).read(image, volume, path, limit)

    def lookup(self, image: Path, volume: Volume, path: str) -> FileEntry | None:
        return self._reader(volume).lookup(image, volume, path)

    def listdir(self, image: Path, volume: Volume, path: str) -> list[FileEntry]:
        return self._reader(volume).listdir(image, volume, path)

    def walk(self, image: Path, volume: Volume, top: str) -> Iterator[FileEntry]:
        return self._reader(volume).walk(image, volume, top)

    def extract(self, image: Path, volume: Volume, entry: FileEntry, to: Path) -> Path:
        return self._reader(volume).extract(image, volume, entry, to)


def _blkid(image: Path, place: Volume) -> dict[str, str]:
    """What ``blkid -p`` finds at ``place``'s offset of ``image`` ({}: nothing)."""
    argv = ["blkid", "-p", "-o", "export", "-O", str(place.offset), "-S", str(place.size)]
    try:
        res = subprocess.run([*argv, str(image)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FileReadFailed(path=place.label, point="(export)", why=f"blkid: {exc}") from None
    fields = (line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return {k: v.replace("\\ ", " ") for k, v in fields}


def _logical_volumes(image: Path, place: Volume) -> list[Volume]:
    """The linear logical volumes of the LVM2 physical volume at ``place``."""
    try:
        with open(image, "rb") as f:
            head = os.pread(f.fileno(), lvm.HEAD, place.offset)
            area = lvm.metadata_area(head)
            if area is None or area[1] > MAX_METADATA:
                return []
            text = lvm.metadata_text(os.pread(f.fileno(), area[1], place.offset + area[0]))
    except OSError as exc:
        raise FileReadFailed(path=place.label, point="(export)", why=str(exc)) from None
    if text is None:
        return []
    try:
        lvs = lvm.logical_volumes(text, lvm.pv_uuid(head))
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        # the guest wrote this text: metadata vmvault cannot read hides its LVs, nothing else
        log.warning("LVM metadata of %s not readable (%s): no logical volume listed",
                    place.label, type(exc).__name__)  # fmt: skip
        return []
    return [
        replace(place, offset=place.offset + lv.offset, size=lv.size, lv=lv.name)
        for lv in lvs
        if lv.offset + lv.size <= place.size
    ]
