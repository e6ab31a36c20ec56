"""``vmvault serve``: one long-running process with the scheduler, a pool of job workers and
the REST API.

Start-up, in this order:

1. **recovery** — every job left in-progress or cancelling by a process that is gone is closed
   ``failed`` (``JOB_INTERRUPTED``) and its VM's libvirt side cleaned (stray backup job,
   frozen or paused guest, scratch files, stray checkpoint); queued jobs stay queued and run;
2. the **workers** (``VMVAULT_JOB_WORKERS``, default 2: a backup already keeps both cores of a
   small host busy with hashing and compression) claim queued jobs, oldest first, and run them
   through the same services as the CLI;
3. the **scheduler** ticks at every due slot (and at least every ``tick`` seconds): each due
   slot of each policy queues its VMs' backups once (see services/scheduler.py), and GC runs
   on ``VMVAULT_GC_SCHEDULE``;
4. the **REST API** listens on ``VMVAULT_LISTEN`` (see api/app.py).

Before any of that, :func:`serve` refuses a listen address that is not loopback
(``LISTEN_NOT_LOOPBACK``, see config.parse_listen): the API has no authentication yet.

Each worker and the scheduler have their own :class:`~vmvault.bootstrap.Services` (their own
catalog engine, vault handles and libvirt connections): nothing is shared between threads but
the catalog, whose transactions serialise them.

Stopping (SIGTERM or SIGINT): no new job is claimed, the scheduler stops, running jobs are
asked to cancel (each undoes what it started: the libvirt job ends, the guest is thawed, no
half point stays) and the server waits up to ``stop_timeout`` seconds for them.  A job still
running after that is closed by the next start-up's recovery.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings, parse_listen
from vmvault.domain.errors import JobNotActive, VmvaultError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("vmvault.serve")


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        workers: int | None = None,
        tick: float = 30.0,
        poll: float = 1.0,
        stop_timeout: float = 120.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers if workers is not None else settings.job_workers
        self.tick = tick
        self.poll = poll
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.running: dict[int, int | None] = {}
        self.threads: list[threading.Thread] = []
        self.services = self._services()
        self.services.queue.on_queued = self.wake.set

    def _services(self) -> Services:
        return bootstrap(self.settings, self.clock)

    # --- start / stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Recover, then start the workers and the scheduler (the API is separate: :meth:`app`)."""
        for recovered in self.services.recovery.recover():
            job = recovered.job
            log.warning(
                "job %s (%s %s) was interrupted: %s",
                job.id,
                job.type.value,
                job.vm_name or "",
                "; ".join(recovered.actions) or "nothing to clean",
            )
        for n in range(self.workers):
            self._thread(f"worker-{n}", partial(self._work, n))
        self._thread("scheduler", self._schedule)
        log.info("%d worker(s) and the scheduler started", self.workers)

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

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

    def app(self) -> FastAPI:
        """The REST API app, with its own services; queueing through it wakes the workers."""
        from vmvault.api.app import create_app

        api_services = self._services()
        api_services.queue.on_queued = self.wake.set
        return create_app(api_services)

    # --- loops -----------------------------------------------------------------------------------

    def _work(self, n: int) -> None:
        services = self._services()
        while not self.stopping.is_set():
            try:
                job = services.queue.claim_next()
            except Exception:
                log.exception("worker %d: cannot read the queue", n)
                job = None
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
                log.info(
                    "worker %d: job %s %s%s",
                    n,
                    done.id,
                    done.state.value,
                    f" {done.error_code}: {done.message}" if done.error_code else "",
                )
            except Exception:
                log.exception("worker %d: job %s", n, job.id)
            finally:
                self.running[n] = None

    def _schedule(self) -> None:
        services = self._services()
        scheduler = services.scheduler
        scheduler.on_queued = self.wake.set
        while not self.stopping.is_set():
            try:
                for fired in scheduler.tick():
                    log.info(
                        "%s: slot %s queued %d job(s)", fired.schedule, fired.key, len(fired.jobs)
                    )
                nxt = scheduler.next_due()
            except VmvaultError as exc:
                log.error("scheduler: %s %s", exc.code, exc.text)
                nxt = None
            except Exception:
                log.exception("scheduler")
                nxt = None
            wait = self.tick
            if nxt is not None:
                wait = min(wait, max(0.5, (nxt - services.clock()).total_seconds() + 0.05))
            self.stopping.wait(wait)


def serve(settings: Settings, listen: str | None = None, workers: int | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (what ``vmvault serve`` calls)."""
    # First of all: a refused address must leave every job, the catalog and libvirt untouched.
    address = parse_listen(listen or settings.listen)
    import uvicorn

    server = Server(settings, workers=workers)
    server.start()
    config = uvicorn.Config(
        server.app(),
        host=address.host,
        port=address.port,
        log_level="warning",
        access_log=False,
    )
    log.info("REST API on http://%s/api/v1 (docs at /docs)", address)
    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal to the
    # handler it found: ours, so the jobs are stopped cleanly instead of the process dying.
    signals: list[int] = []

    def on_signal(sig: int, _frame: object) -> None:
        signals.append(sig)
        if server.stopping.is_set():  # a second signal while stopping: give up waiting
            log.warning("stopping now; running jobs are closed by the next start-up")
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        uvicorn.Server(config).run()  # returns after SIGTERM/SIGINT
    finally:
        log.info("stopping")
        server.stop()
    log.info("stopped")
