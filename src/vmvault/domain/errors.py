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
        "Run 'vmvault discover'. If the VM was deleted on purpose, stop its protection "
        "and keep its data."
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
