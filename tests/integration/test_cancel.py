"""Cancel at every phase of a backup, and of a restore, leaves no trace.

A backup cancelled in ``freezing`` (asked from inside the freeze / pause window, where the
backup writes nothing to the catalog: seen at the first check once the guest is released),
``reading``,
``writing`` or ``committing``: the job ends cancelled, the libvirt job is ended, the guest is
thawed / resumed and running, no new point (catalog, vault) and no new checkpoint remain, the
work directory is empty, and the next backup works and is incremental.  One VM is reused for
every phase; each case's "next backup" is the next case's base.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS, assert_vm_clean, lab_settings
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.restore import RestoreMode
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.domxml import has_agent_channel
from vmvault.services.jobs import JobContext

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}
PHASES = ["freezing", "reading", "writing", "committing"]


@pytest.fixture(scope="module")
def svc(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One catalog and vault for the module; the writer, no-agent and standard guests
    registered, each with a first (full) point."""
    services = bootstrap(lab_settings(tmp_path_factory.mktemp("cancel-home")))
    services.vaults.create("main", "local", None)
    services.inventory.discover(None)
    vms = [N["writer"], N["no-agent"], N["standard"]]
    for out in services.inventory.register(None, vms, allow_crash_consistent=True):
        assert out.error is None, out.error
    for out in services.backups.backup(None, vms):
        assert out.result is not None, services.jobs.show(out.job.id)
    poll = JobContext.CANCEL_POLL_EVERY
    JobContext.CANCEL_POLL_EVERY = 0.0  # see a cancel at the very next chunk
    yield services
    JobContext.CANCEL_POLL_EVERY = poll
    services.runner.observers.clear()
    services.runner.phase_observers.clear()


def _vault_files(svc: Services) -> tuple[list[str], list[str]]:
    vault = svc.settings.home / "vaults" / "main"
    return sorted(os.listdir(vault / "indexes")), sorted(os.listdir(vault / "manifests"))


def _phases(log: list[str]) -> list[str]:
    return [line.split("phase: ", 1)[1] for line in log if "phase: " in line]


def _cancel_backup_at(svc: Services, vm: str, phase: str) -> None:
    """Back ``vm`` up, cancelling the job as it enters ``phase``; check that nothing is left
    and that the next backup works, incrementally."""
    points = [p.id for p in svc.point_listing.list_points(None, vm)]
    files = _vault_files(svc)
    seen: dict[str, Any] = {}

    def in_window(job: Job) -> None:
        cancel_at(job, "freezing")

    def cancel_at(job: Job, name: str) -> None:
        if job.type is JobType.BACKUP and name == phase:
            conn = libvirt.open(URI)
            try:  # what the guest looks like inside the window
                dom = conn.lookupByName(vm)
                seen["state"] = dom.state()[0]
                if has_agent_channel(dom.XMLDesc(0)):
                    seen["freeze"] = agent.agent_command(dom, "guest-fsfreeze-status", timeout=5)
            finally:
                conn.close()
            svc.jobs.cancel(job.id)

    # ``freezing`` is entered (and journaled) before the window: cancel from inside it
    hooks: list[Any] = svc.backups.window_observers
    hook: Any = in_window
    if phase != "freezing":
        hooks, hook = svc.runner.phase_observers, cancel_at
    hooks.append(hook)
    try:
        outcome = svc.backups.backup(None, [vm])[0]
    finally:
        hooks.remove(hook)
    job, log = svc.jobs.show(outcome.job.id)
    assert job.state is JobState.CANCELLED, log
    assert any("cancel requested" in line for line in log)
    assert _phases(log) == PHASES[: PHASES.index(phase) + 1], log
    if phase == "freezing":  # the hook ran inside the freeze / pause window
        assert seen, "the window hook never ran"
        if "freeze" in seen:
            assert seen["freeze"] == "frozen", seen
        else:
            assert seen["state"] == libvirt.VIR_DOMAIN_PAUSED, seen
    assert [p.id for p in svc.point_listing.list_points(None, vm)] == points  # catalog
    assert _vault_files(svc) == files  # no index directory, no manifest
    last = svc.point_listing.get(points[0])
    assert_vm_clean(svc.settings.work_dir, vm, {last.checkpoint} - {None})

    again = svc.backups.backup(None, [vm])[0]
    assert again.result is not None, svc.jobs.show(again.job.id)
    reads = [d.incremental for d in again.result.disks if not d.excluded]
    assert reads and all(reads), again.result
    assert_vm_clean(svc.settings.work_dir, vm, {again.result.checkpoint} - {None})


