"""VMs owned by a cluster manager: the rules that keep vmvault's hands off them.

A cluster manager (pacemaker's ``VirtualDomain``, or anything an operator declares) starts,
stops and moves its VMs itself; a VM paused, shut off, undefined or redefined behind its back
is a failed resource, a fence, or a split brain.  vmvault therefore never does any of those to
a *cluster-managed* VM:

* its backups never pause it: a guest-quiesce that needs no pause is fine, a backup that would
  need the saved-state pause fails with ``CLUSTER_MANAGED_NO_PAUSE`` (the hand-off to the
  hypervisor carries ``allow_pause=False``, so a failed freeze cannot fall back to a pause);
* registering or protecting it so that its backups would pause it (no agent channel, or a
  silent agent accepted with ``--crash-consistent``) is refused with the same code;
* ``restore --replace`` is refused with ``CLUSTER_MANAGED_REPLACE`` (restore as new and hand
  the disks to the cluster manager).

Where ownership comes from (the first that applies is the reason shown): the domain's
libvirt metadata marker, a pacemaker ``VirtualDomain`` resource (both read by the hypervisor
adapter into :attr:`~vmvault.domain.vm.DomainFacts.cluster_managed`), or the host's settings
(:func:`mark_from_host`).  docs/backup.md, "VMs owned by a cluster manager".
"""

from __future__ import annotations

from collections.abc import Collection

from vmvault.domain.errors import ClusterManagedNoPause, ClusterManagedReplace
from vmvault.domain.recovery_point import pause_reason
from vmvault.domain.vm import VmItem

#: The reason's prefix when the host's settings make a VM cluster-managed.
HOST_SETTING = "listed as cluster-managed in the settings of host"


def mark_from_host(vm: VmItem, listed: Collection[str], host: str) -> None:
    """Apply the host's list of cluster-managed VMs (names or uuids) to ``vm``: a reason from
    the domain itself wins; a reason from an older host list is replaced or cleared."""
    if vm.cluster_managed and not vm.cluster_managed.startswith(HOST_SETTING):
        return
    on_list = vm.name in listed or vm.uuid in listed
    vm.cluster_managed = f"{HOST_SETTING} {host}" if on_list else None


def pause_needed(vm: VmItem) -> str | None:
    """Why a backup of ``vm`` while it runs would pause it (None: it would freeze instead):
    :func:`vmvault.domain.recovery_point.pause_reason`, the rule ``choose_method`` applies."""
    return pause_reason(vm.agent_channel, vm.crash_consistent_only)


def refuse_pause(vm: VmItem, need: str) -> None:
    """Raise ``CLUSTER_MANAGED_NO_PAUSE`` for a cluster-managed VM (``need``: why a pause)."""
    if vm.cluster_managed:
        raise ClusterManagedNoPause(vm=vm.label, why=vm.cluster_managed, need=need)


#: ``why`` of the refusal by a backup driver, which knows only the ``allow_pause`` it was given.
DRIVER_WHY = "its backup was started with allow_pause=False"
#: ``need`` of that refusal: the plan asked the driver to pause the guest.
DRIVER_NEED = "the plan had no guest-agent freeze for it, only the saved-state pause"


def pause_forbidden(label: str) -> ClusterManagedNoPause:
    """The refusal a backup driver raises when asked to pause a VM it may not pause (the
    service refuses first, with the catalog's reason: :func:`refuse_pause`)."""
    return ClusterManagedNoPause(vm=label, why=DRIVER_WHY, need=DRIVER_NEED)


def refuse_replace(vm: VmItem) -> None:
    """Raise ``CLUSTER_MANAGED_REPLACE`` for a cluster-managed VM."""
    if vm.cluster_managed:
        raise ClusterManagedReplace(vm=vm.label, why=vm.cluster_managed)
