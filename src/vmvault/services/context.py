"""What every service shares, passed as one object: :class:`ServiceContext`.

The catalog (a unit-of-work factory), the job runner (the one way work runs), the vault
service (resolving and opening vaults), the clock every decision reads and the size of the
data path's thread pool, and the node directory (which libvirt hosts jobs can run for).  The composition root builds one per process (one per worker in
``vmvault serve``) and hands it to each service; a service adds only what is its own (the
hypervisor port, a driver, limits).  :class:`Service` gives subclasses the shared parts as
attributes, so a use case reads ``self.uow``, ``self.runner``, ``self.vaults``, ``self.clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from vmvault.domain.approval import Guard, no_guard
from vmvault.domain.errors import HostNotServed
from vmvault.domain.placement import OwnNode
from vmvault.services.jobs import JobRunner
from vmvault.services.ports import NodeDirectory, UnitOfWorkFactory

if TYPE_CHECKING:  # vaults.py builds on nothing here; only the type is needed
    from vmvault.services.vaults import VaultService


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
        """Refuse (``HOST_NOT_SERVED``) a job touching the disks of VM ``vm`` (its label) on
        ``host_uri`` when no node serves that host: the one check of the placement rule
        (domain/placement.py), made when the job is asked for and again when it runs."""
        nodes = self.ctx.nodes
        if not nodes.serves(host_uri):
            raise HostNotServed(uri=host_uri, vm=vm, operation=operation, node_host=nodes.node_host)
