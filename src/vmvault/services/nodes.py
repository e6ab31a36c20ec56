"""This process as a node of the catalog: its identity, its heartbeat, the nodes it sees,
and which hosts a live node serves (the node directory of domain/placement.py).

The heartbeat (domain/node.py) runs while anything :meth:`NodeService.hold` s it — every job
this process runs (JobRunner.execute), and ``vmvault serve`` for its whole life: a thread that
every :data:`~vmvault.domain.node.HEARTBEAT` renews the node's row and the lease of each job
this process is running *now* (not of every active job carrying its id: a job whose end could
not be written — the catalog was away at that moment — stops being renewed, its lease runs
out and recovery closes it, so nothing stays in-progress forever).  A beat that fails (the
catalog is restarting, unreachable) is retried at the next one; a node that cannot beat for
longer than a lease has its jobs treated as orphaned by the others: that is the lease.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from vmvault.domain.host_uri import host_key, same_host
from vmvault.domain.node import HEARTBEAT, LEASE, Node
from vmvault.services.ports import UnitOfWorkFactory

#: A node silent this long is deleted from ``nodes`` (its jobs were recovered long ago).
FORGET_AFTER = timedelta(days=1)

#: The jobs this process runs now, by node id (held how many times): one registry for the
#: whole process, since each Services has its own NodeService (the server's scheduler thread,
#: its workers) — recovery skips these jobs and every heartbeat renews them.
_RUNNING: dict[str, Counter[int]] = {}
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class NodeIdentity:
    """Who this process is among the catalog's nodes."""

    id: str  # MACHINE-PID-RANDOM: unique even when a pid is reused
    host: str  # VMVAULT_NODE_HOST: the libvirt URI of the host it runs on
    machine: str
    pid: int
    started_at: datetime


class NodeService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        identity: NodeIdentity,
        interval: float = HEARTBEAT.total_seconds(),
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.identity = identity
        self.interval = interval
        self._holders = 0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        #: The last beat's failure (None: it succeeded), for the server's health.
        self.last_error: str | None = None

    @property
    def running(self) -> Counter[int]:
        """The jobs this process runs now as this node (:data:`_RUNNING`): those its
        heartbeat renews and recovery leaves alone, whichever NodeService holds them."""
        with _RUNNING_LOCK:
            return _RUNNING.setdefault(self.identity.id, Counter())

    def runs(self, job_id: int) -> bool:
        """Whether this process runs ``job_id`` now (it is not orphaned, whatever its lease)."""
        with _RUNNING_LOCK:
            return _RUNNING.get(self.identity.id, Counter())[job_id] > 0

    def lease_until(self) -> datetime:
        return self.clock() + LEASE

    def beat(self) -> int:
        """Renew the node's row and its jobs' leases now; how many jobs it renewed."""
        me = self.identity
        now = self.clock()
        with self.uow() as uow:
            uow.nodes.beat(Node(me.id, me.host, me.machine, me.pid, me.started_at, now))
            with _RUNNING_LOCK:
                held = sorted(_RUNNING.get(me.id, Counter()))
            renewed = uow.jobs.renew(me.id, held, now + LEASE)
            uow.nodes.forget(now - FORGET_AFTER)  # every CLI job adds a node: keep the table small
            uow.commit()
        return renewed

    @contextmanager
    def hold(self, job_id: int | None = None) -> Iterator[None]:
        """Keep the heartbeat running for the block (the first holder starts it), renewing
        ``job_id``'s lease meanwhile."""
        running = self.running
        with self._lock:
            if job_id is not None:
                with _RUNNING_LOCK:
                    running[job_id] += 1
            self._holders += 1
            if self._holders == 1:
                self._stop = threading.Event()
                threading.Thread(
                    target=self._loop, args=(self._stop,), name="heartbeat", daemon=True
                ).start()
        try:
            yield
        finally:
            with self._lock:
                if job_id is not None:
                    with _RUNNING_LOCK:
                        running[job_id] -= 1
                        if running[job_id] <= 0:
                            del running[job_id]
                self._holders -= 1
                if self._holders == 0 and self._stop is not None:
                    self._stop.set()
                    self._stop = None

    def _loop(self, stop: threading.Event) -> None:
        while True:
            try:
                self.beat()
                self.last_error = None
            except Exception as exc:  # the catalog is away: the next beat tries again
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            if stop.wait(self.interval):
                return

    def nodes(self) -> list[Node]:
        with self.uow() as uow:
            return uow.nodes.all()

    # --- the node directory (services/ports/nodes.py NodeDirectory; domain/placement.py) ---

    @property
    def node_host(self) -> str:
        return self.identity.host

    def serves(self, host_uri: str) -> bool:
        """Whether a live node serves ``host_uri``: this one, or one whose heartbeat is
        younger than a lease (a node that stopped beating has had its jobs orphaned too)."""
        return same_host(host_uri, self.identity.host) or host_key(host_uri) in self.served()

    def served(self) -> frozenset[str]:
        """The hosts (:func:`~vmvault.domain.host_uri.host_key`) a live node serves: this
        node's and those of every node whose heartbeat is younger than a lease (one read)."""
        fresh = self.clock() - LEASE
        live = {host_key(n.host) for n in self.nodes() if n.heartbeat_at >= fresh}
        return frozenset(live | {host_key(self.identity.host)})
