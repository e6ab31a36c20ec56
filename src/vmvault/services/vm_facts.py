"""A VM item brought up to date with what its hypervisor says now, as discovery records it.

Discovery (:func:`vmvault.domain.inventory.reconcile`, then the host's settings), a
registration, a backup and a ``restore --replace`` check all see a VM the same way:
:meth:`~vmvault.domain.vm.VmItem.apply` of the hypervisor's
:class:`~vmvault.domain.vm.DomainFacts` (its libvirt metadata marker and pacemaker's
resources; when the cluster could not be asked, the catalog's ownership is kept), then
:func:`~vmvault.domain.cluster.mark_from_host` with the host's list of cluster-managed VMs.
"""

from __future__ import annotations

from datetime import datetime

from vmvault.domain.cluster import mark_from_host
from vmvault.domain.vm import DomainFacts, VmItem
from vmvault.services.ports import UnitOfWorkFactory

#: What a job warns when the cluster's configuration could not be read (``{why}``).
UNKNOWN_OWNERSHIP = "{why}; the recorded cluster ownership is kept"


def refresh(uow: UnitOfWorkFactory, vm: VmItem, facts: DomainFacts, now: datetime) -> str | None:
    """Apply ``facts`` and the host's settings to ``vm`` (in memory); the warning to give
    when cluster ownership could not be read (None: it was)."""
    vm.apply(facts, now)
    with uow() as u:
        host = u.hosts.get(vm.host_uri)
    if host is not None:
        mark_from_host(vm, host.cluster_managed, host.hostname or host.uri)
    return UNKNOWN_OWNERSHIP.format(why=facts.cluster_unknown) if facts.cluster_unknown else None
