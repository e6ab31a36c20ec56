"""Start-up recovery over a real SQLite catalog, with fake hypervisor drivers: which jobs it
closes, what it asks the drivers to clean, what it writes in the job log, and the restore
clean-up from the job's journal (staged files, an interrupted ``--replace`` switch) on real
files.  Recovery after a kill at each step of a real restore job: test_restore_service.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.recovery_point import CheckpointRecord, UnfinishedBackup
from vmvault.domain.restore import LiveDomain
from vmvault.domain.vm import PowerState, VmItem
from vmvault.hypervisor.files import LocalHostFiles
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.backups import BackupService
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobRunner
from vmvault.services.recovery import RecoveryService
from vmvault.services.restore import RestoreService
from vmvault.services.vaults import VaultService

UUID = "11111111-2222-3333-4444-555555555555"
URI = "qemu:///system"
DEAD, ALIVE, SELF = 4000001, 4000002, 4000003  # SELF: the recovering process


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeBackupDriver:
    """Only what clean-up uses: the stale job, the checkpoints."""

    checkpoint_names: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    left: list[UnfinishedBackup | None] = field(default_factory=list)

    def cleanup_stale(
        self, uri: str, vm_uuid: str, left: UnfinishedBackup | None = None
    ) -> list[str]:
        self.calls.append(f"cleanup_stale {vm_uuid}")
        self.left.append(left)
        return [f"aborted the stale backup job of {vm_uuid}"]

    def checkpoints(self, uri: str, vm_uuid: str) -> list[str]:
        return list(self.checkpoint_names)

    def delete_checkpoint(self, uri: str, vm_uuid: str, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.checkpoint_names.remove(name)


@dataclass
class FakeRestoreDriver:
    defined: dict[str, str] = field(default_factory=dict)  # uuid -> xml
    started: list[str] = field(default_factory=list)

    def domain(self, uri: str, uuid: str) -> LiveDomain | None:
        xml = self.defined.get(uuid)
        return None if xml is None else LiveDomain(uuid, "vm", PowerState.SHUT_OFF, xml)

    def define(self, uri: str, xml: str) -> str:
        self.defined[UUID] = xml
        return UUID

    def start(self, uri: str, uuid: str) -> None:
        self.started.append(uuid)


@dataclass
class World:
    uow: Any
    recovery: RecoveryService
    backup_driver: FakeBackupDriver
    restore_driver: FakeRestoreDriver
    alive: set[int]

    def job(
        self,
        job_type: JobType,
        pid: int,
        lines: list[str],
        key: str | None = UUID,
        steps: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    ) -> Job:
        runner = JobRunner(self.uow, now, pid, lambda p: p in self.alive)
        job = runner.start(job_type, "main", key, "h/vm")
        with self.uow() as uow:
            for line in lines:
                uow.jobs.append_log(job.id, line, now())
            for step, data in steps:
                uow.jobs.record_step(job.id, step, data, now())
            uow.commit()
        return job

    def record(self, job: Job, *steps: tuple[str, dict[str, Any]]) -> None:
        with self.uow() as uow:
            for step, data in steps:
                uow.jobs.record_step(job.id, step, data, now())
            uow.commit()

    def show(self, job_id: int) -> tuple[Job, list[str]]:
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            return job, [line.split(" ", 2)[2] for line in uow.jobs.log(job_id)]


@pytest.fixture()
def world(tmp_path: Path, catalog_url: str) -> Iterator[World]:
    engine = open_catalog(catalog_url)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    t = now()
    with uow() as u:
        u.hosts.add(URI, "local", "h", t)
        u.vms.save(VmItem(UUID, "vm", URI, "h", "h", PowerState.RUNNING, [], [], True, "f", t, t))
        u.commit()
    alive = {ALIVE, SELF}
    runner = JobRunner(uow, now, SELF, lambda p: p in alive)
    vaults = VaultService(uow, None, now, tmp_path, None)  # type: ignore[arg-type]
    bdriver, rdriver = FakeBackupDriver(), FakeRestoreDriver()
    backups = BackupService(ServiceContext(uow, runner, vaults, now), None, bdriver)  # type: ignore[arg-type]
    restores = RestoreService(
        ServiceContext(uow, runner, vaults, now),
        rdriver,  # type: ignore[arg-type]
        hypervisor=None,  # type: ignore[arg-type]  # no --replace here
        files=LocalHostFiles(),
    )
    recovery = RecoveryService(ServiceContext(uow, runner, vaults, now), backups, restores)
    yield World(uow, recovery, bdriver, rdriver, alive)
    engine.dispose()


def test_a_dead_backup_is_cleaned_up_and_failed(world: World) -> None:
    point = "20261122T031500Z-abcdef"
    world.backup_driver.checkpoint_names = ["foreign", "vmvault-old", f"vmvault-{point}"]
    with world.uow() as uow:  # vmvault-old belongs to a recovery point: kept
        uow.checkpoints.add(CheckpointRecord("vmvault-old", UUID, "p0", now(), "<x/>"))
        uow.commit()
    planned = {"point": point, "checkpoint": f"vmvault-{point}", "quiesce": "freeze"}
    job = world.job(
        JobType.BACKUP,
        DEAD,
        ["phase: reading"],
        steps=[("planned", planned), ("freezing", {}), ("point-taken", {"released": True})],
    )

    recovered = world.recovery.recover()

    assert [(r.job.id, r.job.state) for r in recovered] == [(job.id, JobState.FAILED)]
    assert f"aborted the stale backup job of {UUID}" in recovered[0].actions
    assert world.backup_driver.calls == [f"cleanup_stale {UUID}", f"delete vmvault-{point}"]
    assert world.backup_driver.checkpoint_names == ["foreign", "vmvault-old"]
    (left,) = world.backup_driver.left  # what the journal says, handed to the adapter
    assert left is not None and left.point == point and left.checkpoint == f"vmvault-{point}"
    assert left.window_entered and left.released and not left.may_hold_guest
    closed, log = world.show(job.id)
    assert closed.error_code == "JOB_INTERRUPTED" and str(DEAD) in (closed.message or "")
    assert f"recovery: deleted checkpoint vmvault-{point}: no recovery point uses it" in log
    assert any(line.startswith("recovery: vault main not opened") for line in log)
    assert log[-1].startswith("failed: the process running this job")
    assert world.recovery.recover() == []  # idempotent
    with world.uow() as uow:  # the VM's key is free again
        assert uow.jobs.holder(f"vm:{UUID}") is None


def test_jobs_of_live_processes_and_queued_jobs_are_left_alone(world: World) -> None:
    job = world.job(JobType.BACKUP, ALIVE, [])
    with world.uow() as uow:
        queued = uow.jobs.create(
            JobType.VERIFY, "main", None, None, JobState.QUEUED, now(), None, None
        )
        uow.commit()
    assert world.recovery.recover() == []
    assert world.show(job.id)[0].state is JobState.IN_PROGRESS
    assert world.show(queued.id)[0].state is JobState.QUEUED
    assert world.backup_driver.calls == []


def test_a_job_with_our_own_pid_is_a_previous_process_s(world: World) -> None:
    """Containers reuse pids: a job recorded with the recovering server's pid cannot be its
    own (recovery runs before it starts any job)."""
    job = world.job(JobType.GC, SELF, [], key=None)
    [recovered] = world.recovery.recover()
    assert recovered.job.id == job.id and recovered.job.error_code == "JOB_INTERRUPTED"


def test_other_job_types_are_just_closed(world: World) -> None:
    job = world.job(JobType.GC, DEAD, [], key=None)
    [recovered] = world.recovery.recover()
    assert recovered.actions == [] and recovered.job.state is JobState.FAILED
    assert world.show(job.id)[1][-2] == "recovery: nothing to clean up"


def test_a_failing_clean_up_still_closes_the_job(world: World) -> None:
    def broken(uri: str, vm_uuid: str, left: UnfinishedBackup | None = None) -> list[str]:
        raise OSError("libvirtd is gone")

    world.backup_driver.cleanup_stale = broken  # type: ignore[method-assign]
    job = world.job(JobType.BACKUP, DEAD, [])
    [recovered] = world.recovery.recover()
    assert recovered.job.state is JobState.FAILED
    assert any("clean-up stopped: OSError: libvirtd is gone" in a for a in recovered.actions)
    assert world.show(job.id)[0].error_code == "JOB_INTERRUPTED"


def staged(*pairs: tuple[str, Path]) -> tuple[str, dict[str, Any]]:
    """The ``writing`` step of a restore staging ``(target, staging path)`` pairs."""
    disks = [
        {"target": t, "path": str(p), "final": str(p.with_name(p.name[1:].split(".vmvault")[0]))}
        for t, p in pairs
    ]
    return ("writing", {"disks": disks, "disks_only": False})


def test_a_dead_restore_leaves_no_staged_files(world: World, tmp_path: Path) -> None:
    d = tmp_path / "images"
    d.mkdir()
    staging = d / ".vm-vda.qcow2.vmvault-staging"
    partial = d / f"..vm-vdb.qcow2.vmvault-staging.tmp.{DEAD}.0a1b2c3d"
    other = d / f"..vm-vdb.qcow2.vmvault-staging.tmp.{ALIVE}.0a1b2c3d"  # not that job's
    for f in (staging, partial, other):
        f.write_bytes(b"x")
    job = world.job(JobType.RESTORE, DEAD, [])
    world.record(
        job,
        staged(("vda", staging), ("vdb", d / ".vm-vdb.qcow2.vmvault-staging")),
        ("staging", {"target": "vda", "dirs": []}),
        ("staged", {"target": "vda", "path": str(staging), "bytes": 1}),
        ("staging", {"target": "vdb", "dirs": []}),
    )
    [recovered] = world.recovery.recover()
    assert sorted(p.name for p in d.iterdir()) == [other.name]
    assert f"removed the staged image {staging}" in recovered.actions
    assert f"removed the partial file {partial}" in recovered.actions
    assert world.show(job.id)[0].state is JobState.FAILED


def test_a_dead_disks_only_restore_leaves_no_half_set_of_disks(
    world: World, tmp_path: Path
) -> None:
    done, partial = tmp_path / "vm-vdc.raw", tmp_path / f".vm-vdd.raw.tmp.{DEAD}.0a1b2c3d"
    for f in (done, partial):
        f.write_bytes(b"x")
    job = world.job(JobType.RESTORE, DEAD, [])
    disks = [{"target": t, "path": str(p), "final": str(p)} for t, p in
             (("vdc", done), ("vdd", tmp_path / "vm-vdd.raw"))]  # fmt: skip
    world.record(
        job,
        ("writing", {"disks": disks, "disks_only": True}),
        ("written", {"target": "vdc", "path": str(done)}),
    )
    [recovered] = world.recovery.recover()
    assert list(tmp_path.glob("vm-*")) == [] and not partial.exists()
    assert f"removed {done}: the disks-only restore did not finish" in recovered.actions


def switching(job: Job, tmp_path: Path, xml: str) -> tuple[str, dict[str, Any]]:
    final = tmp_path / "vm-vda.qcow2"
    move = {
        "target": "vda",
        "final": str(final),
        "staging": str(tmp_path / ".vm-vda.qcow2.vmvault-staging"),
        "aside": str(tmp_path / f"vm-vda.qcow2.pre-restore-{job.id}"),
    }
    data = {"vm": "vm", "uuid": UUID, "uri": URI, "was": "running", "previous_xml": xml}
    return ("switching", {**data, "moves": [move]})


def test_a_replace_that_died_in_its_switch_is_rolled_back(world: World, tmp_path: Path) -> None:
    final = tmp_path / "vm-vda.qcow2"
    staging = tmp_path / ".vm-vda.qcow2.vmvault-staging"
    job = world.job(JobType.RESTORE, DEAD, [])
    moved_aside = tmp_path / f"vm-vda.qcow2.pre-restore-{job.id}"
    moved_aside.write_bytes(b"the VM's own disk")
    final.write_bytes(b"the restored disk")  # renamed into place; then the process died
    xml = "<domain><name>vm</name>\n  <uuid>u</uuid>\n</domain>"
    world.record(
        job,
        staged(("vda", staging)),
        switching(job, tmp_path, xml),
        ("shut-off", {"how": "shutdown through the guest agent"}),
        ("undefined", {}),
    )

    [recovered] = world.recovery.recover()

    assert final.read_bytes() == b"the VM's own disk" and not moved_aside.exists()
    assert world.restore_driver.defined == {UUID: xml}
    assert world.restore_driver.started == [UUID]
    assert recovered.actions[-1] == "started vm again (it was running)"


def test_a_replace_that_finished_its_switch_keeps_the_previous_image(
    world: World, tmp_path: Path
) -> None:
    staging = tmp_path / ".vm-vda.qcow2.vmvault-staging"
    job = world.job(JobType.RESTORE, DEAD, [])
    moved_aside = tmp_path / f"vm-vda.qcow2.pre-restore-{job.id}"
    moved_aside.write_bytes(b"old")
    (tmp_path / "vm-vda.qcow2").write_bytes(b"new")
    world.restore_driver.defined[UUID] = "<domain/>"  # the point's XML is defined
    world.record(
        job,
        staged(("vda", staging)),
        switching(job, tmp_path, "<domain/>"),
        ("shut-off", {"how": "ACPI shutdown"}),
        ("undefined", {}),
        ("switched", {}),
    )
    [recovered] = world.recovery.recover()
    assert moved_aside.exists() and world.restore_driver.started == []
    assert any(a.startswith(f"previous image {moved_aside} kept") for a in recovered.actions)
