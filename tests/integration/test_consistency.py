"""Consistency levels, honestly (docs/backup.md, "Consistency"), on real lab guests.

Every lab guest with an agent runs vmvault's fsfreeze hook dispatcher; the test hook's mode
(``ok`` / ``fail`` / ``sleep N``) is chosen per test through the agent
(:func:`vmvault.hypervisor.lab.hooks.set_test_hook`), so one image serves every case.  The
module boots only the guests it needs (its own, under the private lab prefix)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import assert_vm_clean
from tests.integration.guests import fsck_clean, image_file
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.consistency import HookState
from vmvault.domain.errors import FreezeRequired
from vmvault.domain.job import JobState
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.hypervisor.lab.hooks import set_test_hook
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.lab.writer import RECORDS_PATH, check_writer_records
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup

pytestmark = pytest.mark.lab

URI = "qemu:///system"
VARIANTS = ("standard", "no-agent", "writer")
N = {v: f"{lab_prefix()}-{v}-1" for v in VARIANTS}
#: short, so a sleeping hook times the freeze out quickly (the thaw budget is 10 s)
FREEZE_TIMEOUT = 3


def _checkpoints(conn: Any) -> dict[str, set[str]]:
    return {
        vm: {c.getName() for c in conn.lookupByName(vm).listAllCheckpoints()} for vm in N.values()
    }


@pytest.fixture(scope="module")
def home(
    lab: dict[str, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """This module's catalog, on the session lab's guests (``lab``): never a lab of its own —
    its ``lab down`` would destroy the guests every later module uses.  Each test leaves its
    guest as it found it (running, no test hook); the module removes the checkpoints its
    backups left on them, so later modules find the guests as they were."""
    assert all(name in lab for name in N.values()), sorted(lab)
    conn = libvirt.open(URI)
    try:
        before = _checkpoints(conn)
        yield tmp_path_factory.mktemp("consistency-home")
        for vm, names in _checkpoints(conn).items():
            dom = conn.lookupByName(vm)
            for name in names - before[vm]:
                dom.checkpointLookupByName(name).delete(0)
    finally:
        conn.close()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    env["VMVAULT_FREEZE_TIMEOUT"] = str(FREEZE_TIMEOUT)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


@pytest.fixture(scope="module")
def svc(home: Path) -> Services:
    services = bootstrap(Settings.from_env(_env(home)))
    services.vaults.create("main", "local", None)
    services.inventory.discover(None)
    for out in services.inventory.register(None, list(N.values()), allow_crash_consistent=True):
        assert out.error is None, out.error
    return services


@pytest.fixture
def dom(request: pytest.FixtureRequest) -> Iterator[Any]:
    conn = libvirt.open(URI)
    try:
        yield conn.lookupByName(N[request.param])
    finally:
        conn.close()


def _backup(svc: Services, vm: str, require: str | None = None) -> tuple[Any, RecoveryPoint | None]:
    out = svc.backups.backup(None, [vm], require=require)[0]
    return out, out.result


def _ok(svc: Services, vm: str) -> tuple[Any, RecoveryPoint]:
    out, point = _backup(svc, vm)
    assert point is not None, svc.jobs.show(out.job.id)
    return out, point


def _running_and_thawed(dom: Any) -> None:
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert agent.agent_command(dom, "guest-fsfreeze-status", timeout=10) == "thawed"


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_succeeding_hook_gives_application_consistent(svc: Services, dom: Any) -> None:
    set_test_hook(dom, "ok")
    try:
        _out, point = _ok(svc, N["standard"])
    finally:
        set_test_hook(dom, None)
    assert point.method.value == "guest-quiesce"
    assert point.consistency.value == "application-consistent"
    assert point.hooks is not None and point.hooks.state is HookState.SUCCEEDED
    assert [(h.name, h.exit, h.message) for h in point.hooks.hooks] == [
        ("50-lab-test", 0, "lab test hook: ok")
    ]
    assert point.frozen_ms > 0 and point.paused_ms == 0
    assert "hook(s) succeeded" in (point.method_reason or "")
    # the catalog row (migration 0008) and the API document carry the same
    shown = svc.point_listing.get(point.id)
    assert shown.hooks == point.hooks and shown.method_reason == point.method_reason
    _running_and_thawed(dom)


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_no_hook_gives_file_system_consistent(svc: Services, dom: Any) -> None:
    set_test_hook(dom, None)
    out, point = _ok(svc, N["standard"])
    assert point.method.value == "guest-quiesce"
    assert point.consistency.value == "file-system-consistent"
    assert point.hooks is not None and point.hooks.state is HookState.NONE
    assert out.job.state is JobState.COMPLETED


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_failing_hook_is_not_application_consistent_and_warns(svc: Services, dom: Any) -> None:
    set_test_hook(dom, "fail")
    try:
        out, point = _ok(svc, N["standard"])
    finally:
        set_test_hook(dom, None)
    assert point.consistency.value == "file-system-consistent"
    assert point.hooks is not None and point.hooks.state is HookState.FAILED
    assert point.hooks.hooks[0].exit == 3
    assert "told to fail" in point.hooks.hooks[0].message
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    assert any("told to fail" in w for w in out.job.warnings), out.job.warnings
    _running_and_thawed(dom)


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_sleeping_hook_times_out_thaws_and_takes_saved_state(svc: Services, dom: Any) -> None:
    set_test_hook(dom, f"sleep {FREEZE_TIMEOUT + 4}")
    try:
        out, point = _ok(svc, N["standard"])
    finally:
        set_test_hook(dom, None)
    _running_and_thawed(dom)
    assert point.method.value == "saved-state"  # never guest-quiesce when not frozen
    assert point.consistency.value == "crash-consistent"
    reason = point.method_reason or ""
    assert "could not be frozen" in reason and "paused" in reason, reason
    assert point.paused_ms > 0
    assert point.frozen_ms >= FREEZE_TIMEOUT * 1000  # the failed attempt, thaw verified
    assert point.hooks is not None and point.hooks.state is HookState.NOT_RUN
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    _, log = svc.jobs.show(out.job.id)
    assert any("thaw verified" in line for line in log), log[-15:]
    with svc.backups.uow() as uow:
        steps = [s.step for s in uow.jobs.steps(out.job.id)]
    assert steps.index("freezing") < steps.index("pausing") < steps.index("point-taken")


@pytest.mark.parametrize("dom", ["no-agent"], indirect=True)
def test_no_agent_saved_state_and_running_after(svc: Services, dom: Any) -> None:
    _out, point = _ok(svc, N["no-agent"])
    assert point.method.value == "saved-state" and point.consistency.value == "crash-consistent"
    assert "no guest agent channel" in (point.method_reason or "")
    assert point.paused_ms > 0 and point.frozen_ms == 0
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize("dom", ["no-agent"], indirect=True)
def test_freeze_required_when_pause_not_allowed_leaves_nothing(svc: Services, dom: Any) -> None:
    """The hypervisor port's ``allow_pause=False`` (cluster-managed VMs): a failed freeze fails
    with FREEZE_REQUIRED — no job, no checkpoint, the VM never paused."""
    before = {c.getName() for c in dom.listAllCheckpoints()}
    backup = PullBackup(
        URI,
        dom.UUIDString(),
        [DiskSpec("vda", "", "qcow2")],
        checkpoint="vmvault-freeze-required-test",
        incremental_from=None,
        work_dir=svc.settings.work_dir,
        quiesce="freeze",
        allow_pause=False,
        in_window=lambda: pytest.fail("no window may be entered"),
    )
    with pytest.raises(FreezeRequired) as err, backup:
        pass
    assert err.value.code == "FREEZE_REQUIRED" and "no guest agent channel" in err.value.text
    assert not backup.point_in_time.paused
    assert_vm_clean(svc.settings.work_dir, N["no-agent"], before)


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_freeze_required_after_a_timed_out_freeze_leaves_the_guest_thawed(
    svc: Services, dom: Any
) -> None:
    """A freeze that was sent and timed out (a sleeping hook), pause not allowed: the late
    freeze is thawed and verified, then FREEZE_REQUIRED — no job, no checkpoint, never paused."""
    before = {c.getName() for c in dom.listAllCheckpoints()}
    set_test_hook(dom, f"sleep {FREEZE_TIMEOUT + 3}")
    try:
        backup = PullBackup(
            URI,
            dom.UUIDString(),
            [DiskSpec("vda", "", "qcow2")],
            checkpoint="vmvault-freeze-required-test",
            incremental_from=None,
            work_dir=svc.settings.work_dir,
            quiesce="freeze",
            freeze_timeout=FREEZE_TIMEOUT,
            allow_pause=False,
            in_window=lambda: pytest.fail("no window may be entered"),
        )
        with pytest.raises(FreezeRequired), backup:
            pass
    finally:
        set_test_hook(dom, None)
    pit = backup.point_in_time
    assert pit.freeze_error_code == "AGENT_FREEZE_TIMEOUT" and not pit.paused
    assert pit.thaw_verified is True and not pit.held
    _running_and_thawed(dom)
    assert_vm_clean(svc.settings.work_dir, N["standard"], before)


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_require_application_consistent_without_hooks_fails(
    svc: Services, dom: Any, home: Path, cli: CliRunner
) -> None:
    set_test_hook(dom, None)
    uuid = dom.UUIDString()
    points = [p.id for p in svc.point_listing.list_points(None, N["standard"])]
    r = cli(
        "backup", N["standard"], "--require", "application-consistent", "--json", env=_env(home)
    )
    assert r.code == 1, r.stdout + r.stderr
    job = r.json()[0]
    assert job["error_code"] == "CONSISTENCY_NOT_MET", job
    assert "file-system-consistent" in job["message"] and job["remedy"], job
    assert [p.id for p in svc.point_listing.list_points(None, N["standard"])] == points  # no point
    kept = {p.checkpoint for p in svc.point_listing.list_points(None, N["standard"])} - {None}
    assert_vm_clean(svc.settings.work_dir, N["standard"], kept, exact=False)
    assert dom.UUIDString() == uuid
    # a level it can give passes
    _, point = _backup(svc, N["standard"], require="file-system-consistent")
    assert point is not None and point.consistency.value == "file-system-consistent"
    bad = cli("backup", N["standard"], "--require", "crash", env=_env(home))
    assert bad.code == 2 and "INVALID_INPUT" in bad.stderr + bad.stdout


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_a_paused_vm_stays_paused(svc: Services, dom: Any) -> None:
    dom.suspend()
    try:
        _, point = _ok(svc, N["standard"])
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        assert point.method.value == "saved-state" and point.paused_ms == 0
        assert "VM is paused" in (point.method_reason or ""), point.method_reason
    finally:
        dom.resume()


def _restored(cli: CliRunner, home: Path, vm: str, point: RecoveryPoint, target: Path) -> Path:
    r = cli(
        "restore", vm, "--point", point.id, "--disks-only", "--dir", str(target),
        "--format", "raw", "--json", env=_env(home),
    )  # fmt: skip
    assert r.code == 0, r.stdout + r.stderr
    return next(Path(f) for f in r.json()["files"] if "vda" in Path(f).name)


def _no_recovery_needed(img: Path) -> None:
    head = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True).stdout
    features = next(line for line in head.splitlines() if line.startswith("Filesystem features"))
    assert "needs_recovery" not in features, features
    fsck_clean(img)


@pytest.mark.parametrize("dom", ["writer"], indirect=True)
def test_under_writer_load_frozen_points_need_no_journal_recovery(
    svc: Services, dom: Any, tmp_path: Path, cli: CliRunner, home: Path
) -> None:
    set_test_hook(dom, "ok")
    try:
        _, app = _ok(svc, N["writer"])
    finally:
        set_test_hook(dom, None)
    _, fs = _ok(svc, N["writer"])
    assert app.consistency.value == "application-consistent"
    assert fs.consistency.value == "file-system-consistent"
    for point in (app, fs):
        img = _restored(cli, home, N["writer"], point, tmp_path / point.id)
        _no_recovery_needed(img)
        check = check_writer_records(image_file(img, RECORDS_PATH.removeprefix("/data")))
        assert check.ok and check.records > 0, check.problem


HOLD_IN_WINDOW = """
import sys, time
from vmvault.bootstrap import bootstrap
services = bootstrap()
def hold(job):
    print("holding", job.id, flush=True)
    time.sleep(600)
