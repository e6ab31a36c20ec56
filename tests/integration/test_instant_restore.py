"""Instant recovery on the real lab (docs/restore.md, "Instant recovery"): the VM runs from the
point's export at once, its disks are copied while it runs and pivoted; a write the guest makes
during the copy is in the final disks after a power cycle; a restore killed mid-migration is
settled by start-up recovery with nothing lost; ``--instant --replace`` brings a VM back
under its own name, uuid and disk paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.conftest import lab_settings
from tests.integration.guests import guest
from tests.integration.test_recovery import _env, _read_line
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.job import Job, JobState
from vmvault.domain.restore import RestoreMode
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

URI = "qemu:///system"
PREFIX = lab_prefix()
VM = f"{PREFIX}-standard-1"
ROOT = Path("/var/lib/vmvault/test-restores") / PREFIX / "instant"
DEFAULT_DIR = Path("/var/lib/libvirt/images")
WRITE = "dd if=/dev/urandom of=/data/{f} bs=1M count=8 2>/dev/null && sync && md5sum /data/{f}"

#: A real instant restore in its own process that stops once its VM runs from the export
#: (step ``started``: before any copy), to be killed there.
HOLD_AT_STARTED = """
import sys, time
from vmvault.bootstrap import bootstrap
from vmvault.domain.restore import RestoreMode
vm, point, name, directory = sys.argv[1:5]
services = bootstrap()
def hold(job, step):
    if step == "started":
        print("holding", job.id, flush=True)
        time.sleep(600)
services.restores.instant_observers.append(hold)
services.restores.restore(vm, point, RestoreMode.AS_NEW, name=name, directory=directory,
                          instant=True)
"""


@pytest.fixture(scope="module")
def home(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instant-home")


@pytest.fixture(scope="module")
def svc(home: Path) -> Iterator[Services]:
    services = bootstrap(lab_settings(home))
    services.vaults.create("main", "local", None)
    services.inventory.discover(None)
    [out] = services.inventory.register(None, [VM])
    assert out.error is None, out.error
    ROOT.mkdir(parents=True, exist_ok=True)
    for p in (ROOT.parent, ROOT):
        p.chmod(0o755)
    yield services


@pytest.fixture(scope="module")
def point(svc: Services) -> str:
    [outcome] = svc.backups.backup(None, [VM])
    assert outcome.error is None and outcome.result is not None, outcome.error
    return str(outcome.result.id)


def _state(name: str) -> int:
    conn = libvirt.open(URI)
    try:
        return int(conn.lookupByName(name).state()[0])
    finally:
        conn.close()


def _remove(svc: Services, name: str, directory: Path) -> None:
    uuid = svc.restores.driver.domain_named(URI, name)
    if uuid is not None:
        svc.restores.driver.remove(URI, uuid)
    for p in directory.glob("*"):
        p.unlink()
    for link in DEFAULT_DIR.glob(f"{name}-*"):
        link.unlink()
    if directory.exists():
        directory.rmdir()


def _check_local(svc: Services, name: str, directory: Path, md5: str, file: str) -> None:
    """The VM's disks (running and defined) are its local images, nothing else is left in
    ``directory``; after a power cycle the guest has ``file`` with ``md5``; both images pass
    ``qemu-img check`` while it is off."""
    driver = svc.restores.driver
    uuid = driver.domain_named(URI, name)
    assert uuid is not None
    finals = {t: directory / f"{name}-{t}.qcow2" for t in ("vda", "vdb")}
    assert svc.restores.instant.sources(URI, uuid) == {t: str(p) for t, p in finals.items()}
    live = driver.domain(URI, uuid)
    assert live is not None and "backingStore type=" not in live.xml and "nbd" not in live.xml
    assert {p.name for p in directory.iterdir()} == {p.name for p in finals.values()} | {
        f"{name}-console.log"
    }
    driver.shutdown(URI, uuid, 60)
    for image in finals.values():
        check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    driver.start(URI, uuid)
    assert driver.wait_for_agent(URI, uuid, 180)
    assert guest(name, f"md5sum /data/{file}", 180).split()[0] == md5


def test_instant_as_new_runs_at_once_and_keeps_writes_made_during_the_copy(
    svc: Services, point: str
) -> None:
    name, directory = f"{PREFIX}-inst-a", ROOT / "a"
    _remove(svc, name, directory)
    written: dict[str, str] = {}

    def during(job: Job, step: str) -> None:
        if step == "copying":  # the copies run: the write goes to the overlay and the copy
            written["md5"] = guest(name, WRITE.format(f="during.bin"), 180).split()[0]

    svc.restores.instant_observers.append(during)
    try:
        outcome = svc.restores.restore(
            VM, point, RestoreMode.AS_NEW, name=name, directory=str(directory), instant=True
        )
    finally:
        svc.restores.instant_observers.remove(during)
    try:
        assert outcome.error is None, outcome.error
        report = outcome.result
        assert report is not None and report.instant and "md5" in written
        assert report.boot_seconds is not None and report.pivot_seconds is not None
        assert report.boot_seconds < report.pivot_seconds
        with svc.restores.uow() as uow:
            steps = [s.step for s in uow.jobs.steps(outcome.job.id)]
        order = ["instant", "exporting", "overlays", "instant-defined", "started", "copying",
                 "synced", "pivoted", "cleaned"]  # fmt: skip
        assert [s for s in steps if s in order] == [*order[:7], "pivoted", "pivoted", "cleaned"]
        assert report.export_job is not None
        export_job, _ = svc.jobs.show(report.export_job)
        assert not export_job.state.active
        assert not (directory / f".{name}.instant.sock").exists()
        _check_local(svc, name, directory, written["md5"], "during.bin")
    finally:
        _remove(svc, name, directory)


def test_instant_killed_mid_migration_is_rebuilt_with_every_write(
    svc: Services, point: str, home: Path
) -> None:
    """SIGKILL once the VM runs from the export, before its copy: the export dies with the
    process, the VM runs (or is paused on an I/O error); start-up recovery rebuilds its local
    disks from the point with the guest's writes and starts it again on them."""
    name, directory = f"{PREFIX}-inst-k", ROOT / "k"
    _remove(svc, name, directory)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AT_STARTED, VM, point, name, str(directory)],
        env=_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            line = _read_line(proc, 300)
            assert line.startswith("holding"), line
            job_id = int(line.split()[1])
            md5 = guest(name, WRITE.format(f="before-kill.bin"), 180).split()[0]
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1)
        assert _state(name) in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED)
        job, _ = svc.jobs.show(job_id)
        assert job.state is JobState.IN_PROGRESS
        recovered = {r.job.id: r for r in svc.recovery.recover()}
        assert job_id in recovered, recovered
        job, log = svc.jobs.show(job_id)
        assert job.state is JobState.FAILED and job.error_code == "JOB_INTERRUPTED"
        assert any("instant restore of" in line and "rebuild" in line for line in log), log
        exports = [r for r in recovered.values() if r.job.type.value == "export"]
        assert len(exports) == 1 and exports[0].job.state is JobState.FAILED
        assert svc.recovery.recover() == []  # settled: nothing left
        assert _state(name) == libvirt.VIR_DOMAIN_RUNNING
        uuid = svc.restores.driver.domain_named(URI, name)
        assert uuid is not None and svc.restores.driver.wait_for_agent(URI, uuid, 180)
        _check_local(svc, name, directory, md5, "before-kill.bin")
    finally:
        _remove(svc, name, directory)


