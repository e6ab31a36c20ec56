"""Taking a backup: the point in time (freeze, pause, libvirt's backup job, checkpoints) and reading disks."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class DiskReadFailed(VmvaultError):
    code = "DISK_READ_FAILED"
    message = "reading disk {disk} at offset {offset} failed"
    remedy = "Check that the disk (or its NBD export) is still reachable, then retry the backup."


class NbdReadFailed(DiskReadFailed):
    code = "NBD_READ_FAILED"
    message = "reading disk {disk} at offset {offset} through NBD failed"
    remedy = (
        "The export of the backup job (or qemu-nbd) failed or went away: check that the VM "
        "still runs and /var/log/libvirt/qemu/<vm>.log, then retry the backup."
    )


class PullTlsFailed(NbdReadFailed):
    """A pull over NBD with TLS (domain/pull.py) could not authenticate: never read in plain
    text instead."""

    code = "PULL_TLS_FAILED"
    message = "the TLS connection to the NBD export of disk {disk} at {address} failed"
    remedy = (
        "The pulling node's directory {certificates} (host add --pull-tls) must hold "
        "ca-cert.pem (the CA that signed the host's backup server certificate, whose names "
        "must include {host}), client-cert.pem and client-key.pem (signed by the CA of the "
        "host's backup_tls_x509_cert_dir in qemu.conf, which must hold ca-cert.pem, "
        "server-cert.pem and server-key.pem readable by QEMU). vmvault never pulls without "
        "TLS (docs/deployment.md, 'Pulled hosts')."
    )


class NbdConnectTimeout(NbdReadFailed):
    """No NBD session within the connect deadline: a firewall that drops the packets, or a
    server that accepts and never answers (a stalled TLS handshake)."""

    code = "NBD_CONNECT_TIMEOUT"
    message = "no NBD session with the export of disk {disk} at {address} within {seconds}s"
    remedy = (
        "Check that this node reaches {address} (a pulled host's ports 10809-10872 open from "
        "the nodes, nothing dropping the packets) and that QEMU listens there, not on loopback "
        "(docs/deployment.md, 'Pulled hosts'), then retry the backup."
    )


class PullDiskNotFile(VmvaultError):
    code = "PULL_DISK_NOT_FILE"
    message = (
        "VM {vm} of host {uri}, which vmvault pulls from, has disks that are not image files: "
        "{disks}"
    )
    remedy = (
        "A pull puts each disk's scratch file next to its image file on the host, which a "
        "block device, a storage-pool volume or a network disk does not have. Leave those "
        "disks out of the VM's backups ('vmvault vm update {vm} --exclude-disk TARGET'), or "
        "run a vmvault node on host {uri} (docs/deployment.md, 'Pulled hosts'). Nothing was "
        "begun."
    )
    kind = "usage"


class PullVmShutOff(VmvaultError):
    code = "PULL_VM_SHUT_OFF"
    message = (
        "VM {vm} of host {uri}, which vmvault pulls from, is shut off: a pull reads a running "
        "or paused VM through libvirt's backup job"
    )
    remedy = (
        "Start (or pause) the VM and back it up again: a shut-off VM's images are read by "
        "their paths, which only a vmvault node on host {uri} can do (docs/deployment.md, "
        "'Pulled hosts')."
    )
    kind = "usage"


class FreezeFailed(VmvaultError):
    code = "FREEZE_FAILED"
    message = "the guest agent of VM {vm} could not freeze its file systems"
    remedy = (
        "The backup took a saved-state point instead (VM paused for the instant, "
        "crash-consistent). Check the guest's fsfreeze hook scripts and "
        "qemu-guest-agent log ('guest-fsfreeze-status' should say thawed), then retry."
    )


class AgentFreezeTimeout(VmvaultError):
    code = "AGENT_FREEZE_TIMEOUT"
    message = "the guest agent of VM {vm} did not answer the freeze within {seconds}s"
    remedy = (
        "The backup took a saved-state point instead (VM paused for the instant, "
        "crash-consistent). Check that qemu-guest-agent runs in the guest "
        "and that its fsfreeze hooks finish quickly; raise the freeze timeout if they need longer."
    )


class FreezeRequired(VmvaultError):
    code = "FREEZE_REQUIRED"
    message = "VM {vm} may not be paused and its file systems could not be frozen"
    remedy = (
        "Nothing was left behind (guest thawed, no backup job, no checkpoint). Fix the guest "
        "agent or its freeze (qemu-guest-agent running, fsfreeze hooks finishing within the "
        "freeze timeout), or back the VM up with its cluster manager's help."
    )


class ConsistencyNotMet(VmvaultError):
    code = "CONSISTENCY_NOT_MET"
    message = "VM {vm} gave a {actual} point, {required} was required"
    remedy = (
        "The point was discarded (no point, no checkpoint). For application-consistent "
        "points install the vmvault fsfreeze hook dispatcher and working application hooks "
        "in /etc/qemu/fsfreeze-hook.d/; for file-system-consistent ones a running "
        'qemu-guest-agent; or lower --require (docs/backup.md, "Consistency").'
    )
    kind = "failure"


class ThawFailed(VmvaultError):
    code = "THAW_FAILED"
    message = "the file systems of VM {vm} may still be frozen: thaw failed"
    remedy = (
        "Thaw them now with 'virsh domfsthaw {vm}'; the guest cannot write to them until then. "
        "vmvault retries the thaw when it cleans up before the next backup."
    )


class BackupBeginFailed(VmvaultError):
    code = "BACKUP_BEGIN_FAILED"
    message = "libvirt could not start the backup job of VM {vm}"
    remedy = (
        "Read the message; libvirtd's log and /var/log/libvirt/qemu/<vm>.log say more. "
        "Nothing was left behind; retry the backup."
    )


class BackupAbortFailed(VmvaultError):
    code = "BACKUP_ABORT_FAILED"
    message = "the backup job of VM {vm} could not be ended"
    remedy = "End it with 'virsh domjobabort {vm}'; until then no other backup of the VM can start."


class BackupJobRunning(VmvaultError):
    code = "BACKUP_JOB_RUNNING"
    message = "VM {vm} already has an active {job} job that vmvault did not start now"
    remedy = (
        "Wait for that job to end ('virsh domjobinfo {vm}'). If it belongs to a vmvault process "
        "that died, vmvault cleans it up before the next backup; otherwise end it with "
        "'virsh domjobabort {vm}'."
    )
    kind = "usage"


class BackupVmNotRunning(VmvaultError):
    code = "BACKUP_VM_NOT_RUNNING"
    message = "VM {vm} is {state}: a live (pull-mode) backup needs a running or paused VM"
    remedy = "Back it up offline (its images are read directly), or start it first."
    kind = "usage"


class CheckpointMissing(VmvaultError):
    code = "CHECKPOINT_MISSING"
    message = "checkpoint {checkpoint} of VM {vm} cannot be used for an incremental backup"
    remedy = (
        "Take a full backup (vmvault falls back to one by itself); it starts a new "
        "checkpoint chain."
    )


class CheckpointOperationFailed(VmvaultError):
    code = "CHECKPOINT_OPERATION_FAILED"
    message = "could not {operation} checkpoint {checkpoint} of VM {vm}"
    remedy = "Read the message; 'virsh checkpoint-list {vm}' shows the VM's checkpoints."


class WorkDirUnusable(VmvaultError):
    code = "WORK_DIR_UNUSABLE"
    message = "the backup work directory {path} cannot be used"
    remedy = (
        "QEMU (user libvirt-qemu) must reach its NBD socket and scratch files there: every "
        "parent needs o+x (e.g. 'chmod o+x {culprit}'), or choose another directory."
    )


class OfflineExportFailed(VmvaultError):
    code = "OFFLINE_EXPORT_FAILED"
    message = "qemu-nbd could not export {image}"
    remedy = (
        "Check that the VM is shut off (a running VM holds the image's lock) and that the "
        "image is readable, then retry."
    )
