"""Reading a point without restoring it: exports (NBD) and file-level restore."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class DiskNotInPoint(VmvaultError):
    code = "DISK_NOT_IN_POINT"
    message = "recovery point {point} has no disk '{disk}' (its disks: {disks})"
    remedy = "Name one of the point's disks by its target, as 'vmvault points show' lists them."
    kind = "usage"


class FileNotInPoint(VmvaultError):
    code = "FILE_NOT_FOUND"
    message = "{path} does not exist in recovery point {point}"
    remedy = (
        "List its directory with 'vmvault files ls {point} DIR' (or find it with "
        "'vmvault files find {point} PATTERN'); an older point may still hold it."
    )
    kind = "usage"


class NoFileSystem(VmvaultError):
    code = "FILESYSTEM_NOT_FOUND"
    message = "no file system of recovery point {point} holds {path} ({why})"
    remedy = (
        "Give a path under a mount point 'vmvault files ls {point}' lists, or name the disk "
        "with --disk (a disk, a partition such as vdb2, or an LVM volume VG/LV) and a path from "
        "that file system's root (docs/files.md)."
    )
    kind = "usage"


class FileReadFailed(VmvaultError):
    code = "FILE_READ_FAILED"
    message = "reading {path} from recovery point {point} failed: {why}"
    remedy = (
        "Verify the point ('vmvault points verify {point}'); a damaged chunk fails the read. "
        "Check that nbdfuse and debugfs are installed (scripts/install-system.sh)."
    )


class ExportFailed(VmvaultError):
    code = "EXPORT_FAILED"
    message = "serving recovery point {point} over NBD failed: {why}"
    remedy = "Check the socket's directory is writable and not in use, then export again."