def test_instant_replace_brings_the_point_back_under_the_vm_s_own_identity(
    svc: Services, point: str, home: Path
) -> None:
    """``restore VM --point P --instant --replace`` (the CLI) on a VM of the test's own (a plain
    ``--as-new`` of the lab guest, so the shared guest is never touched): the VM keeps its name,
    uuid and disk paths, runs from the export, then on local images that have the point's data
    (a file changed after the backup has the point's content again); nothing of the restore is
    left (overlays, socket, export job, set-aside images); its next backup reads in full."""
    name, directory = f"{PREFIX}-inst-r", ROOT / "r"
    _remove(svc, name, directory)
    try:
        made = svc.restores.restore(
            VM, point, RestoreMode.AS_NEW, name=name, directory=str(directory), start=True
        )
        assert made.error is None, made.error
        driver = svc.restores.driver
        uuid = driver.domain_named(URI, name)
        assert uuid is not None and driver.wait_for_agent(URI, uuid, 180)
        svc.inventory.discover(None)
        [reg] = svc.inventory.register(None, [name])
        assert reg.error is None, reg.error
        md5 = guest(name, WRITE.format(f="replace.bin"), 180).split()[0]
        [backed] = svc.backups.backup(None, [name])
        assert backed.error is None and backed.result is not None, backed.error
        changed = guest(name, WRITE.format(f="replace.bin"), 180).split()[0]
        assert changed != md5  # the live VM differs from the point
        sources = svc.restores.instant.sources(URI, uuid)
        run = subprocess.run(
            [sys.executable, "-m", "vmvault", "restore", name, "--point", str(backed.result.id),
             "--instant", "--replace", "--json"],
            env=_env(home), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert run.returncode in (0, 3), run.stdout + run.stderr
        doc = json.loads(run.stdout)
        assert (run.returncode == 3) == bool(doc["warnings"]), doc["warnings"]
        result = doc["result"]
        assert result["instant"] and result["mode"] == "replace" and result["previous"] == []
        assert result["vm_name"] == name and result["vm_uuid"] == uuid
        assert any("checkpoint chain is reset" in line for line in doc["log"]), doc["log"]
        assert driver.domain_named(URI, name) == uuid and _state(name) == libvirt.VIR_DOMAIN_RUNNING
        assert svc.restores.instant.sources(URI, uuid) == sources  # its own disk paths
        assert not any(".pre-restore-" in p.name for p in directory.iterdir())
        export_job, _ = svc.jobs.show(result["export_job"])
        assert not export_job.state.active
        assert not (directory / f".{name}.instant.sock").exists()
        _check_local(svc, name, directory, md5, "replace.bin")
        [after] = svc.backups.backup(None, [name])
        assert after.error is None and after.result is not None, after.error
        assert not any(d.incremental for d in after.result.disks), after.result.disks
    finally:
        _remove(svc, name, directory)
