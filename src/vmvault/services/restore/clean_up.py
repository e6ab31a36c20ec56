"""After a kill: undo what a restore job whose process died left, from its journal.

Start-up recovery (services/recovery.py) calls :func:`clean_up` for every restore job whose
process is gone, before it closes the job ``JOB_INTERRUPTED``.  It reads only the journal
(:mod:`.journal`) and what it finds on the host, so it is safe to run twice:

* the dead process's partial files (``.<name>.tmp.<pid>.*``) and every staged image;
* ``--disks-only``: the images it had finished (the restore as a whole did not);
* ``--replace`` (``switching`` recorded): if the VM is defined again after an ``undefined``
  step, the switch finished — the images set aside are kept and named, the checkpoint chain
  reset; otherwise the switch is rolled back (:func:`.rollback.put_back`);
* a new VM (``defining`` recorded): defined — kept (it was only not started); not defined —
  every file it made is removed.  A restore test's VM is always removed with its files;
* ``--instant`` (``instant`` recorded): :func:`.instant_settle.settle` — pivot, finish,
  rebuild from the point, or roll the replaced VM back (docs/restore.md, "Instant recovery");
* the directories made for staging, if they are empty now.

``still_ours()`` is asked before the VM of a ``--replace`` is touched (False: another job
holds it now, and the roll-back is left to a person).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from vmvault.domain.job import Job, JournalStep
from vmvault.services.restore import journal
from vmvault.services.restore.instant_settle import settle
from vmvault.services.restore.restore_test import remove_test_vm
from vmvault.services.restore.rollback import put_back
from vmvault.services.restore.switch import reset_chain
from vmvault.storage.fsutil import TMP_MARK

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def clean_up(
    svc: RestoreService,
    job: Job,
    steps: Iterable[JournalStep],
    still_ours: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Undo what restore job ``job`` left behind; returns what was done, one line each."""
    j = journal.RestoreJournal.read(steps)
    files = svc.files
    done: list[str] = []
    for w in j.writes:
        if job.pid is not None:
            for partial in files.names(w.path.parent, f".{w.path.name}{TMP_MARK}{job.pid}."):
                files.remove(partial)
                done.append(f"removed the partial file {partial}")
        if not j.disks_only:
            if files.remove(w.path):
                done.append(f"removed the staged image {w.path}")
        elif w.path in j.written and files.remove(w.path):
            done.append(f"removed {w.path}: the disks-only restore did not finish")
    if j.instant is not None:
        if j.instant.switch is not None and not still_ours():
            done.append(f"{j.instant.name} was being replaced, but another job holds it now")
        else:
            done += settle(svc, j.instant, j)
            if j.instant.switch is not None and journal.UNDEFINED in j.seen:
                # libvirt's checkpoints went with the undefine, whichever way it settled
                done += _reset_chain_of(svc, job)
    elif j.switch is not None:
        done += _after_switch(svc, job, j, j.switch, still_ours)
    if j.new_vm is not None:
        done += _after_new_vm(svc, j, j.new_vm)
    for directory in reversed(j.dirs):
        if files.remove_dir(directory):
            done.append(f"removed the directory {directory} made for staging")
    return done


def _after_switch(
    svc: RestoreService,
    job: Job,
    j: journal.RestoreJournal,
    switch: journal.Switch,
    still_ours: Callable[[], bool],
) -> list[str]:
    live = svc.driver.domain(switch.uri, switch.uuid)
    if journal.UNDEFINED in j.seen and live is not None:  # defined again: the switch finished
        lines = [
            f"previous image {m.aside} kept: the replace of {switch.vm} was interrupted after "
            "its switch; delete it once the VM is checked"
            for m in switch.moves
            if m.aside is not None and svc.files.exists(m.aside)
        ]
        return lines + _reset_chain_of(svc, job)
    if not still_ours():
        return [f"{switch.vm} was being switched, but another job holds it now: left to it"]
    return put_back(svc, switch)


def _reset_chain_of(svc: RestoreService, job: Job) -> list[str]:
    """:func:`reset_chain` of the job's VM, if the catalog still has it."""
    with svc.uow() as uow:
        vm = uow.vms.get(job.vm_uuid) if job.vm_uuid else None
    return reset_chain(svc, vm) if vm is not None else []


def _after_new_vm(svc: RestoreService, j: journal.RestoreJournal, vm: journal.NewVm) -> list[str]:
    if vm.test:
        if journal.TEST_REMOVED in j.seen:
            return []
        gone = remove_test_vm(svc, vm, None)
        return [f"removed the test VM {vm.name} and its files ({', '.join(gone) or 'none'})"]
    if svc.driver.domain(vm.uri, vm.uuid) is not None:
        return [
            f"{vm.name} ({vm.uuid}) had been defined: kept (not started, not registered); "
            "remove it if it is not wanted"
        ]
    return [f"removed {p}: {vm.name} was never defined" for p in vm.made if svc.files.remove(p)]
