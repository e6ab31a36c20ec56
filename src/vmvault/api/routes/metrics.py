"""``GET /metrics``: the Prometheus text exposition format 0.0.4 (docs/metrics.md).

Written with ``prometheus_client``'s exposition writer over a collector that turns the
service's snapshot (services/metrics.py) into metric families at each scrape: the library
owns the format's details (label escaping, the histogram's cumulative ``le`` buckets,
``_total`` of counters), and its parser is what the tests read the answer back with.  No
global registry: each app has its own, so two apps in one process never share a figure.

API requests (paths under ``/api/``: not ``/metrics`` itself, not the console's files) are
counted by :class:`RequestCounter`, an ASGI middleware that sees every answer's status
(errors included, and a 500 for an exception that escapes).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.bootstrap import Services
from vmvault.domain.access import Role
from vmvault.domain.metrics import Histogram, MetricsSnapshot

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestCounter:
    """API requests by method and status (an unusual method counts as ``OTHER``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, method: str, status: int) -> None:
        key = (method if method in METHODS else "OTHER", str(status))
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def items(self) -> list[tuple[tuple[str, str], int]]:
        with self._lock:
            return sorted(self.counts.items())

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
                await app(scope, receive, send)
                return
            status: list[int] = []

            async def seen(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))
                await send(message)

            try:
                await app(scope, receive, seen)
            finally:
                self.add(scope.get("method", "OTHER"), status[0] if status else 500)

        return counted


class _Collector:
    def __init__(self, services: Services, requests: RequestCounter | None) -> None:
        self.services = services
        self.requests = requests

    def collect(self) -> Iterator[Metric]:
        yield from families(self.services.metrics.snapshot())
        if self.requests is not None:
            api = CounterMetricFamily(
                "vmvault_api_requests", "API requests answered, by method and status",
                labels=["method", "status"],
            )  # fmt: skip
            for (method, status), n in self.requests.items():
                api.add_metric([method, status], n)
            yield api


def _histogram(family: HistogramMetricFamily, kind: str, h: Histogram) -> None:
    buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in h.buckets]
    family.add_metric([kind], buckets, h.total)


def families(snap: MetricsSnapshot) -> Iterator[Metric]:
    """The snapshot as metric families (docs/metrics.md lists each)."""
    jobs = GaugeMetricFamily(
        "vmvault_jobs", "Jobs in the catalog by type and state", labels=["type", "state"]
    )
    for (job_type, state), n in sorted(snap.jobs.items()):
        jobs.add_metric([job_type, state], n)
    yield jobs

    vm = ["vm", "name"]
    success = GaugeMetricFamily(
        "vmvault_vm_last_backup_success_timestamp_seconds",
        "When the VM's newest good backup (completed, with or without warnings) ended",
        labels=vm,
    )
    duration = GaugeMetricFamily(
        "vmvault_vm_last_backup_duration_seconds",
        "How long the VM's newest ended backup job ran",
        labels=vm,
    )
    size = GaugeMetricFamily(
        "vmvault_vm_last_backup_bytes",
        "Bytes the VM's newest ended backup job read from its disks",
        labels=vm,
    )
    failed = GaugeMetricFamily(
        "vmvault_vm_last_backup_failed", "1 when the VM's newest ended backup failed", labels=vm
    )
    for b in snap.last_backups:
        labels = [b.vm_uuid, b.vm_name]
        if b.last_success_at is not None:
            success.add_metric(labels, b.last_success_at.timestamp())
        if b.duration_seconds is not None:
            duration.add_metric(labels, b.duration_seconds)
        size.add_metric(labels, b.bytes_done)
        failed.add_metric(labels, 1 if b.state == "failed" else 0)
    yield from (success, duration, size, failed)

    health = GaugeMetricFamily(
        "vmvault_protected_vms",
        "Protected VMs by health: ok, or the dashboard's attention reason",
        labels=["vault", "health"],
    )
    stored = GaugeMetricFamily(
        "vmvault_vault_stored_bytes", "Bytes the vault's chunk files take", labels=["vault"]
    )
    logical = GaugeMetricFamily(
        "vmvault_vault_logical_bytes",
        "Logical bytes of the points the vault holds (its own and copies)",
        labels=["vault"],
    )
    points = GaugeMetricFamily(
        "vmvault_vault_points", "Recovery points the vault holds", labels=["vault"]
    )
    for v in snap.vaults:
        for reason, n in v.health.items():
            health.add_metric([v.vault, reason], n)
        if v.stored_bytes is not None:
            stored.add_metric([v.vault], v.stored_bytes)
        logical.add_metric([v.vault], v.logical_bytes)
        points.add_metric([v.vault], v.points)
    yield from (health, stored, logical, points)

    window = HistogramMetricFamily(
        "vmvault_quiesce_window_seconds",
        "How long the guest was frozen (kind=frozen) or paused (kind=paused) for the points "
        "held now",
        labels=["kind"],
    )
    _histogram(window, "frozen", snap.frozen)
    _histogram(window, "paused", snap.paused)
    yield window


def routes(services: Services, requests: RequestCounter | None = None) -> APIRouter:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(services, requests))
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"},
            **responses(),
        },
        dependencies=[needs(Role.READER)],
    )
    def metrics() -> Response:
        """The metrics in the Prometheus text format (docs/metrics.md); needs a reader token
        (Prometheus: ``authorization: {credentials: TOKEN}``)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router


def install(app: FastAPI, services: Services) -> None:
    """``/metrics`` and the request counter: the one line ``create_app`` has for metrics."""
    counter = RequestCounter()
    app.add_middleware(_Middleware, counter=counter)
    app.include_router(routes(services, counter))


class _Middleware:
    def __init__(self, app: ASGIApp, counter: RequestCounter) -> None:
        self.app = counter.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
