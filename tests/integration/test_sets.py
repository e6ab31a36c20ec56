"""Backup sets on real lab guests (three of the session lab's guests with an agent): three
points with one set id, one instant and a measured set window; a VM that fails phase 1 (its
lock held by another process, or the VM undefined mid-set) leaves no point for any VM and
every guest released, with no libvirt job or checkpoint left; a
SIGKILL in phase 1 (guests frozen, waiting for one another) and in phase 3 (reading) is
cleaned up by the next start; a cancel of the set job in each phase undoes every VM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.conftest import LAB_VARIANTS, assert_vm_clean, lab_settings
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.backup_set import SetStep
from vmvault.domain.job import Job, JobState, JobType
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.lab.waiting import destroy_and_undefine
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.rundir import RunDir
from vmvault.services.backup_sets import SetOutcome

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}
#: three guests with an agent (each freezes its file systems)
SET = [N["standard"], N["raw-disk"], N["app-hook"]]

#: A real set in its own process that stops (sleeps) when VM argv[1] reaches argv[2]:
#: "window" (frozen, its backup job not begun yet; the others frozen, waiting for it) or a phase.
HOLD_SET_AT = """
import sys, time
from vmvault.bootstrap import bootstrap
vm, phase, vms = sys.argv[1], sys.argv[2], sys.argv[3:]
services = bootstrap()
services.backup_sets.hold_timeout = 600.0  # held on purpose (the setting stops at 60 s)
def hold(job, name="window"):
    if name == phase and job.vm_name and job.vm_name.endswith("/" + vm):
        print("holding", job.id, flush=True)
        time.sleep(600)
