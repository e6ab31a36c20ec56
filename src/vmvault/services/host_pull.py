"""How a host's VMs are backed up: by the host's own node, or pulled by any node over NBD with
TLS (domain/pull.py) — set by ``host add --pull-tls DIR`` and changed by ``host update
--pull-tls DIR`` / ``--no-pull-tls`` (docs/deployment.md, "Switching a host").

**One check of the directory** (:func:`checked_pull_dir`) for both commands: the URI names a
host (:func:`~vmvault.domain.pull.nbd_address`), the path is absolute and normalised
(:func:`~vmvault.domain.pull.validate_pull_dir`) and, unless ``--no-check``, its files are
usable on this node (the ``Hypervisor`` port's ``pull_dir_problems``).

**No switch while the host's VMs have a job running** (:func:`switch_blocker`).  A backup
reads the host's mode once, when it plans (``services/backups.py``), and keeps it to its end;
if its process dies, its clean-up must find its libvirt job the way it began it: a pull's job
on the host by the point in its journal (any node can end it), a node's job by its socket
under the node's work directory — a path on the host, with the run directory's lock and
leftovers there too, so the host's own node is the one that surely cleans it up (a dead job
of a node is recovered by a node of its host: services/recovery.py).  A host switched to
pulled while its node's backup ran would send the next backups to other nodes, whose
clean-up may leave that job alone as not theirs: the host's libvirt job would then be left
to nobody.  So a switch between the two ways is refused (``HOST_JOBS_ACTIVE``) while a job
that reads or writes the disks of one of the host's VMs (domain/placement.py ``touches_disks``) is in progress or
cancelling — a dead one too, until it is recovered.  Queued jobs do not block it: they read
the host's mode when they start.  Changing the directory of a host that stays pulled is not
a switch (a running pull keeps the directory it began with; its clean-up needs none).

**No job starts between the check and the write**: the check runs after
``jobs.hold_starts()`` in the same transaction — on PostgreSQL a ``SHARE`` lock of the jobs
table (a job's creation or claim waits for the switch's commit, then plans with the new
mode), on SQLite the transaction's ``BEGIN IMMEDIATE``.  The lock is taken before the host's
row is written: no transaction writes a host and then a job, so the two cannot deadlock.
"""

from __future__ import annotations

from vmvault.domain.errors import HostJobsActive, InvalidInput
from vmvault.domain.inputs import quoted
from vmvault.domain.job import Job, JobState
from vmvault.domain.placement import touches_disks
from vmvault.domain.pull import PULL_FILES, backed_up_by, nbd_address, validate_pull_dir
from vmvault.domain.vault import Host
from vmvault.services.ports import Hypervisor, UnitOfWork


def checked_pull_dir(hypervisor: Hypervisor, uri: str, value: str, check: bool) -> str:
    """``value`` as the client PKI directory of host ``uri`` (``--pull-tls DIR``), normalised;
    refused with ``INVALID_INPUT`` when the URI names no host, the path is not absolute, or
    (``check``) its files are not usable by this node."""
    nbd_address(uri)  # a host name to reach the export at
    directory = validate_pull_dir(value)
    problems = hypervisor.pull_dir_problems(directory) if check else []
    if problems:
        raise InvalidInput(
            f"{'; '.join(problems)} (a pulling node's NBD client certificates: "
            f"{', '.join(PULL_FILES)}; run this on a node that holds them, or give --no-check)",
            what=f"--pull-tls {quoted(directory)}",
        )
    return directory


def switch_blocker(uow: UnitOfWork, host: Host) -> tuple[Job, str] | None:
    """A running job (in progress or cancelling) that reads or writes the disks of one of
    ``host``'s VMs, with that VM's label; None when the host may switch (module docstring)."""
    vms = {vm.uuid: vm.label for vm in uow.vms.all([host.uri])}
    for job in uow.jobs.active():
        if job.state is JobState.QUEUED or not touches_disks(job.type, job.request):
            continue
        members = [job.vm_uuid] if job.vm_uuid else list((job.request or {}).get("vms") or [])
        hit = next((vms[u] for u in members if u in vms), None)
        if hit is not None:
            return job, hit
    return None


def set_pull_tls(uow: UnitOfWork, host: Host, pull_tls: str | None) -> None:
    """Write the host's new mode (None: backed up by its node) in the caller's unit of work,
    refused with ``HOST_JOBS_ACTIVE`` when it changes and :func:`switch_blocker` finds a job
    (the caller commits only when this returns)."""
    if (host.pull_tls is None) != (pull_tls is None):
        uow.jobs.hold_starts()  # no job starts between the check and the commit
        blocker = switch_blocker(uow, host)
        if blocker is not None:  # the caller's unit of work is left uncommitted: rolled back
            job, vm = blocker
            raise HostJobsActive(
                uri=host.uri,
                now=backed_up_by(host.pull_tls),
                job=job.id,
                job_type=job.type.value,
                state=job.state.value,
                vm=vm,
            )
    uow.hosts.set_pull_tls(host.uri, pull_tls)


__all__ = ["checked_pull_dir", "set_pull_tls", "switch_blocker"]
