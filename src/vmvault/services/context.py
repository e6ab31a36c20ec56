"""What every service shares, passed as one object: :class:`ServiceContext`.

The catalog (a unit-of-work factory), the job runner (the one way work runs), the vault
service (resolving and opening vaults), the clock every decision reads and the size of the
data path's thread pool, and the node directory (which libvirt hosts jobs can run for).  The composition root builds one per process (one per worker in
``vmvault serve``) and hands it to each service; a service adds only what is its own (the
hypervisor port, a driver, limits).  :class:`Service` gives subclasses the shared parts as
attributes, so a use case reads ``self.uow``, ``self.runner``, ``self.vaults``, ``self.clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from vmvault.domain.approval import Guard, no_guard
from vmvault.domain.errors import HostNotServed, HostServedElsewhere
from vmvault.domain.host_uri import host_key, same_host
from vmvault.domain.placement import OwnNode
from vmvault.services.jobs import JobRunner
from vmvault.services.ports import NodeDirectory, UnitOfWorkFactory

if TYPE_CHECKING:  # vaults.py builds on nothing here; only the type is needed
    from vmvault.services.vaults import VaultService

#: True while a job is being *queued* (services/queue.py): then any live node of the VM's
#: host may run it; otherwise the check is made where the job runs, on this node.
_QUEUEING: ContextVar[bool] = ContextVar("vmvault_queueing", default=False)


@contextmanager
def queueing() -> Iterator[None]:
    """The placement checks of the block are those of a job queued for any node."""
    token = _QUEUEING.set(True)
    try:
        yield
    finally:
        _QUEUEING.reset(token)


@dataclass(frozen=True)
class ServiceContext:
    uow: UnitOfWorkFactory
    runner: JobRunner
    vaults: VaultService
    clock: Callable[[], datetime]
    #: Threads of the data path (hashing, compression, restore writes).
    workers: int = 2
    #: Which node serves which libvirt host (domain/placement.py); default: this process
    #: serves qemu:///system only.
    nodes: NodeDirectory = field(default_factory=OwnNode)


class Service:
    """Base of the use-case services that run jobs over vaults."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        #: holds a call that reduces protection for approval (services/approvals.py; set by
        #: bootstrap on the services that have such calls)
        self.guard: Guard = no_guard

    @property
    def uow(self) -> UnitOfWorkFactory:
        return self.ctx.uow

    @property
    def runner(self) -> JobRunner:
        return self.ctx.runner

    @property
    def vaults(self) -> VaultService:
        return self.ctx.vaults

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @property
    def workers(self) -> int:
        return self.ctx.workers

    def require_node(self, host_uri: str, vm: str, operation: str) -> None:
        """The one check of the placement rule (domain/placement.py) for a job touching the
        disks of VM ``vm`` (its label) on ``host_uri``, made when the job is asked for and
        again when it runs.  Queued (:func:`queueing`): some live node must serve the host,
        else ``HOST_NOT_SERVED``.  Run here: this node must serve it, else
        ``HOST_SERVED_ELSEWHERE`` (another live node does: queue it for that one) or
        ``HOST_NOT_SERVED``."""
        self.require_nodes([(host_uri, vm)], operation)

    def _about_pulling(self, uri: str) -> str:
        """HOST_NOT_SERVED's last advice: a pulled host's VMs are backed up only (one catalog
        read, on the refusal's path only); else where no vmvault can run, a pull."""
        with self.uow() as uow:
            host = uow.hosts.get(host_key(uri))
        if host is not None and host.pull_tls:
            return (
                f"Host {uri} is pulled from (--pull-tls): any node backs its VMs up, but "
                "nothing else touches their disks there; once a node runs on it, 'vmvault host "
                f"update {uri} --no-pull-tls' gives them back to it (docs/deployment.md, "
                "'Pulled hosts')."
            )
        return (
            "Where no vmvault can run, a backup (only) can pull the disks over NBD with TLS "
            "from any node: mark the host with 'vmvault host update URI --pull-tls DIR' "
            "(docs/deployment.md, 'Pulled hosts')."
        )

    def require_nodes(self, vms: Iterable[tuple[str, str]], operation: str) -> None:
        """:meth:`require_node` of every VM of ``vms`` (host URI, label), reading the live
        nodes once for all of them (a request over a fleet: not once per VM)."""
        nodes = self.ctx.nodes
        elsewhere = [(uri, vm) for uri, vm in vms if not same_host(uri, nodes.node_host)]
        if not elsewhere:
            return
        served = nodes.served()
        for uri, vm in elsewhere:
            args = {"uri": uri, "vm": vm, "operation": operation, "node_host": nodes.node_host}
            if host_key(uri) not in served:
                raise HostNotServed(**args, about_pulling=self._about_pulling(uri))
            if not _QUEUEING.get():
                raise HostServedElsewhere(**args)
