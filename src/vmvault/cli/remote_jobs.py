"""Waiting for jobs run on the server: the remote CLI's foreground (docs/server.md, "Remote CLI").

A command run in the foreground locally (``backup``, ``verify``, ``gc``, ``copy``,
``restore``, ``restore-test``) is queued on the server through the API remotely, then
:func:`wait` polls the jobs until each has ended: on a terminal it draws the same progress
bars as a local run (:mod:`vmvault.cli.progress`), fed by the polled job documents instead
of the job runner; a Ctrl-C cancels the jobs still running through
``POST /jobs/{id}/cancel`` — as a local foreground run's job is cancelled by the interrupt —
and then ends as locally (``interrupted``, exit 130).  The job documents come back without
their log unless asked (``with_log``): a local run prints the job alone.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

from vmvault.cli import remote
from vmvault.cli.progress import job_bars
from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import JobState, JobType

#: Seconds between two polls of the jobs waited for.
POLL = 0.5
#: Seconds a finished backup of a protected VM waits for the retention job the server runs
#: right after it (the same worker starts it at once).
PRUNE_WAIT = 30.0
#: Seconds an ended job waits for the server to record its run's outcome (written as the
#: run returns: after a backup's retention job, after a test VM is removed).
OUTCOME_WAIT = 60.0


def wait(
    docs: list[dict[str, Any]],
    progress: bool = True,
    timeout: float | None = None,
    with_log: bool = False,
    cancel: bool = True,
) -> list[dict[str, Any]]:
    """The documents of the jobs ``docs`` once each has ended (or ``timeout`` seconds have
    passed), polled from the server; a Ctrl-C cancels those still running (unless not
    ``cancel``: ``jobs wait`` only watches, locally too)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    docs = list(docs)
    try:
        with job_bars(progress) as show:
            while True:
                for doc in docs:
                    if show is not None:
                        show(doc)
                if all(_final(d) for d in docs):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(POLL)
                docs = [d if _final(d) and "log" in d else _get(d["id"]) for d in docs]
    except KeyboardInterrupt:
        for doc in docs if cancel else ():
            if not _final(doc):
                with suppress(VmvaultError):  # it may have ended meanwhile
                    remote.post(f"/jobs/{doc['id']}/cancel")
        raise
    if not with_log:
        docs = [{k: v for k, v in d.items() if k != "log"} for d in docs]
    return docs


def outcome(job: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """The outcome of the server's run of ``job`` (a job that has ended: the keys a local run
    adds to its document, vmvault/outcomes.py), once the run is over; ``default`` (the keys of
    a run that returned nothing) for a job that never ran or whose outcome was not kept."""
    if job["started_at"] is None:  # cancelled while queued: it never ran
        return default
    deadline = time.monotonic() + OUTCOME_WAIT
    while True:
        got = remote.get(f"/jobs/{job['id']}/outcome")
        if got["recorded"]:
            return got["outcome"] if got["outcome"] is not None else default
        if time.monotonic() >= deadline:
            return default
        time.sleep(POLL)


def backups(
    posted: list[dict[str, Any]], progress: bool = True
) -> list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]]:
    """Queued backup jobs waited for: each job's document, the point it made and the retention
    job that ran after it (as a local ``backup`` gets them from its outcomes)."""
    done = []
    for job in wait(posted, progress):
        point = point_of(job)
        done.append((job, point, prune_after(job) if point is not None else None))
    return done


def prune_after(backup: dict[str, Any]) -> dict[str, Any] | None:
    """The retention (``prune``) job the server ran after ``backup`` (a finished job that
    made a point) when its VM is protected; None otherwise."""
    if backup["vm"] is None or remote.get(f"/vms/{backup['vm']}")["state"] != "protected":
        return None
    deadline = time.monotonic() + PRUNE_WAIT
    while time.monotonic() < deadline:
        later = [
            j
            for j in remote.get("/jobs", vm=backup["vm"], type=JobType.PRUNE.value, limit=5)
            if j["id"] > backup["id"]
        ]
        if later:
            return wait([min(later, key=lambda j: j["id"])], progress=False)[0]
        time.sleep(POLL)
    return None


def point_of(job: dict[str, Any]) -> dict[str, Any] | None:
    """The recovery point a finished backup job made (its document), or None."""
    if job["vm"] is None or job["error_code"]:
        return None
    found = [p for p in remote.get_all("/points", vm=job["vm"]) if p["job_id"] == job["id"]]
    return found[0] if found else None


def _final(doc: dict[str, Any]) -> bool:
    return JobState(doc["state"]).final


def _get(job_id: int) -> dict[str, Any]:
    doc: dict[str, Any] = remote.get(f"/jobs/{job_id}")
    return doc
