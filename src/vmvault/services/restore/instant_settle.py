"""Settling an instant restore that cannot go on as planned: its job failed after the VM was
started, or its process died (start-up recovery).  One function, :func:`settle`, for both: it
reads only the ``instant`` journal record and what libvirt shows, so it can run twice.

The choice (:func:`vmvault.domain.instant.resolve`; docs/restore.md, "Instant recovery"):
pivot when every copy is still in sync (no export needed, the guest goes on), finish when every
disk was pivoted already, remove what was made when the VM was never defined; otherwise the
export is gone for good (QEMU does not reconnect), so ``--as-new`` **rebuilds** each local
image from the point and commits the overlay's writes into it, and the VM starts again on
them (a power cut for the guest, no completed write lost); ``--replace`` is **rolled back**
(the VM it replaced comes back as it was: the never-lose-the-VM rule).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from vmvault.domain.errors import PointNotFound, VmvaultError
from vmvault.domain.instant import Resolution, resolve
from vmvault.domain.job import JobState
from vmvault.services.healing import Healing
from vmvault.services.restore import journal
from vmvault.services.restore.journal import RUNNING_STATES, Instant, RestoreJournal
from vmvault.services.restore.rollback import put_back

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def settle(
    svc: RestoreService, rec: Instant, j: RestoreJournal, *, in_job: bool = False
) -> list[str]:
    """Bring the instant restore ``rec`` to an end that depends on nothing of vmvault;
    returns what was done, one line each.  ``in_job``: the job itself settles (its export
    job runs in this process and is stopped here; after a kill it died with the job, and
    start-up recovery closes it)."""
    live = svc.driver.domain(rec.uri, rec.uuid)
    ours = journal.INSTANT_DEFINED in j.seen or (
        rec.switch is not None and journal.UNDEFINED in j.seen
    )
    defined = live is not None and ours
    sources = (
        svc.instant.sources(rec.uri, rec.uuid)
        if defined and live and live.power in RUNNING_STATES
        else {}
    )
    if defined and not sources and live is not None:  # shut off: its definition says
        sources = _defined_sources(svc, rec)
    # a disk already pivoted has no block job: its copy is judged done, not "not ready"
    pending = [d for d in rec.disks if sources.get(d.target) != str(d.final)]
    on_local = defined and not pending
    ready = defined and all(
        svc.instant.copy_state(rec.uri, rec.uuid, d.target).ready for d in pending
    )
    how = resolve(
        cleaned=journal.CLEANED in j.seen,
        defined=defined,
        on_local=on_local,
        copies_ready=ready,
        replace=rec.switch is not None,
    )
    lines = [f"instant restore of {rec.name}: {how.value}"]
    if how is Resolution.NOTHING:
        return []
    if how is Resolution.REMOVE:
        if rec.switch is None:
            svc.driver.remove(rec.uri, rec.uuid)
        lines += remove_made(svc, rec, j, in_job=in_job)
        if rec.switch is not None and journal.SHUT_OFF in j.seen:
            lines += put_back(svc, rec.switch)
        return lines
    if how is Resolution.PIVOT:
        for d in rec.disks:
            if sources.get(d.target) != str(d.final):
                svc.instant.pivot(rec.uri, rec.uuid, d.target)
                lines.append(f"{d.target}: pivoted to {d.final} (its copy was in sync)")
        if svc.instant.paused_on_error(rec.uri, rec.uuid):
            svc.instant.resume(rec.uri, rec.uuid)
            lines.append(f"{rec.name} resumed (it was paused on the export's I/O error)")
    elif how is Resolution.REBUILD:
        lines += _rebuild(svc, rec, sources)
    elif how is Resolution.ROLL_BACK:
        assert rec.switch is not None
        svc.instant.destroy(rec.uri, rec.uuid)
        with contextlib.suppress(VmvaultError):
            svc.driver.undefine(rec.uri, rec.uuid)
        lines.append(f"the instant {rec.name} was stopped: its copy could not finish")
        lines += remove_made(svc, rec, j, in_job=in_job)
        lines += put_back(svc, rec.switch)
        return lines
    lines += finish(svc, rec, j, in_job=in_job)
    if rec.switch is not None:  # not verified by this job: the VM's own images stay
        lines += [
            f"previous image {m.aside} kept: delete it once {rec.name} is checked"
            for m in rec.switch.moves
            if m.aside is not None and svc.files.exists(m.aside)
        ]
    return lines


def finish(
    svc: RestoreService, rec: Instant, j: RestoreJournal, *, in_job: bool = False
) -> list[str]:
    """Every disk is on its local image: persist that definition, make the symlinks, stop
    the export and remove the overlays."""
    svc.driver.define(rec.uri, rec.final_xml)
    lines = [f"{rec.name} defined on its local images"]
    for link, target in rec.links:
        if not svc.files.exists(link):
            svc.files.symlink(link, target)
            lines.append(f"symlink {link} -> {target}")
    svc.driver.refresh_default_pool(rec.uri)
    lines += _stop_export(svc, rec, j, in_job)
    for d in rec.disks:
        if svc.files.remove(d.overlay):
            lines.append(f"overlay {d.overlay} removed")
    return lines


def remove_made(
    svc: RestoreService, rec: Instant, j: RestoreJournal, *, in_job: bool = False
) -> list[str]:
    """The export stopped and every path the restore may have made removed (nothing of the
    VM ran from them, or it is being put back)."""
    lines = _stop_export(svc, rec, j, in_job)
    for path in rec.made:
        if svc.files.remove(path):
            lines.append(f"removed {path}")
    for m in rec.switch.moves if rec.switch is not None else []:
        # --replace: a copy at the VM's own path, only once the VM's image is safe aside
        if m.aside is not None and svc.files.exists(m.aside) and svc.files.remove(m.final):
            lines.append(f"removed the partial copy {m.final}")
    for directory in reversed(j.dirs):
        if svc.files.remove_dir(directory):
            lines.append(f"removed the directory {directory}")
    return lines


def _stop_export(svc: RestoreService, rec: Instant, j: RestoreJournal, in_job: bool) -> list[str]:
    lines = []
    if in_job and j.export_job is not None:
        with svc.uow() as uow:
            job = uow.jobs.get(j.export_job)
        if job is not None and job.state in (JobState.IN_PROGRESS, JobState.CANCELLING):
            with contextlib.suppress(VmvaultError):
                svc.exports.stop(j.export_job)
                lines.append(f"export job {j.export_job} stopped")
    if svc.files.remove(rec.socket):
        lines.append(f"removed the socket {rec.socket}")
    return lines


def _defined_sources(svc: RestoreService, rec: Instant) -> dict[str, str | None]:
    live = svc.driver.domain(rec.uri, rec.uuid)
    if live is None:
        return {}
    shape = svc.driver.inspect(live.xml)
    return {d.target: d.path for d in shape.disks}


def _rebuild(svc: RestoreService, rec: Instant, sources: dict[str, str | None]) -> list[str]:
    """The copy cannot finish: each local image not yet pivoted to (``sources``: where each
    disk ran from) rebuilt from the point, the overlay's writes committed into it, the VM
    defined on them and started again if it ran.  A disk already pivoted keeps its local
    image: it holds every write since the pivot (its overlay stopped at it)."""
    live = svc.driver.domain(rec.uri, rec.uuid)
    was_running = live is not None and live.power in RUNNING_STATES
    svc.instant.destroy(rec.uri, rec.uuid)
    lines = [f"{rec.name} stopped: its export is gone, its copy could not finish"]
    with svc.uow() as uow:
        point = uow.points.get(rec.point)
    if point is None:
        raise PointNotFound(point=rec.point, path="the catalog")
    reading = Healing(svc.ctx).reading_store(point)
    store = reading.store
    manifest = store.read_manifest(point.id)
    for d in rec.disks:
        if sources.get(d.target) == str(d.final):
            lines.append(f"{d.target}: {d.final} kept (pivoted before: it has every write)")
            continue
        svc.files.remove(d.final)
        index = store.read_point_index(manifest, d.target)
        svc.write_disk(
            store, index, d.final, fmt=d.fmt, workers=svc.workers, overwrite=True,
            progress=None, cancel=None,
        )  # fmt: skip
        svc.instant.commit_overlay(d.overlay, d.final, d.fmt, d.target)
        lines.append(
            f"{d.target}: {d.final} rebuilt from point {point.id}, the guest's writes committed"
        )
    svc.driver.define(rec.uri, rec.final_xml)
    if was_running:
        svc.driver.start(rec.uri, rec.uuid)
        lines.append(f"{rec.name} started again on its local images")
    return lines