services.backups.window_observers.append(hold)
services.backups.backup(None, [sys.argv[1]])
"""


@pytest.mark.parametrize("dom", ["standard"], indirect=True)
def test_kill_inside_the_saved_state_pause_is_resumed_at_next_start(
    svc: Services, dom: Any, home: Path
) -> None:
    """The freeze times out, the VM is paused for the saved-state point, and the process is
    SIGKILLed inside that pause: the journal's ``pausing`` step makes start-up recovery
    resume the VM."""
    set_test_hook(dom, f"sleep {FREEZE_TIMEOUT + 4}")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_WINDOW, N["standard"]],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until the pause window is entered
        assert line.startswith("holding"), line
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recovered = svc.recovery.recover()
    assert len(recovered) == 1
    _, log = svc.jobs.show(recovered[0].job.id)
    assert any("resumed" in line for line in log), log[-12:]
    _running_and_thawed(dom)
    set_test_hook(dom, None)  # only now: the guest was paused
    kept = {p.checkpoint for p in svc.point_listing.list_points(None, N["standard"])} - {None}
    assert_vm_clean(svc.settings.work_dir, N["standard"], kept, exact=False)


@pytest.mark.parametrize("dom", ["no-agent"], indirect=True)
def test_a_shut_off_vm_stays_off(svc: Services, dom: Any) -> None:
    dom.destroy()
    try:
        _, point = _ok(svc, N["no-agent"])
        assert point.method.value == "offline"
        assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    finally:
        dom.create()  # the session lab's guest: running again for the modules after this one
