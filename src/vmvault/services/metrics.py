"""The figures ``/metrics`` exposes (docs/metrics.md), read from the catalog at each scrape.

Bounded by design: jobs are counted by the database (``uow.stats``), never loaded; per VM
only its newest ended backup job and its newest good one's end are read; the points the
vaults hold now are counted and summed by the database too (``uow.held``: per vault its
points and their logical bytes, a copy counting in each vault that holds it; the frozen and
paused windows tallied over every point held, each once): no point is read, and a scrape
sends the same statements whatever the number of VMs and points.  The one figure that reads the vault's storage —
the bytes its chunk files take — is reused for :data:`STORED_BYTES_TTL` seconds
(services/stored_bytes.py, shared with the dashboard), so a scrape every 15 s does not walk a
large vault every 15 s.  Protected VMs' health is the dashboard's
attention rule (services/dashboard.py), not a second one.
"""

from __future__ import annotations

import logging
import time

from vmvault.domain.errors import VmvaultError
from vmvault.domain.metrics import MetricsSnapshot, VaultFigures, histogram_of
from vmvault.domain.vault import Vault
from vmvault.services.context import Service, ServiceContext
from vmvault.services.dashboard import ATTENTION_REASONS, DashboardService

log = logging.getLogger("vmvault.metrics")

#: Seconds a vault's stored bytes are reused before its storage is asked again.
STORED_BYTES_TTL = 300.0


class MetricsService(Service):
    def __init__(self, ctx: ServiceContext, dashboard: DashboardService) -> None:
        super().__init__(ctx)
        self.dashboard = dashboard
        #: when each vault's storage last failed to be walked
        self._failed: dict[str, float] = {}

    def snapshot(self) -> MetricsSnapshot:
        with self.uow() as uow:
            jobs = uow.stats.job_counts()
            last = uow.stats.last_backups()
            vaults = uow.vaults.all()
            held = {v.name: uow.held.totals(v.name) for v in vaults}
            frozen, paused = uow.held.windows([v.name for v in vaults])  # a copy counts once
        figures = []
        for vault in vaults:
            protected, attention = self.dashboard.attention(vault.name)
            health = {"ok": protected - len(attention)} | dict.fromkeys(ATTENTION_REASONS, 0)
            for a in attention:
                health[a.reason] = health.get(a.reason, 0) + 1
            totals = held[vault.name]
            figures.append(
                VaultFigures(
                    vault=vault.name,
                    stored_bytes=self._stored_bytes(vault),
                    logical_bytes=totals.logical_bytes,
                    points=totals.points,
                    health=health,
                )
            )
        return MetricsSnapshot(
            at=self.clock(),
            jobs=jobs,
            last_backups=last,
            vaults=figures,
            frozen=histogram_of(frozen),
            paused=histogram_of(paused),
        )

    def _stored_bytes(self, vault: Vault) -> int | None:
        """The vault's chunk bytes (None: its storage cannot be read now; not asked again for
        :data:`STORED_BYTES_TTL` seconds either)."""
        failed = self._failed.get(vault.name)
        now = time.monotonic()
        if failed is not None and now - failed < STORED_BYTES_TTL:
            return None
        try:
            return self.vaults.stored_chunk_bytes(vault, STORED_BYTES_TTL, STORED_BYTES_TTL).bytes
        except VmvaultError as exc:
            log.warning("vault %s: stored bytes unknown: %s", vault.name, exc.text)
            self._failed[vault.name] = now
            return None