services.runner.phase_observers.append(hold)
services.backups.window_observers.append(hold)
services.backup_sets.backup_set(None, vms)
"""


@pytest.fixture(scope="module")
def home(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sets-home")


@pytest.fixture(scope="module")
def svc(home: Path) -> Iterator[Services]:
    services = bootstrap(lab_settings(home))
    services.vaults.create("main", "local", None)
    services.inventory.discover(None)
    for out in services.inventory.register(None, SET, allow_crash_consistent=True):
        assert out.error is None, out.error
    yield services


def _checkpoints() -> dict[str, set[str]]:
    conn = libvirt.open(URI)
    try:
        return {vm: {c.getName() for c in conn.lookupByName(vm).listAllCheckpoints()} for vm in SET}
    finally:
        conn.close()


def _points(svc: Services) -> set[str]:
    return {p.id for vm in SET for p in svc.point_listing.list_points(None, vm)}


def _assert_undone(svc: Services, before_points: set[str], before_cps: dict[str, set[str]]) -> None:
    """No new point for any VM; every VM clean with exactly the checkpoints it had."""
    assert _points(svc) == before_points
    for vm in SET:
        assert_vm_clean(svc.settings.work_dir, vm, before_cps[vm])
    vault = svc.settings.home / "vaults" / "main"
    indexes = set(os.listdir(vault / "indexes"))
    manifests = {n.removesuffix(".manifest") for n in os.listdir(vault / "manifests")}
    assert indexes == manifests == before_points  # no half point, no unlisted point


def _set_job(svc: Services) -> Job | None:
    jobs = svc.jobs.list_jobs(job_type=JobType.BACKUP_SET)
    return next((j for j in jobs if j.state.active), None)


# --- a healthy set ----------------------------------------------------------------------------


def test_a_set_of_three_vms_has_one_set_id_one_instant_and_a_window(svc: Services) -> None:
    out = svc.backup_sets.backup_set(None, SET)
    assert out.result is not None, svc.jobs.show(out.job.id)
    result = out.result
    points = svc.backup_sets.points(result.set_id)
    assert sorted(p.vm_name for p in points) == sorted(SET)
    assert len({p.created_at for p in points}) == 1 and points[0].created_at == result.instant
    assert all(p.frozen_ms > 0 for p in points)  # every guest was frozen
    # first freeze to last thaw covers each VM's own window
    assert result.window_ms >= max(p.frozen_ms for p in points)
    print(f"set window {result.window_ms} ms; frozen {[p.frozen_ms for p in points]}")
    with svc.backups.uow() as uow:
        published = [s for s in uow.jobs.steps(out.job.id) if s.step == SetStep.PUBLISHED]
    assert published and published[0].data["window_ms"] == result.window_ms
    children = svc.jobs.list_jobs(parent_id=out.job.id)
    assert len(children) == 3 and all(c.state is JobState.COMPLETED for c in children)
    for p in points:
        assert_vm_clean(svc.settings.work_dir, p.vm_name, {p.checkpoint} - {None})


# --- a VM failing phase 1 ------------------------------------------------------------------------


def test_a_vm_failing_phase_1_leaves_no_point_for_any_vm(svc: Services) -> None:
    before_points, before_cps = _points(svc), _checkpoints()
    failing = svc.point_listing.find_vm(N["app-hook"])
    # another vmvault process holds app-hook's lock: its point in time cannot be taken,
    # while the other two are frozen waiting for it
    run = RunDir.of(svc.settings.work_dir, failing.uuid)
    run.create()
    lock = run.try_lock()
    assert lock is not None

    def late(job: Job, name: str) -> None:  # the others are frozen, waiting, when it fails
        if name == "freezing" and job.vm_name == failing.label:
            time.sleep(3)

    svc.runner.phase_observers.append(late)
    try:
        out = svc.backup_sets.backup_set(None, SET)
    finally:
        lock.close()
        svc.runner.phase_observers.remove(late)
    assert out.result is None and out.error is not None
    assert out.error.code == "BACKUP_SET_FAILED" and N["app-hook"] in out.error.text, out.error
    codes = {c.job.vm_name: c.job.error_code for c in out.children}
    assert codes[failing.label] == "BACKUP_JOB_RUNNING", codes
    others = [c for c in out.children if c.job.vm_name != failing.label]
    assert all(c.job.error_code == "BACKUP_SET_ABORTED" for c in others), codes
    _, log = svc.jobs.show(out.job.id)
    print("\n".join(log))
    _assert_undone(svc, before_points, before_cps)


def test_a_vm_undefined_mid_set_leaves_no_point_for_any_vm(svc: Services) -> None:
    """A fourth guest (added to the session lab, never ``lab down``) is destroyed and
    undefined while the set runs: the other two, frozen and waiting, are undone."""
    [extra] = svc.lab.up(1, ["standard"])  # numbers continue: <prefix>-standard-2
    name = str(extra["name"])
    svc.inventory.discover(None)
    for reg in svc.inventory.register(None, [name]):
        assert reg.error is None, reg.error
    members = [N["standard"], N["raw-disk"], name]
    before_points, before_cps = _points(svc), _checkpoints()
    reached, go = threading.Event(), threading.Event()

    def hold(job: Job, phase: str) -> None:
        if phase == "freezing" and (job.vm_name or "").endswith("/" + name):
            reached.set()
            go.wait(120)

    svc.runner.phase_observers.append(hold)
    svc.backup_sets.hold_timeout = 300.0  # the undefine may be slow on a loaded host
    result: list[SetOutcome] = []
    worker = threading.Thread(
        target=lambda: result.append(svc.backup_sets.backup_set(None, members))
    )
    worker.start()
    try:
        assert reached.wait(180)
        time.sleep(3)  # the other two freeze and wait for it
        conn = libvirt.open(URI)
        try:
            destroy_and_undefine(conn.lookupByName(name))
        finally:
            conn.close()
    finally:
        go.set()
        worker.join(300)
        svc.runner.phase_observers.remove(hold)
        svc.backup_sets.hold_timeout = float(svc.settings.set_hold_timeout)
    out = result[0]
    _, log = svc.jobs.show(out.job.id)
    print("\n".join(log))
    assert out.error is not None and out.error.code == "BACKUP_SET_FAILED"
    assert name in out.error.text, out.error
    codes = {c.job.vm_name: c.job.error_code for c in out.children}
    assert sum(1 for code in codes.values() if code == "BACKUP_SET_ABORTED") == 2, codes
    _assert_undone(svc, before_points, before_cps)


# --- SIGKILL in phase 1 and phase 3 --------------------------------------------------------------


@pytest.mark.parametrize("phase", ["window", "reading"], ids=["phase-1", "phase-3"])
def test_a_set_killed_mid_way_is_clean_after_the_next_start(
    svc: Services, home: Path, phase: str
) -> None:
    before_points, before_cps = _points(svc), _checkpoints()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home)}
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    held = N["raw-disk"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SET_AT, held, phase, *SET],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("holding"), line
        # phase 1: the other two freeze and wait for the held one; phase 3: they read
        time.sleep(8)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    parent = _set_job(svc)
    assert parent is not None
    # what the dead process left: begun libvirt jobs, new checkpoints, a frozen guest
    conn = libvirt.open(URI)
    try:
        doms = {vm: conn.lookupByName(vm) for vm in SET}
        begun = [vm for vm, d in doms.items() if d.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE]
        frozen = agent.agent_command(doms[held], "guest-fsfreeze-status", timeout=10)
    finally:
        conn.close()
    assert len(begun) >= 2, begun
    assert frozen == ("frozen" if phase == "window" else "thawed")
    recovered = svc.recovery.recover()
    assert {r.job.id for r in recovered} >= {parent.id}
    assert recovered[-1].job.id == parent.id  # the set after its children
    closed, log = svc.jobs.show(parent.id)
    print("\n".join(log))
    assert closed.error_code == "JOB_INTERRUPTED"
    assert all(c.state.final for c in svc.jobs.list_jobs(parent_id=parent.id))
    _assert_undone(svc, before_points, before_cps)


# --- cancel in each phase ------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["freezing", "window", "reading"])
def test_cancelling_the_set_in_each_phase_undoes_every_vm(svc: Services, phase: str) -> None:
    before_points, before_cps = _points(svc), _checkpoints()
    reached, go = threading.Event(), threading.Event()
    held = N["standard"]

    def hold(job: Job, name: str = "window") -> None:
        if name == phase and (job.vm_name or "").endswith("/" + held) and not reached.is_set():
            reached.set()
            go.wait(60)

    svc.runner.phase_observers.append(hold)
    svc.backups.window_observers.append(hold)
    result: list[SetOutcome] = []
    worker = threading.Thread(target=lambda: result.append(svc.backup_sets.backup_set(None, SET)))
    worker.start()
    try:
        assert reached.wait(180)
        parent = _set_job(svc)
        assert parent is not None
        svc.jobs.cancel(parent.id)
        deadline = time.monotonic() + 30
        child = next(j for j in svc.jobs.list_jobs(parent_id=parent.id) if j.vm_name
                     and j.vm_name.endswith("/" + held))  # fmt: skip
        while svc.jobs.show(child.id)[0].state is JobState.IN_PROGRESS:
            assert time.monotonic() < deadline, "the cancel never reached the child"
            time.sleep(0.1)
    finally:
        go.set()
        worker.join(300)
        svc.runner.phase_observers.remove(hold)
        svc.backups.window_observers.remove(hold)
    out = result[0]
    _, log = svc.jobs.show(out.job.id)
    print("\n".join(log))
    assert out.job.state is JobState.CANCELLED
    assert all(c.result is None and c.job.state.final for c in out.children)
    _assert_undone(svc, before_points, before_cps)