@pytest.mark.parametrize("phase", PHASES)
def test_cancel_a_backup_at_each_phase(svc: Services, phase: str) -> None:
    _cancel_backup_at(svc, N["writer"], phase)


def test_cancel_while_the_vm_is_paused_for_its_point(svc: Services) -> None:
    """The no-agent guest is paused around backupBegin: a cancel there resumes it."""
    _cancel_backup_at(svc, N["no-agent"], "freezing")


def test_cancel_while_reading_chunks(svc: Services) -> None:
    """Not at a phase boundary: in the middle of the reads (the per-chunk check)."""
    vm = N["writer"]
    points = [p.id for p in svc.point_listing.list_points(None, vm)]

    def observe(job: Job) -> None:
        if job.state is JobState.IN_PROGRESS and job.bytes_done > 0:
            svc.jobs.cancel(job.id)

    svc.runner.observers.append(observe)
    try:
        outcome = svc.backups.backup(None, [vm])[0]
    finally:
        svc.runner.observers.remove(observe)
    job, log = svc.jobs.show(outcome.job.id)
    assert job.state is JobState.CANCELLED, log
    assert _phases(log) == ["freezing", "reading"], log
    assert [p.id for p in svc.point_listing.list_points(None, vm)] == points
    assert_vm_clean(
        svc.settings.work_dir, vm, {svc.point_listing.get(points[0]).checkpoint} - {None}
    )


def _images(vm: str) -> dict[Path, int]:
    """The VM's disk images and their inodes (a rename into place would change them)."""
    conn = libvirt.open(URI)
    try:
        root = ET.fromstring(conn.lookupByName(vm).XMLDesc(0))
    finally:
        conn.close()
    files = [s.get("file", "") for s in root.findall("./devices/disk[@device='disk']/source")]
    return {Path(f): Path(f).stat().st_ino for f in files if f}


def _leftovers(dirs: set[Path]) -> list[Path]:
    return [
        p
        for d in dirs
        for p in d.iterdir()
        if "vmvault-staging" in p.name or ".pre-restore-" in p.name
    ]


@pytest.mark.parametrize("when", ["writing", "switching"])
def test_cancel_a_replace_leaves_the_vm_untouched(svc: Services, when: str) -> None:
    """Cancelled while its staging images are written (mid-disk), or once they are staged
    and verified (the last cancel point): staged files gone, the VM as it was."""
    vm = N["standard"]
    point = svc.point_listing.list_points(None, vm)[0]
    images = _images(vm)
    dirs = {p.parent for p in images}
    conn = libvirt.open(URI)
    try:
        definition = conn.lookupByName(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    seen: list[Path] = []

    def mid_write(job: Job) -> None:
        if job.type is JobType.RESTORE and job.bytes_done > 0 and not seen:
            seen.extend(_leftovers(dirs))  # the partial staging file being written
            svc.jobs.cancel(job.id)

    def at_switch(job: Job, name: str) -> None:
        if job.type is JobType.RESTORE and name == "switching":
            seen.extend(_leftovers(dirs))  # every disk staged and verified
            svc.jobs.cancel(job.id)

    if when == "writing":
        svc.runner.observers.append(mid_write)
    else:
        svc.runner.phase_observers.append(at_switch)
    try:
        outcome = svc.restores.restore(vm, point.id, RestoreMode.REPLACE)
    finally:
        svc.runner.observers.clear()
        svc.runner.phase_observers.clear()
    job, log = svc.jobs.show(outcome.job.id)
    assert job.state is JobState.CANCELLED, log
    phases = _phases(log)
    assert phases == (
        ["reading", "writing"] if when == "writing" else ["reading", "writing", "switching"]
    ), log
    if when == "writing":
        assert len(seen) == 1 and ".tmp." in seen[0].name, seen
    else:
        assert len(seen) == len(images) and all(p.name.endswith(".vmvault-staging") for p in seen)
    assert _leftovers(dirs) == []
    assert _images(vm) == images  # same files, never renamed
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(vm)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == definition
    finally:
        conn.close()


def test_cancel_of_an_ended_job_is_refused(cli: CliRunner) -> None:
    cli("vault", "create", "main", "--location", "local")
    job_id = cli("discover", "--json").json()["id"]
    r = cli("jobs", "cancel", str(job_id))
    assert r.code == 2 and "error JOB_NOT_ACTIVE" in r.stderr
    r = cli("jobs", "wait", str(job_id), "--json")
    assert r.code == 0 and r.json()["state"] == "completed"
