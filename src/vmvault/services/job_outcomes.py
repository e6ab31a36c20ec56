"""The outcome of a queued job's run, kept for whoever waits for it elsewhere.

``vmvault serve`` runs a queued job in its own process; a remote ``vmvault restore`` (or
``gc``, ``copy`` …) waiting for it through the API needs what the run returned to print what
a local run prints.  The server records that outcome — a document (vmvault/outcomes.py) — as
the job's journal step ``outcome`` once the run is over; ``GET /api/v1/jobs/{id}/outcome``
reads it back.  It is written after the job has ended, so recovery (which reads the journal
of jobs that never ended) never meets it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from vmvault.domain.errors import JobNotFound
from vmvault.domain.inputs import check_id
from vmvault.domain.job import Job
from vmvault.services.ports import UnitOfWorkFactory

#: The journal step that holds a run's outcome.
OUTCOME = "outcome"


class JobOutcomes:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def record(self, job_id: int, doc: dict[str, Any] | None) -> None:
        """Keep the outcome of job ``job_id``'s run (None: a run that returns none)."""
        with self.uow() as uow:
            uow.jobs.record_step(job_id, OUTCOME, {"outcome": doc}, self.clock())
            uow.commit()

    def get(self, job_id: int) -> tuple[Job, bool, dict[str, Any] | None]:
        """The job, whether its run's outcome was recorded, and that outcome."""
        check_id(job_id, "job id")
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
            if job is None:
                raise JobNotFound(job=job_id)
            kept = [s.data for s in uow.jobs.steps(job_id) if s.step == OUTCOME]
        return job, bool(kept), kept[-1]["outcome"] if kept else None
