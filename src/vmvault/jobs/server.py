"""``vmvault serve``: one long-running process with the scheduler, a pool of job workers and
the REST API.

Start-up, in this order — so that any refusal leaves every job, the catalog and libvirt as
they were:

0. **validate and bind** — every setting, the options included (``Settings.validate``: a bad
   one is ``INVALID_SETTING``, exit 2), the TLS certificate and key (jobs/tls.py: required
   beyond loopback, a self-signed pair generated when none is given; a bad pair is
   ``TLS_CERTIFICATE_INVALID``, exit 2), then the port is bound and held (:func:`bind`; in
   use: ``LISTEN_FAILED``, exit 1). Nothing has opened the catalog yet;
1. **recovery** — the server is a *node* (domain/node.py: its heartbeat starts with the
   workers and renews its jobs' leases); every job left in-progress or cancelling by a node
   that is gone (its lease passed, or its process on this machine died) is closed
   ``failed`` (``JOB_INTERRUPTED``) and its VM's libvirt side cleaned (stray backup job,
   frozen or paused guest, scratch files, stray checkpoint); queued jobs stay queued and run;
2. the **workers** (``VMVAULT_JOB_WORKERS``, default 2: a backup already keeps both cores of a
   small host busy with hashing and compression) claim queued jobs, oldest first, and run them
   through the same services as the CLI;
3. the **notifier** delivers the notification outbox (webhooks, e-mail) with retries and
   queues one notification per overdue episode (services/notifications.py,
   docs/notifications.md), and runs the approval requests whose delay has passed
   (services/approvals.py, docs/approvals.md);
4. the **scheduler** ticks at every due slot (and at least every ``tick`` seconds, 10 by
   default: a third of the leader lease, which each tick renews): while this node holds the
   leader lease, each due slot of each policy queues its VMs' backups once (see
   services/scheduler.py), and GC runs on ``VMVAULT_GC_SCHEDULE``;
5. the **REST API** (see api/app.py, ``/metrics`` included) serves on the socket bound in step 0, each request
   authenticated by its API token (services/tokens.py) and each change written to the audit
   log (api/audit_trail.py); and the **local socket** (jobs/local_socket.py, bound in step 0
   too: ``$VMVAULT_HOME/api.sock``, mode 0600) answers this host's CLI's reads without a token.

The workers and the scheduler are supervised (jobs/supervisor.py): an exception that escapes
one's loop is logged with its traceback and the loop restarted after a back-off; one crash too
many within the window stops the server with ``SERVER_COMPONENT_FAILED`` (exit 1).
``/api/v1/health`` reports each one's liveness and the scheduler's last tick (:meth:`health`),
and answers 503 when one is down.

Each worker and the scheduler have their own :class:`~vmvault.bootstrap.Services` (their own
catalog engine, vault handles and libvirt connections), built anew at each restart: nothing is
shared between threads but the catalog, whose transactions serialise them.

Stopping (SIGTERM or SIGINT, or a component that failed): no new job is claimed, the scheduler
stops, running jobs are asked to cancel (each undoes what it started: the libvirt job ends, the
guest is thawed, no half point stays) and the server waits up to ``stop_timeout`` seconds for
them.  A job still running after that is closed by the next start-up's recovery.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmvault import outcomes
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import ListenAddress, Settings, parse_listen
from vmvault.domain.errors import (
    CatalogError,
    InvalidInput,
    JobNotActive,
    ListenFailed,
    ServerComponentFailed,
)
from vmvault.domain.job import Job
from vmvault.domain.node import HEARTBEAT, LEASE
from vmvault.jobs import local_socket, tls
from vmvault.jobs.supervisor import Component, RestartPolicy, Supervisor
from vmvault.local_user import local_principal
from vmvault.services.recovery import RecoveredJob

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("vmvault.serve")


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        workers: int | None = None,
        tick: float = HEARTBEAT.total_seconds(),
        poll: float = 1.0,
        stop_timeout: float = 120.0,
        clock: Callable[[], datetime] | None = None,
        restarts: RestartPolicy | None = None,
        stale_after: float | None = None,
        notify_poll: float = 5.0,
        overdue_every: float = 300.0,
        notify_stale_after: float | None = None,
    ) -> None:
        self.settings = settings.validate()
        self.workers = workers if workers is not None else settings.job_workers
        self.tick = tick
        self.poll = poll
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.running: dict[int, int | None] = {}
        self.supervisor = Supervisor(self.stopping, restarts)
        self.supervisor.on_give_up = self._give_up
        # the catalog could not be opened (PostgreSQL restarting or down): wait for it
        self.supervisor.outage = lambda exc: isinstance(exc, CatalogError)
        #: Called when a component failed for good (``serve`` stops uvicorn with it).
        self.on_fatal: Callable[[], None] = lambda: None
        self.failure: ServerComponentFailed | None = None
        for n in range(self.workers):
            self.running[n] = None
            self.supervisor.add(f"worker-{n}", partial(self._work, n))
        #: The scheduler ticks at least every ``tick`` s: older than this, it is stuck.
        self.stale_after = stale_after if stale_after is not None else max(120.0, 4 * tick)
        self.scheduler = self.supervisor.add("scheduler", self._schedule, self.stale_after)
        #: The notifier delivers the outbox every ``notify_poll`` s and looks for overdue VMs
        #: every ``overdue_every`` s (services/notifications.py).
        self.notify_poll = notify_poll
        self.overdue_every = overdue_every
        #: It beats after each message it tried (one is cut after the sender's 10 s timeout)
        #: and after each round: older than this, it is stuck.
        notify_stale = notify_stale_after or max(120.0, 4 * notify_poll)
        self.notifier = self.supervisor.add("notifier", self._notify, notify_stale)
        self.services = self._services()
        self.services.queue.on_queued = self.wake.set
        #: The node's heartbeat, held from start to stop (services/nodes.py).
        self._heartbeat = contextlib.ExitStack()

    def _services(self) -> Services:
        return bootstrap(self.settings, self.clock)

    # --- start / stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Recover, then start the workers and the scheduler (the API is separate: :meth:`app`)."""
        self._log_recovered(self.services.recovery.recover())
        self._heartbeat.enter_context(self.services.node.hold())
        if self.settings.test_clock_file:
            log.warning(
                "the clock is shifted by the seconds in %s (VMVAULT_TEST_CLOCK_FILE: tests only)",
                self.settings.test_clock_file,
            )
        self.supervisor.start()
        log.info(
            "node %s: %d worker(s), the scheduler and the notifier started",
            self.services.node.identity.id,
            self.workers,
        )

    @staticmethod
    def _log_recovered(recovered: list[RecoveredJob]) -> None:
        for r in recovered:
            log.warning(
                "job %s (%s %s) was interrupted: %s",
                r.job.id,
                r.job.type.value,
                r.job.vm_name or "",
                "; ".join(r.actions) or "nothing to clean",
            )

    @property
    def threads(self) -> list[threading.Thread]:
        return self.supervisor.threads()

    def stop(self) -> None:
        """Stop claiming, cancel running jobs, wait for them (see the module doc)."""
        self.stopping.set()
        self.wake.set()
        for job_id in [j for j in self.running.values() if j is not None]:
            try:
                self.services.jobs.cancel(job_id)
                log.info("job %s: cancel requested (server stopping)", job_id)
            except JobNotActive:
                pass
        for t in self.threads:
            t.join(self.stop_timeout)
        left = [t.name for t in self.threads if t.is_alive()]
        if left:
            log.warning("still running after %.0f s: %s", self.stop_timeout, ", ".join(left))
        self._heartbeat.close()

    def _give_up(self, c: Component) -> None:
        p = self.supervisor.policy
        self.failure = ServerComponentFailed(
            c.last_error, component=c.name, crashes=len(c.crashes), window=f"{p.window:.0f}"
        )
        self.stopping.set()
        self.wake.set()
        self.on_fatal()

    def health(self) -> dict[str, dict[str, Any]]:
        """Each component's liveness (the REST API's ``/api/v1/health`` adds its own)."""
        report = self.supervisor.health()
        for n, job in list(self.running.items()):
            report[f"worker-{n}"]["job"] = job
        return report

    def app(self) -> FastAPI:
        """The REST API app, with its own services; queueing through it wakes the workers."""
        from vmvault.api.app import create_app

        api_services = self._services()
        api_services.queue.on_queued = self.wake.set
        return create_app(
            api_services, liveness=self.health, authenticate=api_services.tokens.authenticate
        )

    # --- loops (each run by the supervisor: what escapes is a crash, logged and restarted) ------

    def _work(self, n: int) -> None:
        services = self._services()
        services.queue.on_outcome = partial(record_outcome, services)
        while not self.stopping.is_set():
            job = services.queue.claim_next()
            if job is None:
                self.wake.wait(self.poll)
                self.wake.clear()
                continue
            self.running[n] = job.id
            log.info(
                "worker %d: job %s %s %s started", n, job.id, job.type.value, job.vm_name or ""
            )
            try:
                done = services.queue.execute(job)
            finally:
                self.running[n] = None
            log.info(
                "worker %d: job %s %s%s",
                n,
                done.id,
                done.state.value,
                f" {done.error_code}: {done.message}" if done.error_code else "",
            )

    def _schedule(self) -> None:
        services = self._services()
        scheduler = services.scheduler
        scheduler.on_queued = self.wake.set
        recovered_at = time.monotonic()  # start() has just recovered
        while not self.stopping.is_set():
            if time.monotonic() - recovered_at >= LEASE.total_seconds():
                # jobs whose lease ran out since: a node that died, or one of ours whose end
                # could not be written while the catalog was away (services/recovery.py)
                self._log_recovered(services.recovery.recover())
                recovered_at = time.monotonic()
            for fired in scheduler.tick():
                log.info("%s: slot %s queued %d job(s)", fired.schedule, fired.key, len(fired.jobs))
            nxt = scheduler.next_due()
            self.scheduler.beat()
            wait = self.tick
            if nxt is not None:
                wait = min(wait, max(0.5, (nxt - services.clock()).total_seconds() + 0.05))
            self.stopping.wait(wait)

    def _notify(self) -> None:
        services = self._services()
        notifications = services.notifications
        next_overdue = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_overdue:
                notifications.prune()
                written = notifications.check_overdue()
                if written:
                    log.info("overdue check: %d notification(s) queued", written)
                next_overdue = time.monotonic() + self.overdue_every
            for r in services.approvals.run_due():  # delay mode, expiry (docs/approvals.md)
                log.info("approval request %s: %s %s", r.id, r.state.value, r.outcome or "")
            for o in notifications.deliver_due(beat=self.notifier.beat):
                log.info(
                    "notification %s (%s) to %s target %s: %s after %d attempt(s)",
                    o.id, o.message.event.value, o.target.channel.value, o.target.id,
                    o.state.value, o.attempts,
                )  # fmt: skip
            self.notifier.beat()
            self.stopping.wait(self.notify_poll)


