"""A backup whose process dies (SIGKILL) mid-job: start-up recovery fails the job with
``JOB_INTERRUPTED``, says in its log what it cleaned, and leaves a clean VM — no libvirt job,
guest running and thawed, no stray checkpoint, no half point, an empty work directory — whose
next backup works (incrementally when it has a previous point)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.conftest import LAB_VARIANTS, assert_vm_clean, lab_settings
from tests.integration.guests import guest
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.job import Job, JobState, JobType
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.restore import LibvirtRestoreDriver

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}

#: A real backup in its own process that stops (sleeps) on entering a phase, to be killed there;
#: "window": inside the freeze / pause window (the guest frozen or paused, nothing begun).
HOLD_AT_PHASE = """
import sys, time
from vmvault.bootstrap import bootstrap
vm, phase = sys.argv[1], sys.argv[2]
services = bootstrap()
def hold(job, name="window"):
    if name == phase:
        print("holding", job.id, flush=True)
        time.sleep(600)
services.runner.phase_observers.append(hold)
services.backups.window_observers.append(hold)
services.backups.backup(None, [vm])
"""


def _point(svc: Services, job: Job) -> str:
    """The point the backup job was writing (its journal's ``planned`` step)."""
    with svc.backups.uow() as uow:
        planned = [s for s in uow.jobs.steps(job.id) if s.step == "planned"]
    return str(planned[0].data["point"])


@pytest.fixture(scope="module")
def home(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recovery-home")


@pytest.fixture(scope="module")
def svc(home: Path) -> Iterator[Services]:
    services = bootstrap(lab_settings(home))
    services.vaults.create("main", "local", None)
    services.inventory.discover(None)
    vms = [N["standard"], N["no-agent"]]
    for out in services.inventory.register(None, vms, allow_crash_consistent=True):
        assert out.error is None, out.error
    yield services


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env | extra


def _dom(conn: Any, name: str) -> Any:
    return conn.lookupByName(name)


def _phases(log: list[str]) -> list[str]:
    return [line.split("phase: ", 1)[1] for line in log if "phase: " in line]


def _backup_job(svc: Services, vm: str) -> Job | None:
    uuid = svc.point_listing.find_vm(vm).uuid
    jobs = svc.jobs.list_jobs(job_type=JobType.BACKUP, vm_uuid=uuid)
    return next((j for j in jobs if j.state.active), None)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no line from the backup process within {timeout} s")
    return proc.stdout.readline().strip()


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # reaped: its pid is gone


def _recover_and_check(svc: Services, vm: str, job: Job, expect: list[str]) -> Job:
    """recover() closes exactly ``job``, its log names ``expect``; the VM is clean."""
    assert job.state is JobState.IN_PROGRESS
    recovered = svc.recovery.recover()
    assert [r.job.id for r in recovered] == [job.id], recovered
    closed, log = svc.jobs.show(job.id)
    print("\n".join(log[-12:]))
    assert closed.state is JobState.FAILED and closed.error_code == "JOB_INTERRUPTED", closed
    assert recovered[0].job.state is JobState.FAILED
    for words in expect:
        assert any(line.split(" ", 2)[2].startswith(f"recovery: {words}") for line in log), (
            words,
            log,
        )
    assert svc.recovery.recover() == []  # idempotent

    checkpoints = {p.checkpoint for p in svc.point_listing.list_points(None, vm)} - {None}
    assert_vm_clean(svc.settings.work_dir, vm, checkpoints, exact=False)  # none stray
    vault = svc.settings.home / "vaults" / "main"
    indexes = set(os.listdir(vault / "indexes"))
    manifests = {n.removesuffix(".manifest") for n in os.listdir(vault / "manifests")}
    assert indexes == manifests  # no half-written point
    return closed


def _next_backup_works(svc: Services, vm: str, incremental: bool) -> None:
    out = svc.backups.backup(None, [vm])[0]
    assert out.result is not None, svc.jobs.show(out.job.id)
    reads = [d.incremental for d in out.result.disks if not d.excluded]
    assert reads and all(r == incremental for r in reads), out.result


def test_restart_while_reading(svc: Services, home: Path) -> None:
    """``vmvault backup`` killed while it reads: the pull job is still running in libvirt
    and the new checkpoint exists until recovery ends / deletes them."""
    vm = N["standard"]
    # enough data that the read lasts seconds, not a fraction of one
    guest(vm, "dd if=/dev/urandom of=/data/big bs=1M count=160 2>/dev/null; sync", 180)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmvault", "backup", vm],
        env=_env(home, VMVAULT_WORKERS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while (job := _backup_job(svc, vm)) is None or job.bytes_done == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "never read"
            time.sleep(0.02)
        _kill(proc)
    finally:
        _kill(proc)
    _, log = svc.jobs.show(job.id)
    assert _phases(log) == ["freezing", "reading"], log  # killed while reading
    conn = libvirt.open(URI)
    try:
        dom = _dom(conn, vm)
        assert dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE  # left running by the dead
        stray = [c.getName() for c in dom.listAllCheckpoints()]
    finally:
        conn.close()
    assert stray, "the dead backup's checkpoint"
    expect = ["aborted the stale backup job"] + [f"deleted checkpoint {c}" for c in stray]
    _recover_and_check(svc, vm, job, expect)
    _next_backup_works(svc, vm, incremental=False)  # the VM's first point


@pytest.mark.parametrize(
    ("variant", "phase", "expect"),
    [
        ("standard", "window", "thawed 2 file system(s)"),
        ("no-agent", "window", "resumed"),
        ("standard", "committing", "removed the half-written point"),
    ],
    ids=["frozen", "paused", "half-point"],
)
def test_restart_at_a_phase(
    svc: Services, home: Path, variant: str, phase: str, expect: str
) -> None:
    """Killed with the guest frozen (agent) or paused (no agent) around backupBegin, or with
    the indexes written and no manifest yet."""
    vm = N[variant]
    had_point = bool(svc.point_listing.list_points(None, vm))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AT_PHASE, vm, phase],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _read_line(proc, 120).startswith("holding")
        job = _backup_job(svc, vm)
        assert job is not None
        assert svc.recovery.recover() == []  # a live process's job is never touched
        assert svc.jobs.show(job.id)[0].state is JobState.IN_PROGRESS
        conn = libvirt.open(URI)
        try:
            dom = _dom(conn, vm)
            if phase == "window" and variant == "standard":
                assert agent.agent_command(dom, "guest-fsfreeze-status", timeout=5) == "frozen"
            elif phase == "window":
                assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        finally:
            conn.close()
        if phase == "committing":  # indexes written, no manifest yet: a half point
            point = _point(svc, job)
            vault = home / "vaults" / "main"
            assert (vault / "indexes" / str(point)).is_dir()
            assert not (vault / "manifests" / f"{point}.manifest").exists()
        _kill(proc)
    finally:
        _kill(proc)
    _recover_and_check(svc, vm, job, [expect])
    _next_backup_works(svc, vm, incremental=had_point)


def test_the_next_backup_cleans_up_without_recovery(svc: Services, home: Path) -> None:
    """No server restarted: the next backup of the VM closes the dead job (its key is
    claimed) and cleans up first — job, checkpoint, half point — then works."""
    vm = N["standard"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AT_PHASE, vm, "committing"],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _read_line(proc, 120).startswith("holding")
        dead = _backup_job(svc, vm)
        assert dead is not None
    finally:
        _kill(proc)
    point = _point(svc, dead)
    out = svc.backups.backup(None, [vm])[0]
    assert out.result is not None, svc.jobs.show(out.job.id)
    reads = [d.incremental for d in out.result.disks if not d.excluded]
    assert reads and all(reads), out.result
    closed = svc.jobs.show(dead.id)[0]
    assert closed.state is JobState.FAILED and closed.error_code == "JOB_INTERRUPTED"
    log = [line.split(" ", 2)[2] for line in svc.jobs.show(out.job.id)[1]]
    for words in (
        "aborted the stale backup job",
        f"deleted checkpoint vmvault-{point}",
        f"removed the half-written point {point}",
    ):
        assert any(line.startswith(f"left by an interrupted backup: {words}") for line in log), (
            words,
            log,
        )
    vault = home / "vaults" / "main"
    assert not (vault / "indexes" / str(point)).exists()


# --- a restore whose process dies in its --replace switch -----------------------------------------

#: A real ``--replace`` in its own process that stops right after recording journal step STEP.
HOLD_AT_STEP = """
import sys, time
from vmvault.bootstrap import bootstrap
from vmvault.domain.restore import RestoreMode
from vmvault.services.jobs import JobContext
vm, point, step = sys.argv[1], sys.argv[2], sys.argv[3]
record = JobContext.record
def hold(ctx, name, /, **data):
    record(ctx, name, **data)
    if name == step:
        print("holding", ctx.job.id, flush=True)
        time.sleep(600)
JobContext.record = hold
bootstrap().restores.restore(vm, point, RestoreMode.REPLACE)
"""


@pytest.mark.parametrize("step", ["undefined", "switched"])
def test_a_replace_killed_in_its_switch_is_rolled_back(
    svc: Services, home: Path, step: str
) -> None:
    """Killed with the VM undefined (nothing moved yet), or with every restored image in
    place and the old ones set aside: recovery puts the images back, defines the VM again
    as it was, and starts it; no staged or set-aside file is left."""
    vm = N["standard"]
    if not svc.point_listing.list_points(None, vm):
        _next_backup_works(svc, vm, incremental=False)
    point = svc.point_listing.list_points(None, vm)[0]
    conn = libvirt.open(URI)
    try:
        dom = _dom(conn, vm)
        definition = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        uuid = dom.UUIDString()
    finally:
        conn.close()
    dirs = {Path(p).parent for p in _disk_files(definition)}
    before = {d: sorted(os.listdir(d)) for d in dirs}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AT_STEP, vm, point.id, step],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = _read_line(proc, 300)
        assert line.startswith("holding"), line
        job_id = int(line.split()[1])
    finally:
        _kill(proc)
    conn = libvirt.open(URI)
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByUUIDString(uuid)  # killed with the VM undefined
    finally:
        conn.close()
    recovered = svc.recovery.recover()
    assert [r.job.id for r in recovered] == [job_id], recovered
    closed, log = svc.jobs.show(job_id)
    assert closed.state is JobState.FAILED and closed.error_code == "JOB_INTERRUPTED", closed
    lines = [line.split(" ", 2)[2] for line in log]
    for words in (f"defined {vm} again", f"started {vm} again"):
        assert any(line.startswith(f"recovery: {words}") for line in lines), (words, log)
    assert svc.recovery.recover() == []  # idempotent
    conn = libvirt.open(URI)
    try:
        dom = _dom(conn, vm)
        assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == definition
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()
    assert {d: sorted(os.listdir(d)) for d in dirs} == before  # no staged, no .pre-restore-
    assert LibvirtRestoreDriver().wait_for_agent(URI, uuid, 180)
    guest(vm, "test -d /data", 180)  # it boots from its own disks


def _disk_files(xml: str) -> list[str]:
    disks = ET.fromstring(xml).findall("./devices/disk[@device='disk']/source")
    return [str(s.get("file")) for s in disks if s.get("file")]
