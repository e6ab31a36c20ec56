"""Selective disks and VMs owned by a cluster manager (docs/backup.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class DiskNotOfVm(VmvaultError):
    code = "DISK_NOT_OF_VM"
    message = "VM {vm} has no disk '{disk}' (its disks: {disks})"
    remedy = "Name disks by their target as 'vmvault vm show {vm}' lists them (vda, vdb, sda …)."
    kind = "usage"


class AllDisksExcluded(VmvaultError):
    code = "ALL_DISKS_EXCLUDED"
    message = "excluding {excluded} leaves VM {vm} no disk to back up"
    remedy = (
        "Keep at least one disk that can be backed up; to stop backing the VM up, use "
        "'vmvault protection stop' or 'vmvault unregister' instead."
    )
    kind = "usage"


class DiskNotBackupable(VmvaultError):
    code = "DISK_NOT_BACKUPABLE"
    message = "disk {disk} of VM {vm} cannot be included: {reason}"
    remedy = (
        "vmvault leaves pass-through, network and removable disks out of every backup "
        "(docs/backup.md, 'Selective disks'); back that storage up where it lives."
    )
    kind = "usage"


class ClusterManagedReplace(VmvaultError):
    code = "CLUSTER_MANAGED_REPLACE"
    message = (
        "VM {vm} is owned by a cluster manager ({why}): vmvault never shuts off, undefines "
        "or replaces it"
    )
    remedy = (
        "Restore it as a new VM ('vmvault restore {vm} --point POINT --as-new NAME'), then hand the "
        "restored disks to the cluster manager (e.g. stop the resource, swap the images, "
        "start it: 'pcs resource disable/enable')."
    )
    kind = "usage"


class ClusterManagedNoPause(VmvaultError):
    code = "CLUSTER_MANAGED_NO_PAUSE"
    message = (
        "VM {vm} is owned by a cluster manager ({why}): vmvault never pauses it, and its "
        "backup would need a pause ({need})"
    )
    remedy = (
        "Give the VM a working qemu-guest-agent (channel org.qemu.guest_agent.0, agent "
        "running) so that its backups freeze the guest instead, and register it while it runs "
        "without --crash-consistent; or back it up through the cluster manager."
    )
    kind = "usage"