def bind(address: ListenAddress) -> socket.socket:
    """Bind and listen on ``address`` now, so that the port is ours before anything starts."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = {
            errno.EADDRINUSE: "the port is in use",
            errno.EACCES: "permission denied",
            errno.EADDRNOTAVAIL: "the address is not on this host",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenFailed(reason, address=str(address)) from None
    return sock  # not inheritable: a job's child process must not hold the port


def serve(
    settings: Settings,
    listen: str | None = None,
    workers: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Run the server until SIGTERM/SIGINT (what ``vmvault serve`` calls).

    In this order, so that a refusal leaves every job, the catalog and libvirt untouched:
    validate every setting (the options included) and the TLS pair, bind the port, then
    recover, start the workers and the scheduler, and serve."""
    address = parse_listen(listen) if listen is not None else None  # the option's own errors
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("give --tls-cert and --tls-key together", what="the TLS options")
    settings = replace(
        settings,
        listen=str(address) if address else settings.listen,
        job_workers=workers if workers is not None else settings.job_workers,
        tls_cert=tls_cert or settings.tls_cert,
        tls_key=tls_key or settings.tls_key,
    ).validate()
    address = parse_listen(settings.listen)
    files = tls.choose(address, settings.home, settings.tls_cert, settings.tls_key)
    sock = bind(address)
    local = None
    try:
        local = local_socket.bind(settings)
        _run(settings, address, sock, files, local)
    finally:
        if local is not None:  # removed however serve ended: a failed start-up too
            local.close()
        sock.close()


