"""Errors of backup sets (``vmvault backup VM… --set``, docs/sets.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class BackupSetFailed(VmvaultError):
    code = "BACKUP_SET_FAILED"
    message = "the backup set failed: VM {vm} failed ({reason})"
    remedy = (
        "No point was kept for any VM of the set (all were released, every begun backup job "
        "aborted, every new checkpoint deleted). Fix what the message names for that VM — "
        "its own job (see 'vmvault jobs show' of the set job) has the details — and back the "
        "set up again."
    )


class BackupSetAborted(VmvaultError):
    code = "BACKUP_SET_ABORTED"
    message = "the backup of VM {vm} was given up: its set failed ({reason})"
    remedy = (
        "Nothing is wrong with this VM: another VM of the set failed or the set was "
        "cancelled (the set job names it). This VM was released and its backup undone."
    )


class BackupSetTimeout(VmvaultError):
    code = "BACKUP_SET_TIMEOUT"
    message = "VM {vm} did not reach its point in time within {seconds} s of the set's first VM"
    remedy = (
        "Its guest agent or libvirt answered too slowly for the set's window. Check the VM "
        "(vmvault vm show, its agent), back it up alone to see how long its point takes, or "
        "raise VMVAULT_SET_HOLD_TIMEOUT."
    )


class SetNotFound(VmvaultError):
    kind = "usage"
    code = "SET_NOT_FOUND"
    message = "no backup set {set} in the catalog"
    remedy = "List the points with 'vmvault points list' (column SET) to see the sets."


class SetIncomplete(VmvaultError):
    code = "SET_INCOMPLETE"
    message = "backup set {set} is not complete: {found} of its {expected} points ({why})"
    remedy = (
        "A set whose job did not commit it is never restored or listed in part. Its job "
        "(column SET of 'vmvault points list', then 'vmvault jobs show') was interrupted or "
        "failed: start 'vmvault serve' (start-up recovery) or run the next set backup, which "
        "remove what is left of it, then back the set up again."
    )


class BackupSetSpansHosts(VmvaultError):
    kind = "usage"
    code = "BACKUP_SET_SPANS_HOSTS"
    message = "the VMs of a backup set must run on one host; these are on {hosts}"
    remedy = (
        "A set holds its VMs at one instant from one vmvault process on their host, and no "
        "crash-consistent instant across hosts is offered (docs/sets.md, 'Sets across "
        "hosts'). Back up each host's VMs as a set of their own (one set, or one policy "
        "--as-set, per host), or move the VMs that belong together onto one host."
    )
