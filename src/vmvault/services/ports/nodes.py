"""Nodes: which node serves which libvirt host (domain/placement.py), and the catalog's
nodes and named leases (domain/node.py says what they mean)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from vmvault.domain.node import Node


class NodeRepository(Protocol):
    def beat(self, node: Node) -> None:
        """Record ``node``'s heartbeat (``node.heartbeat_at``); its first beat inserts it."""

    def forget(self, before: datetime) -> int:
        """Delete the nodes whose last heartbeat is older than ``before``; how many."""

    def get(self, node_id: str) -> Node | None: ...
    def all(self) -> list[Node]:
        """Every node that ever ran, the most recent heartbeat first."""


class LeaseRepository(Protocol):
    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take lease ``name`` for ``holder`` until ``until``, or renew it if ``holder`` has
        it; False when another holder's lease has not expired at ``now``.  MUST be atomic:
        of two concurrent callers at most one gets a lease another does not hold."""

    def holder(self, name: str, now: datetime) -> str | None:
        """The holder of an unexpired lease ``name`` at ``now``, if any."""

    def release(self, name: str, holder: str) -> None:
        """Give lease ``name`` up (nothing when ``holder`` does not hold it)."""


class NodeDirectory(Protocol):
    """Answers whether a job touching a VM's disks can run for a host.

    ``node_host`` is the libvirt URI of the host this process runs on (``VMVAULT_NODE_HOST``).
    ``serves(host_uri)`` is True when a live node serves ``host_uri``: this process's own node
    host, or (services/nodes.py ``NodeService``) any node of the catalog whose heartbeat is
    younger than a lease; :class:`~vmvault.domain.placement.OwnNode` knows only its own. It
    must not raise for an unknown host (it is False).  ``served()`` is the same answer for
    every host at once: the :func:`~vmvault.domain.host_uri.host_key` of each host a live
    node serves, read once (a request or a slot over many VMs asks it once, not per VM).
    """

    @property
    def node_host(self) -> str: ...

    def serves(self, host_uri: str) -> bool: ...
    def served(self) -> frozenset[str]: ...
