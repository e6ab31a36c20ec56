"""Nodes and leases: how processes sharing one catalog tell live work from orphaned work.

A *node* is a vmvault process that runs jobs — ``vmvault serve`` on a libvirt host, or a CLI
command running a job in the foreground — identified by ``MACHINE-PID-RANDOM`` and recorded
in the catalog with the libvirt URI of its host (``VMVAULT_NODE_HOST``). While it runs jobs,
its heartbeat (every :data:`HEARTBEAT` s) renews its row and the *lease* of each of its active
jobs to now + :data:`LEASE`.

Liveness is the lease, not a pid: a job whose lease has passed is *orphaned* (its node died,
hung or lost the catalog for longer than the lease) and is recovered like an interrupted one.
A pid means something only on its own machine, so it is used there alone, as a shortcut: a
job of a node of *this* machine whose process is gone is orphaned at once, without waiting for
the lease (the all-in-one case: ``vmvault serve`` restarted after a kill). Jobs from before
leases (no node, no lease) are judged by their pid as before; a job whose node has no row yet
(created before the node's first heartbeat) by its lease alone.  A job the caller's own
process runs now is never orphaned (services/jobs.py ``JobRunner.orphaned``).

A *named lease* (the scheduler's leader lease) has one holder at a time: the holder renews it
before it expires; anyone may take it once it has expired (``LeaseRepository.acquire``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vmvault.domain.job import Job

#: How long a heartbeat vouches for a node's jobs.
LEASE = timedelta(seconds=30)
#: How often a node renews: three heartbeats fit in a lease, so one late beat loses nothing.
HEARTBEAT = LEASE / 3
#: The name of the scheduler's leader lease.
SCHEDULER_LEASE = "scheduler"


@dataclass(frozen=True)
class Node:
    id: str
    host: str  # the libvirt URI of the host it runs on
    machine: str  # the machine's host name
    pid: int
    started_at: datetime
    heartbeat_at: datetime


def orphaned(
    job: Job,
    now: datetime,
    machine: str,
    node: Node | None,
    pid_alive: Callable[[int], bool],
) -> bool:
    """Whether the active ``job`` has no live node behind it (see the module docstring).
    ``node``: the catalog's row of ``job.node``; ``machine``: the caller's machine."""
    if job.lease_until is not None and job.lease_until < now:
        return True
    # a job of a node whose row is not there yet (a CLI job created before its first beat)
    # may run on any machine: its pid means nothing here, only its lease does
    local = node.machine == machine if node is not None else job.node is None
    return local and job.pid is not None and not pid_alive(job.pid)