def _run(
    settings: Settings,
    address: ListenAddress,
    sock: socket.socket,
    files: tls.TlsFiles | None,
    local: local_socket.Bound | None,
) -> None:
    import uvicorn

    from vmvault.api.local_socket import LocalSocket

    server = Server(settings)
    app = server.app()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(files.cert) if files else None,
        ssl_keyfile=str(files.key) if files else None,
    )
    api = uvicorn.Server(config)

    def fatal() -> None:
        api.should_exit = True

    server.on_fatal = fatal
    server.start()
    listener = None
    scheme = "https" if files else "http"
    log.info("REST API on %s://%s/api/v1 (docs at /docs)", scheme, address)
    if files:
        kind = "self-signed certificate" if files.generated else "certificate"
        log.info("TLS %s %s, SHA-256 fingerprint %s", kind, files.cert, files.fingerprint)
    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal to the
    # handler it found: ours, so the jobs are stopped cleanly instead of the process dying.
    signals: list[int] = []

    def on_signal(sig: int, _frame: object) -> None:
        signals.append(sig)
        if server.stopping.is_set():  # a signal while stopping: give up waiting
            log.warning("stopping now; running jobs are closed by the next start-up")
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        if local is not None:  # listening from now: recovery is done
            answered = LocalSocket(
                app, str(settings.api_socket), settings.local_identity, local_principal()
            )
            listener = local_socket.Listener(local, answered)
            listener.start()
        api.run(sockets=[sock])  # returns after SIGTERM/SIGINT, or when a component failed
    finally:
        log.info("stopping")
        if listener is not None:
            listener.stop()
        server.stop()
    if server.failure is not None:
        raise server.failure
    log.info("stopped")


def record_outcome(services: Services, job: Job, returned: Any) -> None:
    """Keep what a queued job's run returned (vmvault/outcomes.py) for a remote CLI that
    waits for it (``GET /api/v1/jobs/{id}/outcome``)."""
    request = job.request or {}
    if request.get("op") == "verify":  # what it healed and found damaged: in its journal
        doc: dict[str, Any] | None = services.points.verify_findings(job.id)
    else:
        doc = outcomes.of(request, returned)
    services.job_outcomes.record(job.id, doc)
