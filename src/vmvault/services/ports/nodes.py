"""The catalog's nodes and named leases (domain/node.py says what they mean)."""

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
