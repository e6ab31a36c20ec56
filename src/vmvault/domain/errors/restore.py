"""Restoring a point: up-front checks, staging, defining and switching VMs, restore tests."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class InsufficientSpace(VmvaultError):
    code = "INSUFFICIENT_SPACE"
    message = "{path} has {free} bytes free; the restore needs {need}"
    remedy = "Free space there or restore into another directory."
    kind = "usage"


class RestoreTargetExists(VmvaultError):
    code = "RESTORE_TARGET_EXISTS"
    message = "the restore target {target} already exists"
    remedy = "Choose another path, or allow overwriting it."
    kind = "usage"


class RestoreWriteFailed(VmvaultError):
    code = "RESTORE_WRITE_FAILED"
    message = "writing the restored disk {target} failed"
    remedy = "Check free space and permissions where the disk is restored, then retry."


class RestoreNameExists(VmvaultError):
    code = "RESTORE_NAME_EXISTS"
    message = "a VM named {name} is already defined on {host}"
    remedy = (
        "Choose another name for --as-new, or overwrite that VM from one of its own points "
        "with --replace."
    )
    kind = "usage"


class RestoreDirUnusable(VmvaultError):
    code = "RESTORE_DIR_UNUSABLE"
    message = "{path} cannot hold the restored disks: {why}"
    remedy = (
        "Give --dir a directory vmvault can write and QEMU (user libvirt-qemu) can reach: "
        "every parent needs o+x (not under /root or a 0700 temporary directory)."
    )
    kind = "usage"


class RestoreHostNotLocal(VmvaultError):
    code = "RESTORE_HOST_NOT_LOCAL"
    message = "host {uri} is not this machine: a restore writes the disks where vmvault runs"
    remedy = "Run the restore with vmvault on that host, or restore to this host."
    kind = "usage"


class RestoreVmNotDefined(VmvaultError):
    code = "RESTORE_VM_NOT_DEFINED"
    message = "VM {vm} is no longer defined on {host}: there is nothing to replace"
    remedy = "Restore it as a new VM: --as-new NAME (its old name is fine)."
    kind = "usage"


class RestoreVmHasSnapshots(VmvaultError):
    code = "RESTORE_VM_HAS_SNAPSHOTS"
    message = "VM {vm} has libvirt snapshots ({snapshots}) that --replace would orphan"
    remedy = (
        "Delete or revert the snapshots first ('virsh snapshot-list {vm}'), "
        "or restore the point --as-new."
    )
    kind = "usage"


class RestoreUnsupportedDisk(VmvaultError):
    code = "RESTORE_UNSUPPORTED_DISK"
    message = "disk {target} of VM {vm} is a {kind}: --replace writes image files in place"
    remedy = "Restore the point --as-new (its disks become files), or --disks-only."
    kind = "usage"


class RestoreVerifyFailed(VmvaultError):
    code = "RESTORE_VERIFY_FAILED"
    message = "the restored image of disk {target} does not match the recovery point ({why})"
    remedy = (
        "Nothing was changed: the staged images were removed. Run 'vmvault verify --point "
        "POINT' and check the target file system, then retry or restore another point."
    )


class RestoreShutdownFailed(VmvaultError):
    code = "RESTORE_SHUTDOWN_FAILED"
    message = "VM {vm} could not be shut off for the restore"
    remedy = "Stop it yourself ('virsh destroy {vm}') and retry; nothing was replaced."


class RestoreDefineFailed(VmvaultError):
    code = "RESTORE_DEFINE_FAILED"
    message = "libvirt refused the restored definition of VM {vm}"
    remedy = (
        "Read the message. For --replace the previous disks and definition were put back; "
        "'vmvault jobs show' lists every step."
    )


class RestoreStartFailed(VmvaultError):
    code = "RESTORE_START_FAILED"
    message = "the restored VM {vm} did not start"
    remedy = (
        "The VM is defined with the restored disks; see /var/log/libvirt/qemu/{vm}.log. "
        "The previous disks of a replaced VM were kept (their paths are in the job log)."
    )


class RestoreTestFailed(VmvaultError):
    code = "RESTORE_TEST_FAILED"
    message = "restore test of point {point} failed: {why}"
    remedy = (
        "The point does not give back a working VM: check the guest's console log kept in "
        "the job log, and test an older point ('vmvault restore-test VM --point ID')."
    )


class InstantCopyFailed(VmvaultError):
    code = "INSTANT_COPY_FAILED"
    message = "instant recovery of {vm}: copying its disks to local storage failed"
    remedy = (
        "{vm} runs (or is paused on an I/O error) from the point's export until its disks are "
        "local. If it is paused, keep the export serving and run 'virsh resume {vm}'; then "
        "restore it again with --instant, or stop it and restore the point --as-new "
        "(docs/restore.md, 'Instant recovery')."
    )
