"""The built-in lab of test guests."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class LabFailed(VmvaultError):
    code = "LAB_FAILED"
    message = "the lab could not be set up"
    remedy = (
        "Read the message; 'vmvault lab status' shows what exists, 'vmvault lab down' cleans up."
    )


class LabGuestTimeout(VmvaultError):
    code = "LAB_GUEST_TIMEOUT"
    message = "lab guest {vm} did not answer guest-ping within {seconds}s"
    remedy = "The console log tail above shows how far it got; 'vmvault lab down' cleans up."


class StorageLabFailed(VmvaultError):
    code = "LAB_STORAGE_FAILED"
    message = "the lab's Ceph cluster failed: {what}"
    remedy = (
        "The end of the daemon's log is shown (all logs: {logs}). 'vmvault lab storage status' "
        "shows what runs; 'vmvault lab storage down' stops it and removes {root}, then "
        "'vmvault lab storage up' starts a fresh cluster."
    )


class StorageLabDirForeign(StorageLabFailed):
    code = "LAB_STORAGE_DIR_FOREIGN"
    message = "{root} is not a lab Ceph directory (it has files but no {marker}): left untouched"
    remedy = (
        "Set VMVAULT_LAB_DIR to a directory of the lab's own (its 'ceph' subdirectory is the "
        "cluster's), or, if {root} is a leftover of the lab, remove it yourself."
    )


class CatalogLabFailed(VmvaultError):
    code = "LAB_CATALOG_FAILED"
    message = "the lab's PostgreSQL catalog failed: {what}"
    remedy = (
        "'vmvault lab catalog status' shows whether it runs; 'vmvault lab catalog down' stops "
        "it and removes its directory, then 'vmvault lab catalog up' starts a fresh one."
    )


class CatalogLabDirForeign(CatalogLabFailed):
    code = "LAB_CATALOG_DIR_FOREIGN"
    message = (
        "{root} is not a lab PostgreSQL directory (it has files but no {marker}): left untouched"
    )
    remedy = (
        "Set VMVAULT_LAB_DIR to a directory of the lab's own (its 'postgres' subdirectory is "
        "the cluster's), or, if {root} is a leftover of the lab, remove it yourself."
    )
