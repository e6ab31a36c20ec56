"""Hosts, VMs, discovery and registration (including the guest agent's checks)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


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


class HostAuthFailed(HostUnreachable):
    """libvirt refused the connection's authentication: the host's TLS certificate did not
    verify, the host refused this node's certificate, or SASL/polkit refused (a
    :class:`HostUnreachable`: discovery reports it as any host it cannot reach).  The libssh
    transports report a refused key here too; ``qemu+ssh`` (the ssh command) reports its
    failures as a plain ``HOST_UNREACHABLE``."""

    code = "HOST_AUTH_FAILED"
    message = "libvirt at {uri} and this node did not authenticate each other"
    remedy = (
        "For qemu+tls: the CA in the URI's pkipath (default /etc/pki/CA/cacert.pem) must be the "
        "one that signed the host's certificate, whose names must include the URI's host; and "
        "the host must accept this node's client certificate (clientcert.pem there, signed by "
        "a CA the host trusts). libvirt's own warning above says which check failed. For "
        "qemu+libssh/libssh2: this node's key (keyfile) and the host's key in known_hosts. "
        "With SASL or polkit on the host: the credentials it asks for. vmvault never skips "
        "the check (no_verify is refused)."
    )


class HostUriRunsCommand(VmvaultError):
    code = "HOST_URI_RUNS_COMMAND"
    message = "URI {uri} makes libvirt run a command (the ext transport, command= or netcat=)"
    remedy = (
        "Use a qemu:// URI with the ssh, libssh, tls, tcp or unix transport; if running that "
        "command is intended, add the host with 'vmvault host add URI --allow-command'."
    )
    kind = "usage"


class HostNotServed(VmvaultError):
    code = "HOST_NOT_SERVED"
    message = (
        "no vmvault node serves host {uri}, where VM {vm} runs: a {operation} reads and "
        "writes the VM's disks on their host (this node serves {node_host})"
    )
    remedy = (
        "Run the {operation} with vmvault on that host, with VMVAULT_NODE_HOST={uri} and the "
        "same catalog and vaults (docs/deployment.md, 'Remote libvirt hosts'); if this process "
        "does run on that host, set VMVAULT_NODE_HOST={uri}. {about_pulling}"
    )
    kind = "usage"


class HostJobsActive(VmvaultError):
    """``host update --pull-tls`` / ``--no-pull-tls`` would switch how a host's VMs are backed
    up (by its node, or pulled by any node) while a job that reads their disks runs: a backup
    keeps the way it was planned, and its crash clean-up must find its libvirt job the same
    way (docs/deployment.md, "Switching a host")."""

    code = "HOST_JOBS_ACTIVE"
    message = (
        "host {uri} is {now} and job {job} ({job_type}, {state}) of its VM {vm} runs that "
        "way: the host cannot switch before it ends"
    )
    remedy = (
        "Wait for the host's jobs to end ('vmvault jobs wait {job}'; a job whose process "
        "died ends when a node recovers it: a node of the host, or any node when the host has "
        "none), then run the host update again."
    )
    kind = "usage"


class HostServedElsewhere(VmvaultError):
    code = "HOST_SERVED_ELSEWHERE"
    message = (
        "VM {vm} runs on host {uri}, which another vmvault node serves; this node serves "
        "{node_host}, and a {operation} reads and writes the VM's disks on their host"
    )
    remedy = (
        "Queue the {operation} for that node: add --no-wait (then 'vmvault jobs wait JOB'), "
        "or ask through the REST API; the node of {uri} runs it (docs/deployment.md)."
    )
    kind = "usage"


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


class VmNotInLocation(VmvaultError):
    code = "VM_NOT_IN_LOCATION"
    message = "VM {vm} is on host {host} in location '{location}', not in '{vault_location}'"
    remedy = "Register it with a vault of location '{location}'."
    kind = "usage"


class VmDeleted(VmvaultError):
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


class AgentCommandFailed(VmvaultError):
    code = "AGENT_COMMAND_FAILED"
    message = "guest agent command {command} failed on VM {vm}"
    remedy = (
        "Check that qemu-guest-agent runs in the guest ('guest-ping') and that the VM is "
        "running and not frozen, then retry."
    )


class TooManyDisks(VmvaultError):
    code = "TOO_MANY_DISKS"
    message = "VM {vm} has {count} disks to back up; the limit is {limit}"
    remedy = (
        "Detach some data disks, or raise the limit (VMVAULT_MAX_DISKS / --max-disks) "
        "if this host can take it."
    )


class UnsupportedConfiguration(VmvaultError):
    code = "UNSUPPORTED_CONFIGURATION"
    message = "VM {vm} has no disk that can be backed up ({reasons})"
    remedy = "vmvault backs up file-backed qcow2 or raw disks; give the VM one."
