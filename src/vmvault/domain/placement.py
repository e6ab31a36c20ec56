"""Placement: where a job that touches a VM's disks may run.

**The rule.** A backup, a restore (every mode but disks-only, which writes files where
vmvault runs), a restore test, reads or writes a VM's disks: by their local paths and through
the NBD export QEMU serves on a local unix socket. Only a process on the VM's own libvirt
host can do that. So such a job runs only on a *node* whose ``node_host`` (setting
``VMVAULT_NODE_HOST``, default ``qemu:///system``: the libvirt URI of the host the process
runs on) is the VM's host, and is refused *up front* — when it is asked for and again when it
runs — with ``HOST_NOT_SERVED``, never with a late NBD or path failure.

Which nodes exist is a port, :class:`~vmvault.services.ports.NodeDirectory`: the composition
root's is the catalog's nodes (services/nodes.py ``NodeService.serves``: this node, or any
whose heartbeat is younger than a lease); :class:`OwnNode`, which knows only the process's own
node host, is the default of a service context built without a catalog of nodes (unit tests).
"""

from __future__ import annotations

from typing import Any

from vmvault.domain.host_uri import DEFAULT_HOST_URI, host_key, same_host
from vmvault.domain.job import JobType

#: The restore mode that touches no VM (it writes image files where vmvault runs).
DISKS_ONLY = "disks-only"


def touches_disks(job_type: JobType, request: dict[str, Any] | None) -> bool:
    """Whether a job of ``job_type`` asked as ``request`` reads or writes its VM's disks (the
    rule above): a backup, a restore test, a restore of any mode but disks-only, a backup set
    (its members' backups run in its process).  Only such a job waits for a node of its host
    (the request's ``host`` — a set's, a restore's ``--host`` — else its VM's); any other job
    runs on any node."""
    if job_type in (JobType.BACKUP, JobType.BACKUP_SET):
        return True
    return job_type is JobType.RESTORE and (request or {}).get("mode") != DISKS_ONLY


class OwnNode:
    """The node directory of a process that knows no other node: it serves its own host."""

    def __init__(self, node_host: str = DEFAULT_HOST_URI) -> None:
        self.node_host = node_host

    def serves(self, host_uri: str) -> bool:
        return same_host(host_uri, self.node_host)

    def served(self) -> frozenset[str]:
        return frozenset({host_key(self.node_host)})
