"""Cleaning up after a vmvault process that died mid-backup.

:func:`cleanup_stale` is called before each backup of a VM and by start-up recovery.  The
caller says what the dead backup was doing — an :class:`~vmvault.domain.recovery_point.
UnfinishedBackup` read from its job's journal in the catalog — so the adapter needs no state
file and knows no catalog.  With the VM's run-directory lock taken (a live owner keeps it: then
nothing is done), in order:

1. a backup job whose NBD socket lives under the work directory — or that the dead backup's
   pull began on a remote host (TCP with TLS, every export named ``vmvault-<POINT>-<target>``
   with the point of ``left``, the unfinished backup in this catalog's journal:
   domain/pull.py) — is ended with the same code a live backup uses
   (:func:`~vmvault.hypervisor.libvirt.jobcontrol.end_backup_job`); any other job — another
   deployment's pull of the same VM, a pull without a journal record here — is left alone
   and reported;
2. the dead backup's checkpoint is *reported*, not deleted (only the catalog knows whether a
   recovery point uses it);
3. a VM the dead backup paused (its journal: ``quiesce`` ``pause`` — or a ``pausing`` step, the
   saved-state fallback after a failed freeze —, not paused before, window entered and not
   released: :attr:`~vmvault.domain.recovery_point.UnfinishedBackup.may_have_paused`) is resumed if it is still paused by a user request, and a guest
   it may have frozen — or any guest whose backup job was ours — is thawed if
   ``guest-fsfreeze-status`` says ``frozen``; both with :mod:`~vmvault.hypervisor.libvirt.
   quiesce`'s own :func:`resume` / :func:`thaw`;
4. the socket and scratch files, and stale offline ``qemu-nbd`` exports, are removed.

Without a journal (``left=None``) it still ends a local job of ours (its socket) and thaws a
guest that job left frozen; a remote pull job it never ends (nothing says whose it is).  Running it twice finds nothing the second time.
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import IO, Any

import libvirt

from vmvault.domain.recovery_point import UnfinishedBackup
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.connection import error_message, open_connection
from vmvault.hypervisor.libvirt.jobcontrol import (
    BackupServer,
    domain_name,
    end_backup_job,
    has_checkpoint,
    job_info,
)
from vmvault.hypervisor.libvirt.quiesce import Window, frozen_now, resume, thaw
from vmvault.hypervisor.libvirt.rundir import RunDir
from vmvault.hypervisor.offline import cleanup_stale_exports


def cleanup_stale(
    uri: str, vm_uuid: str, work_root: Path, left: UnfinishedBackup | None = None
) -> list[str]:
    """End what a dead vmvault process left on VM ``vm_uuid``; returns what was done, one
    line each (see the module docstring)."""
    run = RunDir.of(work_root, vm_uuid)
    done: list[str] = []
    lock: IO[str] | None = None
    if run.path.is_dir():
        lock = run.try_lock()
        if lock is None:
            return [f"a live vmvault process holds {run.lock_path}: nothing done"]
    try:
        with contextlib.closing(open_connection(uri)) as conn:
            try:
                dom = conn.lookupByUUIDString(vm_uuid)
            except libvirt.libvirtError:
                dom = None
            if dom is not None:
                done += _cleanup_domain(dom, run, left)
        if run.path.is_dir():
            done += [f"removed {p}" for p in run.remove_leftovers()]
        done += cleanup_stale_exports(run.root)
    finally:
        if lock is not None:
            lock.close()
    return done


def _ours(run: RunDir, left: UnfinishedBackup | None, server: BackupServer | None) -> bool:
    """A job of the dead backup's: its socket under the work directory, or the pull of the
    unfinished backup ``left`` (domain/pull.py: TCP with TLS, every export named for its
    point; the catalog's one job per VM says no live process of ours still reads it)."""
    if server is None:
        return False
    if run.owns_socket(server.socket):
        return True
    return left is not None and server.pulled_for(left.point)


def _cleanup_domain(dom: Any, run: RunDir, left: UnfinishedBackup | None) -> list[str]:
    done: list[str] = []
    name = domain_name(dom)
    ours = False
    jtype, _ = job_info(dom)
    if jtype:
        end = end_backup_job(dom, partial(_ours, run, left))
        if end.foreign is not None:
            done.append(f"left the {end.foreign} of {name} alone: not vmvault's")
        elif not end.ended:
            done.append(f"could not abort the stale backup job of {name} ({end.error})")
        elif end.aborted:
            ours = True
            where = f" ({end.server})" if end.server is not None else ""
            done.append(f"aborted the stale backup job of {name}{where}")
    cp = left.checkpoint if left is not None else None
    if cp and has_checkpoint(dom, cp) and (ours or left is None or left.window_entered):
        done.append(
            f"the interrupted backup had created checkpoint {cp} "
            "(not deleted here: only the catalog knows whether a recovery point uses it)"
        )
    window = Window(quiesce=left.quiesce if left is not None else "none")
    if left is not None and left.may_have_paused:
        try:
            st, reason = dom.state()
            if st == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_USER:
                window.needs_resume = True
                resume(dom, window)
                if window.resume_error:
                    done.append(f"could not resume {name}: {window.resume_error}")
                else:
                    done.append(f"resumed {name} (paused by the interrupted backup)")
        except libvirt.libvirtError as exc:
            done.append(f"could not resume {name}: {error_message(exc)}")
    may_be_frozen = ours or (left is not None and left.may_hold_guest and left.quiesce == "freeze")
    try:
        running = dom.isActive() and dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED
    except libvirt.libvirtError:
        running = False
    if running and may_be_frozen and frozen_now(dom):
        window.needs_thaw = window.frozen = True
        with agent.response_timeout(dom, 10):
            thaw(dom, name, window, budget=20.0)
        if window.needs_thaw:
            done.append(f"could not thaw {name}: {window.thaw_error}")
        else:
            done.append(f"thawed {window.fs_thawed} file system(s) of {name}")
    return done


__all__ = ["cleanup_stale"]
