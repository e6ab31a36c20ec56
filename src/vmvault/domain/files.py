"""Files inside a point's disks: entries, volumes, partition tables and guest paths (pure).

A **volume** is where a file system may start on a disk of a point: the whole disk, or one
partition of its MBR or GPT partition table (:func:`partitions`, from the disk's first
sectors).  A volume with a file system knows where the guest last mounted it (ext4 records
it in its superblock, "Last mounted on"), so a guest path such as ``/data/docs/x`` maps to
the volume mounted at the longest prefix (:func:`resolve`); with ``--disk`` a path is from
the root of that disk's file system.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import stat
import struct
import zlib
from dataclasses import dataclass, replace

SECTOR = 512
GPT_SIGNATURE = b"EFI PART"
#: MBR partition types that hold no file system (empty, extended, GPT protective).
_MBR_SKIP = {0x00, 0x05, 0x0F, 0x85, 0xEE}

KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class FileEntry:
    """One file as its file system records it (``path``: as asked, in the guest's terms)."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int

    @property
    def kind(self) -> str:
        return KINDS.get(stat.S_IFMT(self.mode), "other")

    @property
    def name(self) -> str:
        return posixpath.basename(self.path) or "/"

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "mode": f"{stat.S_IMODE(self.mode):04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
        }


@dataclass(frozen=True)
class Volume:
    """A place a file system may be: ``disk`` (target), ``partition`` (1-based, None: whole
    disk), its byte ``offset`` and ``size``; ``mounted_on`` once a file system is found."""

    disk: str
    partition: int | None
    offset: int
    size: int
    mounted_on: str | None = None
    fs: str = ""  # its file system's type once found (ext4, xfs...)
    lv: str | None = None  # an LVM logical volume "vg/lv" (in ``partition`` or the disk)
    uuid: str = ""  # the file system's UUID and label, for /etc/fstab's UUID= and LABEL=
    fs_label: str = ""

    @property
    def label(self) -> str:
        if self.lv is not None:
            return self.lv
        return self.disk if self.partition is None else f"{self.disk}{self.partition}"

    def to_json(self) -> dict[str, object]:
        return {"volume": self.label, "disk": self.disk, "offset": self.offset,
                "size": self.size, "mounted_on": self.mounted_on, "fs": self.fs}  # fmt: skip


def fstab(text: str) -> list[tuple[str, str]]:
    """The ``(spec, mount point)`` of each file system line of an ``/etc/fstab`` (swap,
    ``none`` and pseudo file systems left out; ``\\040`` escapes decoded)."""
    found = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not fields[1].startswith("/"):
            continue
        spec, where = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), f) for f in fields[:2])
        found.append((spec, where))
    return found


def fstab_volume(volumes: list[Volume], spec: str) -> Volume | None:
    """The volume an fstab ``spec`` names: ``UUID=``, ``LABEL=``, ``/dev/disk/by-uuid|label/``,
    ``/dev/VG/LV``, ``/dev/mapper/VG-LV`` or a device ``/dev/vdb1`` (the disk's target)."""
    key, _, value = spec.partition("=")
    for prefix, kind in (("/dev/disk/by-uuid/", "UUID"), ("/dev/disk/by-label/", "LABEL")):
        if spec.startswith(prefix):
            key, value = kind, spec[len(prefix) :]
    for v in volumes:
        if (key.upper() == "UUID" and value and value.lower() == v.uuid.lower()) or (
            key.upper() == "LABEL" and value and value == v.fs_label
        ):
            return v
        if v.lv is not None:
            vg, lv = v.lv.split("/", 1)
            mapper = vg.replace("-", "--") + "-" + lv.replace("-", "--")
            if spec in (f"/dev/{vg}/{lv}", f"/dev/mapper/{mapper}"):
                return v
        elif spec == f"/dev/{v.label}":
            return v
    return None


def with_fstab(volumes: list[Volume], root: Volume, text: str) -> list[Volume]:
    """``volumes`` mounted where the root file system's ``/etc/fstab`` (``text``, read
    from ``root``) says; a volume it does not name keeps its own ``mounted_on``."""
    where: dict[str, str] = {root.label: "/"}
    for spec, mount in fstab(text):
        v = fstab_volume(volumes, spec)
        if v is not None and (mount != "/" or v == root):
            where[v.label] = normal(mount)
    return [replace(v, mounted_on=where.get(v.label, v.mounted_on)) for v in volumes]


def partitions(disk: str, head: bytes, disk_size: int, gpt: bytes = b"") -> list[Volume]:
    """The partitions of ``disk`` from its first sector ``head`` (MBR) and, for a GPT disk,
    ``gpt``: the bytes from LBA 1 through its partition entries.  [] when none."""
    if len(head) < SECTOR or head[510:512] != b"\x55\xaa":
        return []
    entries = [struct.unpack_from("<B3xB3xII", head, 446 + 16 * n) for n in range(4)]
    if any(e[1] == 0xEE for e in entries):
        return _gpt(disk, gpt, disk_size)
    found = []
    for n, (_boot, ptype, lba, count) in enumerate(entries, start=1):
        if ptype in _MBR_SKIP or count == 0 or (lba + count) * SECTOR > disk_size:
            continue
        found.append(Volume(disk, n, lba * SECTOR, count * SECTOR))
    return found


def gpt_span(head_lba1: bytes) -> int:
    """How many bytes from LBA 1 hold the GPT header and its entries (0: not a GPT)."""
    if head_lba1[:8] != GPT_SIGNATURE:
        return 0
    entries_lba, count, size = struct.unpack_from("<QII", head_lba1, 72)
    return int((entries_lba - 1) * SECTOR + count * size)


def _gpt(disk: str, gpt: bytes, disk_size: int) -> list[Volume]:
    if gpt[:8] != GPT_SIGNATURE:
        return []
    entries_lba, count, size = struct.unpack_from("<QII", gpt, 72)
    (crc,) = struct.unpack_from("<I", gpt, 88)
    base = (entries_lba - 1) * SECTOR
    table = gpt[base : base + count * size]
    if len(table) < count * size or zlib.crc32(table) != crc:
        return []
    found = []
    for n in range(count):
        entry = table[n * size : (n + 1) * size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if (last + 1) * SECTOR <= disk_size and last >= first:
            found.append(Volume(disk, n + 1, first * SECTOR, (last - first + 1) * SECTOR))
    return found


def normal(path: str) -> str:
    """``path`` made absolute and normalised (no ``..`` above the root)."""
    return posixpath.normpath("/" + path.strip()).replace("//", "/")


def resolve(volumes: list[Volume], path: str) -> tuple[Volume, str] | None:
    """The volume mounted at the longest prefix of the guest path ``path`` and the path
    inside its file system; None when no mounted volume holds it."""
    path = normal(path)
    best: tuple[Volume, str] | None = None
    for v in volumes:
        if v.mounted_on is None:
            continue
        mount = normal(v.mounted_on)
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            inner = normal(path[len(mount) :])
            if best is None or len(mount) > len(normal(best[0].mounted_on or "")):
                best = (v, inner)
    return best


def guest_path(volume: Volume, inner: str) -> str:
    """The guest's path of ``inner`` (a path in ``volume``'s file system)."""
    if volume.mounted_on is None:
        return normal(inner)
    return normal(posixpath.join(volume.mounted_on, inner.lstrip("/")))


def matches(pattern: str, path: str) -> bool:
    """``files find``: a pattern with a ``/`` matches the whole path, else the name."""
    if "/" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(posixpath.basename(path), pattern)
