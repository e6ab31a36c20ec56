"""Outcome documents: what a job's run returned beyond the job itself, as JSON.

A command run in the foreground prints its job and its outcome (``restore`` the VM it
defined, ``gc`` its counts …); ``--json`` prints the job's document with the outcome's keys
added.  The CLI renders both from these documents, locally and remotely: ``vmvault serve``
records the outcome of each queued job it runs in the job's journal (step ``outcome``,
:func:`of`), and ``GET /api/v1/jobs/{id}/outcome`` serves it to the remote CLI
(docs/server.md, "Remote CLI").  Every builder takes None for a run that returned nothing
(the job failed or was cancelled) and gives the keys a failed run prints.

=================  ===========================================================================
queued ``op``      outcome keys
=================  ===========================================================================
``backup-set``     ``set_id``, ``window_ms``, ``instant``, ``children`` (jobs), ``points``
``gc``             ``result`` (counts; absent when the run returned nothing)
``restore``        ``result`` (:func:`restore_doc`); disks-only: ``files``, ``disks``
``restore-test``   ``result``
``copy``           ``copy`` (:func:`copy_doc`)
``verify``         ``healed``, ``damaged`` (from the journal: services/healing.py)
``backup``         none: its point names the job (``job_id``)
=================  ===========================================================================

Field names are a public contract, as :mod:`vmvault.documents`'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmvault.documents import job_doc, point_doc
from vmvault.domain.iso import iso
from vmvault.domain.job import Job

if TYPE_CHECKING:  # types only: the CLI renders these documents without the services
    from vmvault.services.backup_sets import SetOutcome
    from vmvault.services.copies import CopyReport
    from vmvault.services.points import RestoreOutcome
    from vmvault.services.restore import RestoreReport


def set_doc(outcome: SetOutcome | None) -> dict[str, Any]:
    """``backup --set``: the set, its child jobs and its points."""
    result = outcome.result if outcome is not None else None
    jobs: list[Job] = [c.job for c in outcome.children] if outcome is not None else []
    return {
        "set_id": result.set_id if result else None,
        "window_ms": result.window_ms if result else None,
        "instant": iso(result.instant) if result else None,
        "children": [job_doc(j) for j in jobs],
        "points": [point_doc(p) for p in result.points] if result else [],
    }


def gc_doc(report: Any | None) -> dict[str, Any]:
    """``gc``: what the collection counted and removed (``dataplane.gc.GcReport``)."""
    if report is None:
        return {}
    keys = (
        "chunks_scanned",
        "chunks_referenced",
        "chunks_removed",
        "bytes_removed",
        "chunks_kept_recent",
        "chunks_kept_retained",
        "points_purged",
    )
    return {"result": {k: getattr(report, k) for k in keys}}


def restore_doc(r: RestoreReport | None) -> dict[str, Any]:
    """``restore --as-new | --replace``, ``restore-test``: the VM restored (or tested)."""
    if r is None:
        return {"result": None}
    return {
        "result": {
            "mode": r.mode.value,
            "point": r.point_id,
            "vm_name": r.vm_name,
            "vm_uuid": r.vm_uuid,
            "host": r.host_uri,
            "disks": [
                {
                    "target": d.target,
                    "path": str(d.path),
                    "link": str(d.link) if d.link else None,
                    "bytes_written": d.bytes_written,
                    "seconds": round(d.seconds, 3),
                }
                for d in r.disks
            ],
            "nics": [
                {
                    "mac": n.mac,
                    "original_mac": n.original_mac,
                    "type": n.type,
                    "source": n.source,
                    "connected": n.connected,
                    "link_down": n.link_down,
                    "problem": n.problem,
                }
                for n in r.nics
            ],
            "files": r.files,
            "started": r.started,
            "boot_seconds": r.boot_seconds,
            "downtime_seconds": r.downtime_seconds,
            "previous": [str(p) for p in r.previous],
            "test": r.test.to_json() if r.test else None,
            "instant": r.instant,
            "export_job": r.export_job,
            "pivot_seconds": r.pivot_seconds,
        }
    }


def disks_doc(r: RestoreOutcome | None) -> dict[str, Any]:
    """``restore --disks-only``: the images written and the domain XML (``files``: all)."""
    if r is None:
        return {}
    return {
        "files": [str(d.path) for d in r.disks] + [str(r.domain_xml)],
        "disks": [
            {
                "target": d.target,
                "path": str(d.path),
                "bytes_written": d.result.bytes_written,
                "seconds": round(d.result.seconds, 3),
            }
            for d in r.disks
        ],
    }


def copy_doc(r: CopyReport | None) -> dict[str, Any]:
    """One ``copy`` job's report."""
    if r is None:
        return {"copy": None}
    return {
        "copy": {
            "from": r.source,
            "to": r.target,
            "mode": r.mode,
            "points": r.points,
            "points_already_there": r.already,
            "chunks_sent": r.chunks_sent,
            "chunks_present": r.chunks_present,
            "bytes_sent": r.bytes_sent,
            "seconds": round(r.seconds, 3),
            "pruned": r.pruned,
            "cleaned_up": r.cleaned,
        }
    }


def of(request: dict[str, Any], returned: Any) -> dict[str, Any] | None:
    """The outcome document of a queued job's run (``request``: the job's, ``returned``: what
    its service returned, None when it raised); None for an op without one."""
    from vmvault.services.jobs import JobOutcome  # run by the server: the services are loaded

    op = request.get("op")
    if op == "backup-set":
        return set_doc(returned)
    result = returned.result if isinstance(returned, JobOutcome) else None
    if op == "gc":
        return gc_doc(result)
    if op == "copy":
        return copy_doc(result)
    if op == "restore" and request.get("mode") == "disks-only":
        return disks_doc(result)
    if op in ("restore", "restore-test"):
        return restore_doc(result)
    return None
