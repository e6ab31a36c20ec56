"""Errors are data.

Every failure a user can meet is a subclass of :class:`VmvaultError` with a stable ``code``
(what scripts and the API match on), a ``message`` template (the class docstring's first line
when no ``message`` is set) and a ``remedy`` (what the user does about it).  The exit code of
the CLI and the HTTP status of the API are derived from ``kind`` at the edge only:

* ``usage``    – bad input, refused before anything changed (exit 2, HTTP 400/404/409)
* ``failure``  – the operation ran and failed (exit 1, HTTP 500/502)

Messages are ``str.format`` templates filled from keyword arguments, so a caller writes
``VmNotFound(vm="lab-1")`` and never builds prose itself.  ``vmvault errors`` lists them all.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Kind = Literal["usage", "failure"]


class VmvaultError(Exception):
    """Base of every expected vmvault failure."""

    code: ClassVar[str] = "VMVAULT_ERROR"
    message: ClassVar[str] = "vmvault failed"
    remedy: ClassVar[str] = "See the job log for details."
    kind: ClassVar[Kind] = "failure"
    #: Subclasses register themselves here so ``vmvault errors`` can list the catalog.
    registry: ClassVar[dict[str, type[VmvaultError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in VmvaultError.registry and VmvaultError.registry[cls.code] is not cls:
            raise TypeError(f"duplicate error code {cls.code}")
        VmvaultError.registry[cls.code] = cls

    def __init__(self, detail: str | None = None, /, **fields: object) -> None:
        self.fields = fields
        self.detail = detail
        text = self.message.format(**fields) if fields else self.message
        if detail:
            text = f"{text}: {detail}"
        self.text = text
        self.remedy_text = self.remedy.format(**fields) if fields else self.remedy
        super().__init__(text)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.text, "remedy": self.remedy_text}


# --- input ---------------------------------------------------------------------------------


class InvalidInput(VmvaultError):
    code = "INVALID_INPUT"
    message = "{what} is not valid"
    remedy = "Check the value and try again."
    kind = "usage"


class VaultNotFound(VmvaultError):
    code = "VAULT_NOT_FOUND"
    message = "no vault named '{name}'"
    remedy = "List vaults with 'vmvault vault list' or create one with 'vmvault vault create'."
    kind = "usage"


class VaultAmbiguous(VmvaultError):
    code = "VAULT_NOT_CHOSEN"
    message = "{count} vaults exist and none was chosen"
    remedy = "Name the vault with --vault NAME (or set VMVAULT_VAULT)."
    kind = "usage"


class NoVault(VmvaultError):
    code = "NO_VAULT"
    message = "no vault exists yet"
    remedy = "Create one with 'vmvault vault create NAME --location LOC'."
    kind = "usage"


class VaultExists(VmvaultError):
    code = "VAULT_EXISTS"
    message = "a vault named '{name}' already exists"
    remedy = "Choose another name."
    kind = "usage"


class VaultPathInUse(VmvaultError):
    code = "VAULT_PATH_IN_USE"
    message = "{path} is not an empty directory"
    remedy = "Give --path an empty or new directory."
    kind = "usage"


class HostExists(VmvaultError):
    code = "HOST_EXISTS"
    message = "host {uri} is already known (location '{location}')"
    remedy = "Remove it first with 'vmvault host remove' to move it to another location."
    kind = "usage"


class HostNotFound(VmvaultError):
    code = "HOST_NOT_FOUND"
    message = "no host with URI {uri}"
    remedy = "List hosts with 'vmvault host list'."
    kind = "usage"


class HostUnreachable(VmvaultError):
    code = "HOST_UNREACHABLE"
    message = "cannot connect to libvirt at {uri}"
    remedy = (
        "Check that libvirtd runs on that host and that the URI is right "
        "('vmvault lab up' starts a local libvirtd)."
    )


class VmNotFound(VmvaultError):
    code = "VM_NOT_FOUND"
    message = "no VM matches '{vm}'"
    remedy = "Run 'vmvault discover' and then 'vmvault vm list' to see the VMs vmvault knows."
    kind = "usage"


class VmAmbiguous(VmvaultError):
    code = "VM_AMBIGUOUS"
    message = "'{vm}' matches several VMs: {candidates}"
    remedy = "Name the VM by uuid, or as HOST/NAME or GROUP/NAME."
    kind = "usage"


class JobNotFound(VmvaultError):
    code = "JOB_NOT_FOUND"
    message = "no job with id {job}"
    remedy = "List jobs with 'vmvault jobs list'."
    kind = "usage"


class JobNotActive(VmvaultError):
    code = "JOB_NOT_ACTIVE"
    message = "job {job} has already ended ({state})"
    remedy = "Nothing to cancel; 'vmvault jobs show {job}' shows how it ended."
    kind = "usage"


# --- concurrency -----------------------------------------------------------------------------


class DiscoveryInProgress(VmvaultError):
    code = "DISCOVERY_IN_PROGRESS"
    message = "another discovery is already running for vault '{vault}' (job {job})"
    remedy = "Wait for the running discovery to finish ('vmvault jobs wait {job}'), then retry."
    kind = "usage"


class OperationInProgress(VmvaultError):
    code = "OPERATION_IN_PROGRESS"
    message = "another operation is in progress on this item: {vm} (job {job}, {job_type})"
    remedy = "Wait for job {job} to finish, then retry."
    kind = "usage"


# --- registration --------------------------------------------------------------------------


class VmNotInLocation(VmvaultError):
    code = "VM_NOT_IN_LOCATION"
    message = "VM {vm} is on host {host} in location '{location}', not in '{vault_location}'"
    remedy = "Register it with a vault of location '{location}'."
    kind = "usage"


class VmVanished(VmvaultError):
    code = "VM_DELETED"
    message = "VM {vm} no longer exists on host {host}"
    remedy = (
        "If the VM was deleted on purpose, stop its protection and keep its data "
        "('vmvault protection stop {vm} --retain-data': its points stay restorable); if it "
        "was moved or recreated, run 'vmvault discover'."
    )


class AlreadyRegistered(VmvaultError):
    code = "ALREADY_REGISTERED"
    message = "VM {vm} is already registered with vault '{vault}'"
    remedy = "Nothing to do; 'vmvault vm show {vm}' shows its state."
    kind = "usage"


class AgentNotConfigured(VmvaultError):
    code = "AGENT_NOT_CONFIGURED"
    message = "VM {vm} has no qemu-guest-agent channel (org.qemu.guest_agent.0)"
    remedy = (
        "Add a <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
        "</channel> to the domain and install qemu-guest-agent in the guest, or register with "
        "--crash-consistent to accept crash-consistent backups only."
    )


class AgentNotResponding(VmvaultError):
    code = "AGENT_NOT_RESPONDING"
    message = "the guest agent of VM {vm} does not answer guest-ping"
    remedy = (
        "Check that qemu-guest-agent is installed and running in the guest, then retry; "
        "or register with --crash-consistent to accept crash-consistent backups only."
    )


class AgentTooOld(VmvaultError):
    code = "AGENT_TOO_OLD"
    message = "the guest agent of VM {vm} is version {version}; at least {minimum} is required"
    remedy = "Update qemu-guest-agent in the guest to {minimum} or later and retry."


class TooManyDisks(VmvaultError):
    code = "TOO_MANY_DISKS"
    message = "VM {vm} has {count} disks to back up; the limit is {limit}"
    remedy = (
        "Detach some data disks, or raise the limit (VMVAULT_MAX_DISKS / --max-disks) "
        "if this host can take it."
    )


class NoBackupableDisk(VmvaultError):
    code = "UNSUPPORTED_CONFIGURATION"
    message = "VM {vm} has no disk that can be backed up ({reasons})"
    remedy = "vmvault backs up file-backed qcow2 or raw disks; give the VM one."


# --- environment ---------------------------------------------------------------------------


class LabError(VmvaultError):
    code = "LAB_FAILED"
    message = "the lab could not be set up"
    remedy = (
        "Read the message; 'vmvault lab status' shows what exists, 'vmvault lab down' cleans up."
    )


class GuestBootTimeout(VmvaultError):
    code = "LAB_GUEST_TIMEOUT"
    message = "lab guest {vm} did not answer guest-ping within {seconds}s"
    remedy = "The console log tail above shows how far it got; 'vmvault lab down' cleans up."


class CatalogError(VmvaultError):
    code = "CATALOG_ERROR"
    message = "the catalog database could not be used"
    remedy = "Check VMVAULT_HOME and its permissions; the catalog is VMVAULT_HOME/catalog.db."


class JobInterrupted(VmvaultError):
    code = "JOB_INTERRUPTED"
    message = "the process running this job ({pid}) ended before the job did"
    remedy = "Run the operation again."


class InternalError(VmvaultError):
    code = "INTERNAL_ERROR"
    message = "unexpected internal error"
    remedy = "This is a bug: report it with the job log ('vmvault jobs show ID')."


# --- lab (added by lab engineer) -------------------------------------------------------------


class AgentError(VmvaultError):
    code = "AGENT_COMMAND_FAILED"
    message = "guest agent command {command} failed on VM {vm}"
    remedy = (
        "Check that qemu-guest-agent runs in the guest ('guest-ping') and that the VM is "
        "running and not frozen, then retry."
    )


# --- recovery points -----------------------------------------------------------------------


class InsufficientSpace(VmvaultError):
    code = "INSUFFICIENT_SPACE"
    message = "{path} has {free} bytes free; the restore needs {need}"
    remedy = "Free space there or restore into another directory."
    kind = "usage"


class VerifyFailed(VmvaultError):
    code = "VERIFY_FAILED"
    message = "{count} recovery point(s) are damaged: {points}"
    remedy = (
        "The job log names each missing or corrupt chunk. Take a new backup of the affected "
        "VMs; the damaged points cannot be fully restored."
    )


def catalog_markdown() -> str:
    """The error catalog as the Markdown table of ``docs/errors.md`` (kept in step by a test)."""
    lines = [
        "# Errors",
        "",
        "Every failure a user can meet, as `vmvault errors` lists it. `usage` errors are refused",
        "before anything changes (exit 2); `failure` errors end a job as failed (exit 1).",
        "Generated from `src/vmvault/domain/errors.py` by `vmvault errors --markdown`.",
        "",
        "| code | kind | message | remedy |",
        "|---|---|---|---|",
    ]
    for cls in sorted(VmvaultError.registry.values(), key=lambda c: c.code):
        cells = [f"`{cls.code}`", cls.kind, cls.message, cls.remedy]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --- data path (added by dataplane engineer) -------------------------------------------------


class VaultNotInitialised(VmvaultError):
    code = "VAULT_NOT_INITIALISED"
    message = "{path} holds no vmvault chunk store (its 'config' file is missing)"
    remedy = "Check the vault's directory; a vault created by 'vmvault vault create' has one."
    kind = "usage"


class VaultConfigCorrupt(VmvaultError):
    code = "VAULT_CONFIG_CORRUPT"
    message = "the configuration of the vault at {path} cannot be read"
    remedy = "Restore the vault's 'config' file from a copy of the vault directory."


class VaultFormatUnsupported(VmvaultError):
    code = "VAULT_FORMAT_UNSUPPORTED"
    message = "{what} at {path} has format version {found}; this vmvault reads version {supported}"
    remedy = "Use the vmvault release that wrote this vault (or a newer one)."
    kind = "usage"


class VaultLocked(VmvaultError):
    code = "VAULT_LOCKED"
    message = "the vault at {path} is locked by {holder}"
    remedy = "Wait for the {holder} to finish, then retry."
    kind = "usage"


class VaultFull(VmvaultError):
    code = "VAULT_FULL"
    message = "the file system of the vault at {path} is full"
    remedy = (
        "Free space: delete old recovery points and run garbage collection, "
        "or move the vault to a larger file system."
    )


class PassphraseRequired(VmvaultError):
    code = "PASSPHRASE_REQUIRED"
    message = "the vault at {path} is encrypted and no passphrase was given"
    remedy = "Give the vault's passphrase (and its key file)."
    kind = "usage"


class WrongPassphrase(VmvaultError):
    code = "WRONG_PASSPHRASE"
    message = "the passphrase does not unlock the key file {key_file}"
    remedy = "Check the passphrase (it is case sensitive) and that this is the vault's key file."
    kind = "usage"


class KeyFileMissing(VmvaultError):
    code = "KEY_FILE_MISSING"
    message = "the key file {key_file} of an encrypted vault does not exist"
    remedy = (
        "Give the path of the key file written when the vault was created (it is kept outside "
        "the vault; restore it from your copy). Without it the vault cannot be read."
    )
    kind = "usage"


class KeyFileInvalid(VmvaultError):
    code = "KEY_FILE_INVALID"
    message = "{key_file} is not a vmvault key file or is damaged"
    remedy = "Give the key file written when the vault was created, or restore it from your copy."
    kind = "usage"


class KeyFileMismatch(VmvaultError):
    code = "KEY_FILE_MISMATCH"
    message = "the key file {key_file} belongs to another vault than {path}"
    remedy = "Give the key file written when this vault was created."
    kind = "usage"


class ChunkMissing(VmvaultError):
    code = "CHUNK_MISSING"
    message = "chunk {chunk} is missing from the vault"
    remedy = (
        "Run a verify of the vault to find every recovery point that references it; the next "
        "full backup of an affected VM stores the chunk again."
    )


class ChunkCorrupt(VmvaultError):
    code = "CHUNK_CORRUPT"
    message = "chunk {chunk} failed verification ({why})"
    remedy = (
        "The vault's storage damaged or altered this chunk. Restore from another recovery "
        "point, check the storage (dmesg, SMART), and run a verify of the vault."
    )


class IndexCorrupt(VmvaultError):
    code = "INDEX_CORRUPT"
    message = "the disk index {index} is damaged or does not match its manifest ({why})"
    remedy = "Do not use this recovery point; restore from another one and run a verify."


class ManifestCorrupt(VmvaultError):
    code = "MANIFEST_CORRUPT"
    message = "the manifest of recovery point {point} is damaged or was altered ({why})"
    remedy = (
        "Do not trust this recovery point; restore from another one, check who can write "
        "the vault directory, and run a verify."
    )


class PointNotFound(VmvaultError):
    code = "POINT_NOT_FOUND"
    message = "no recovery point {point} in the vault at {path}"
    remedy = "List the recovery points of the VM and pick one of them."
    kind = "usage"


class DiskReadFailed(VmvaultError):
    code = "DISK_READ_FAILED"
    message = "reading disk {disk} at offset {offset} failed"
    remedy = "Check that the disk (or its NBD export) is still reachable, then retry the backup."


class RestoreTargetExists(VmvaultError):
    code = "RESTORE_TARGET_EXISTS"
    message = "the restore target {target} already exists"
    remedy = "Choose another path, or allow overwriting it."
    kind = "usage"


class RestoreWriteFailed(VmvaultError):
    code = "RESTORE_WRITE_FAILED"
    message = "writing the restored disk {target} failed"
    remedy = "Check free space and permissions where the disk is restored, then retry."


class Cancelled(VmvaultError):
    code = "CANCELLED"
    message = "{operation} was cancelled"
    remedy = "Nothing was left half-written; run it again when needed."


# --- backup adapter (added by backup engineer) -----------------------------------------------


class FreezeFailed(VmvaultError):
    code = "FREEZE_FAILED"
    message = "the guest agent of VM {vm} could not freeze its file systems"
    remedy = (
        "The backup continued crash-consistent. Check the guest's fsfreeze hook scripts and "
        "qemu-guest-agent log ('guest-fsfreeze-status' should say thawed), then retry."
    )


class AgentFreezeTimeout(VmvaultError):
    code = "AGENT_FREEZE_TIMEOUT"
    message = "the guest agent of VM {vm} did not answer the freeze within {seconds}s"
    remedy = (
        "The backup continued crash-consistent. Check that qemu-guest-agent runs in the guest "
        "and that its fsfreeze hooks finish quickly; raise the freeze timeout if they need longer."
    )


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


class NbdReadFailed(DiskReadFailed):
    code = "NBD_READ_FAILED"
    message = "reading disk {disk} at offset {offset} through NBD failed"
    remedy = (
        "The export of the backup job (or qemu-nbd) failed or went away: check that the VM "
        "still runs and /var/log/libvirt/qemu/<vm>.log, then retry the backup."
    )


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


# --- policies (added by policy engineer) -----------------------------------------------------


class InvalidSchedule(InvalidInput):
    code = "INVALID_SCHEDULE"
    message = "schedule '{text}' is not valid"
    remedy = (
        "Write daily@HH:MM, weekly:DAYS@HH:MM (DAYS like mon,wed,fri or mon-fri) or "
        "every:Nh@HH:MM-HH:MM (N is 4, 6, 8 or 12; 24-hour times, 00:00-23:59)."
    )
    kind = "usage"


class UnknownTimeZone(InvalidInput):
    code = "UNKNOWN_TIME_ZONE"
    message = "'{tz}' is not an IANA time zone"
    remedy = (
        "Use a name such as UTC, Europe/Berlin or America/New_York "
        "('timedatectl list-timezones' lists them)."
    )
    kind = "usage"


class InvalidRetention(InvalidInput):
    code = "INVALID_RETENTION"
    message = "retention {retention} is not valid"
    remedy = (
        "Give whole numbers from 0 to 9999 for daily, weekly, monthly and yearly, at least "
        "one of them above 0 (e.g. daily=7 weekly=4 monthly=12)."
    )
    kind = "usage"


class RetentionTooShort(InvalidInput):
    code = "RETENTION_TOO_SHORT"
    message = (
        "retention {retention} is shorter than the schedule's interval: it keeps only the "
        "newest point, so every backup of '{schedule}' deletes the one before"
    )
    remedy = "Keep at least 2 points at one level, e.g. daily=7 (the last 7 days)."
    kind = "usage"


# --- restore (added by restore engineer) ---------------------------------------------------


class PointOfAnotherVm(VmvaultError):
    code = "POINT_OF_ANOTHER_VM"
    message = "recovery point {point} belongs to VM {owner}, not to {vm}"
    remedy = "List the VM's points with 'vmvault points list {vm}' and pick one of them."
    kind = "usage"


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


# --- protection (added by protection engineer) ---------------------------------------------


class PolicyExists(VmvaultError):
    code = "POLICY_EXISTS"
    message = "a policy named '{name}' already exists"
    remedy = "Choose another name, or change it with 'vmvault policy update {name} …'."
    kind = "usage"


class PolicyNotFound(VmvaultError):
    code = "POLICY_NOT_FOUND"
    message = "no policy named '{name}'"
    remedy = "List policies with 'vmvault policy list' or create one with 'vmvault policy create'."
    kind = "usage"


class PolicyInUse(VmvaultError):
    code = "POLICY_IN_USE"
    message = "policy '{name}' is used by {count} VM(s): {vms}"
    remedy = (
        "Move those VMs to another policy ('vmvault protect VM --policy OTHER') or stop "
        "their protection with --delete-data first."
    )
    kind = "usage"


class VmNotRegistered(VmvaultError):
    code = "VM_NOT_REGISTERED"
    message = "VM {vm} is not registered with vault '{vault}'"
    remedy = "Register it first: 'vmvault register {vm}'."
    kind = "usage"


class VmProtected(VmvaultError):
    code = "VM_PROTECTED"
    message = "VM {vm} is protected by policy '{policy}'"
    remedy = "Stop its protection first: 'vmvault protection stop {vm} --retain-data'."
    kind = "usage"


class WrongProtectionState(VmvaultError):
    code = "WRONG_PROTECTION_STATE"
    message = "VM {vm} is {state}: it cannot be {action}"
    remedy = "See its state with 'vmvault vm show {vm}'."
    kind = "usage"
