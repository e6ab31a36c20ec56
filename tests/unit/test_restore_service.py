"""The restore service with the in-memory host (``MemoryRestoreDriver``, ``MemoryFiles``), the
real SQLite catalog and a real local vault holding a real point: restore as a new VM, the
``--replace`` switch and its rollback, cancel, the restore test, and start-up recovery after
the process is killed at each step of its journal."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vmvault.dataplane import DiskEntry, FileSource, Manifest, backup_disk, keys
from vmvault.domain.errors import RestoreDefineFailed, RestoreShutdownFailed, VmvaultError
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.recovery_point import (
    CheckpointRecord,
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
)
from vmvault.domain.restore import RestoreMode
from vmvault.domain.vm import PowerState, VmItem
from vmvault.hypervisor.memory.files import MemoryFiles
from vmvault.hypervisor.memory.restore import MemoryRestoreDriver
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobContext, JobQueries, JobRunner
from vmvault.services.recovery import RecoveryService
from vmvault.services.restore import RestoreService
from vmvault.services.vaults import VaultService

UUID = "11111111-2222-3333-4444-555555555555"
URI = "qemu:///system"
CS = 64 << 10
POINT = "20261122T100000Z-abcdef"
DEAD, SELF = 4000001, 4000003  # the restoring process (killed), the recovering one
VM_DIR = Path("/vms/web")
NEW_DIR = Path("/srv/restores")
IMAGES = Path("/var/lib/libvirt/images")
XML = f"""<domain type='kvm'>
  <name>web</name>
  <uuid>{UUID}</uuid>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{VM_DIR}/web-vda.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{VM_DIR}/web-vdb.raw'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='lan'/>
      <model type='virtio'/></interface>
    <serial type='pty'><log file='{VM_DIR}/console.log'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""
FSINFO = [{"mountpoint": "/data", "type": "ext4", "name": "vda", "devices": ["/dev/vda"]}]


def now() -> datetime:
    return datetime.now(UTC)


class Killed(BaseException):
    """The restoring process dies here: nothing after it runs, no handler undoes anything."""


@dataclass
class World:
    uow: Any
    files: MemoryFiles
    driver: MemoryRestoreDriver
    svc: RestoreService
    recovery: RecoveryService
    jobs: JobQueries
    disks: dict[str, bytes]  # the point's disk contents
    alive: set[int]
    kill_at: str | None = None  # a journal step, or "op:NAME:N" (before the Nth call)
    dead: bool = False
    ops: dict[str, int] = field(default_factory=dict)

    def restore(self, mode: RestoreMode, **kw: Any) -> Any:
        return self.svc.restore("web", POINT, mode, **kw)

    def show(self, job_id: int) -> tuple[Job, list[str]]:
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            return job, [line.split(" ", 2)[2] for line in uow.jobs.log(job_id)]

    def last_job(self) -> Job:
        [job] = self.jobs.list_jobs(JobType.RESTORE)
        return job

    def die(self, what: str) -> None:
        self.dead = True
        raise Killed(what)

    def fault(self, op: str, _args: object) -> None:
        if self.dead:
            raise Killed(op)
        self.ops[op] = self.ops.get(op, 0) + 1
        if self.kill_at == f"op:{op}:{self.ops[op]}":
            self.die(op)

    def files_now(self) -> dict[Path, bytes]:
        return {p: self.files.read(p) for p in self.files.files}


def write_point(svc: VaultService, tmp_path: Path) -> dict[str, bytes]:
    """A real point of VM web in vault main: vda (qcow2, 5 chunks, one zero) and vdb (raw)."""
    rnd = random.Random(7)
    disks = {
        "vda": rnd.randbytes(2 * CS) + bytes(CS) + rnd.randbytes(CS) + b"tail" * 100,
        "vdb": rnd.randbytes(3 * CS),
    }
    store = svc.open_store(svc.resolve("main"))
    entries = []
    with store.writer(POINT):
        for target, data in disks.items():
            image = tmp_path / f"{target}.img"
            image.write_bytes(data)
            with FileSource(image) as src:
                r = backup_disk(store, src)
            digest = store.write_index(POINT, target, r.index)
            entries.append(
                DiskEntry(target, len(data), f"{target}.fidx", digest, r.bytes_read, r.bytes_new)
            )
        store.write_manifest(
            Manifest(
                point_id=POINT,
                vm_uuid=UUID,
                vm_name="web",
                created_at="2026-11-22T10:00:00+00:00",
                domain_xml=XML,
                method="guest-quiesce",
                consistency="file-system-consistent",
                disks=entries,
                extra={"fsinfo": FSINFO},
            )
        )
    return disks


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A catalog (VM web, its point, a checkpoint record) and the vault holding the point,
    made once: each test gets a copy of the catalog; the vault is only read."""
    tmp = tmp_path_factory.mktemp("restore-template")
    old, keys.SCRYPT_N = keys.SCRYPT_N, 2**12
    engine = open_catalog(f"sqlite:///{tmp / 'catalog.db'}")
    try:
        vaults = VaultService(lambda: SqlUnitOfWork(engine), None, now, tmp, None)  # type: ignore[arg-type]
        vaults.create("main", "local", str(tmp / "vault"), chunk_size=CS)
        disks = write_point(vaults, tmp)
        t = now()
        with SqlUnitOfWork(engine) as u:
            vm = VmItem(UUID, "web", URI, "h", "h", PowerState.RUNNING, [], [], True, "f", t, t)
            u.vms.save(vm)
            sizes = {"vda": ("qcow2", len(disks["vda"])), "vdb": ("raw", len(disks["vdb"]))}
            pdisks = [PointDisk(target, size, fmt) for target, (fmt, size) in sizes.items()]
            u.points.add(
                RecoveryPoint(
                    POINT,
                    "main",
                    UUID,
                    "web",
                    t,
                    Consistency.FILE_SYSTEM,
                    Method.GUEST_QUIESCE,
                    10,
                    "vmvault-1",
                    pdisks,
                )
            )
            u.checkpoints.add(CheckpointRecord("vmvault-1", UUID, POINT, t, "<x/>"))
            u.commit()
    finally:
        keys.SCRYPT_N = old
        engine.dispose()
    return tmp / "catalog.db", disks


@pytest.fixture()
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: tuple[Path, dict[str, bytes]]
) -> Iterator[World]:
    catalog, disks = template
    shutil.copyfile(catalog, tmp_path / "catalog.db")
    engine = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    vaults = VaultService(uow, None, now, tmp_path, None)  # type: ignore[arg-type]
    files = MemoryFiles(pid=DEAD)
    files.write(VM_DIR / "web-vda.qcow2", b"the VM's vda now")
    files.write(VM_DIR / "web-vdb.raw", b"the VM's vdb now")
    driver = MemoryRestoreDriver(files)
    driver.networks.add("lan")
    driver.add(XML, PowerState.RUNNING, fsinfo=FSINFO, checkpoints=["vmvault-1"])
    driver.new_fsinfo = FSINFO
    alive = {DEAD, SELF}
    runner = JobRunner(uow, now, DEAD, lambda p: p in alive)
    svc = RestoreService(
        ServiceContext(uow, runner, vaults, now), driver, hypervisor=driver, files=files,
        write_disk=files.write_disk, boot_timeout=1, mount_wait=0,
    )  # fmt: skip
    recovery = RecoveryService(
        ServiceContext(uow, JobRunner(uow, now, SELF, lambda p: p in alive), vaults, now),
        None,  # type: ignore[arg-type]  # no backup job here
        svc,
    )
    w = World(uow, files, driver, svc, recovery, JobQueries(uow, now), disks, alive)
    files.fault = driver.fault = w.fault
    record, phase, log = JobContext.record, JobContext.phase, JobContext.log

    def killing(original: Callable[..., None]) -> Callable[..., None]:
        def wrapper(ctx: JobContext, name: str, /, **data: Any) -> None:
            if w.dead:
                raise Killed(name)
            original(ctx, name, **data)
            if name == w.kill_at:
                w.die(name)

        return wrapper

    def dead_log(ctx: JobContext, line: str) -> None:
        if w.dead:
            raise Killed(line)
        log(ctx, line)

    monkeypatch.setattr(JobContext, "record", killing(record))
    monkeypatch.setattr(JobContext, "phase", killing(phase))
    monkeypatch.setattr(JobContext, "log", dead_log)
    yield w
    engine.dispose()


def original_state(w: World) -> None:
    """The VM as it was before any restore: defined from XML, running, its own images."""
    dom = w.driver.domains[UUID]
    assert dom.xml == XML and dom.power is PowerState.RUNNING
    assert w.files.read(VM_DIR / "web-vda.qcow2") == b"the VM's vda now"
    assert w.files.read(VM_DIR / "web-vdb.raw") == b"the VM's vdb now"
    assert w.files.listing() == {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}


# --- restores that finish ------------------------------------------------------------------------


def test_restore_as_new_vm(world: World) -> None:
    out = world.restore(RestoreMode.AS_NEW, name="web2", directory=str(NEW_DIR))
    assert out.error is None and out.job.state is JobState.COMPLETED, world.show(out.job.id)
    report = out.result
    new = world.driver.domains[report.vm_uuid]
    assert new.name == "web2" and report.vm_uuid != UUID and new.power is PowerState.SHUT_OFF
    vda, vdb = NEW_DIR / "web2-vda.qcow2", NEW_DIR / "web2-vdb.raw"
    assert world.files.read(vda) == world.disks["vda"]
    assert world.files.read(vdb) == world.disks["vdb"]
    assert world.files.links == {IMAGES / vda.name: vda, IMAGES / vdb.name: vdb}
    assert f'<source file="{vda}"' in new.xml and "52:54:00:aa:bb:01" not in new.xml
    assert [d.bytes_written for d in report.disks] == [len(world.disks["vda"]) - CS, 3 * CS]
    assert not [p for p in world.files.listing() if "staging" in p.name or ".tmp." in p.name]
    dom = world.driver.domains[UUID]  # the original is untouched
    assert dom.xml == XML and dom.power is PowerState.RUNNING
    steps = [s.step for s in world.svc.uow().__enter__().jobs.steps(out.job.id)]
    assert steps == [
        "reading", "writing", "staging", "staged", "staging", "staged", "defining", "defined",
    ]  # fmt: skip


def test_as_new_with_start_and_a_missing_network_warns(world: World) -> None:
    world.driver.networks.clear()
    out = world.restore(RestoreMode.AS_NEW, name="web2", start=True)
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    assert any("network 'lan' does not exist" in w for w in out.job.warnings)
    new = world.driver.domains[out.result.vm_uuid]
    assert new.power is PowerState.RUNNING and out.result.boot_seconds is not None
    assert 'type="ethernet"' in new.xml or "type='ethernet'" in new.xml
    assert world.files.read(IMAGES / "web2-vda.qcow2") == world.disks["vda"]  # default dir
    assert world.files.links == {}


def test_replace_switches_the_vm_to_the_point(world: World) -> None:
    out = world.restore(RestoreMode.REPLACE)
    assert out.error is None, world.show(out.job.id)
    dom = world.driver.domains[UUID]
    assert dom.name == "web" and dom.power is PowerState.SHUT_OFF  # no --start: stays off
    assert world.files.read(VM_DIR / "web-vda.qcow2") == world.disks["vda"]
    assert world.files.read(VM_DIR / "web-vdb.raw") == world.disks["vdb"]
    assert world.files.listing() == {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}
    assert world.driver.calls[-3:] == ["shutdown", "undefine", "define"]
    with world.uow() as uow:  # the chain is reset: the next backup reads in full
        assert uow.checkpoints.for_vm(UUID) == []
    _, log = world.show(out.job.id)
    assert "web was running; it stays shut off (--start starts it)" in log


def test_replace_keep_previous_and_start(world: World) -> None:
    out = world.restore(RestoreMode.REPLACE, keep_previous=True, start=True)
    assert out.error is None, world.show(out.job.id)
    tag = out.job.id
    assert out.result.previous == [
        VM_DIR / f"web-vda.qcow2.pre-restore-{tag}",
        VM_DIR / f"web-vdb.raw.pre-restore-{tag}",
    ]
    assert world.files.read(out.result.previous[0]) == b"the VM's vda now"
    assert world.driver.domains[UUID].power is PowerState.RUNNING and out.result.started
    assert out.result.downtime_seconds is not None


def test_replace_rolls_back_when_define_fails(world: World) -> None:
    world.driver.fail["define"] = [RestoreDefineFailed("injected by the test", vm="web")]
    out = world.restore(RestoreMode.REPLACE)
    assert out.job.state is JobState.FAILED and out.job.error_code == "RESTORE_DEFINE_FAILED"
    original_state(world)
    _, log = world.show(out.job.id)
    assert "web is back as it was (running)" in log
    assert world.driver.calls[-5:] == ["shutdown", "undefine", "define", "define", "start"]


def test_a_shutdown_that_fails_leaves_the_vm_as_it_was(world: World) -> None:
    world.driver.fail["shutdown"] = [RestoreShutdownFailed("destroy refused", vm="web")]
    out = world.restore(RestoreMode.REPLACE)
    assert out.job.error_code == "RESTORE_SHUTDOWN_FAILED"
    original_state(world)
    assert "undefine" not in world.driver.calls


def test_a_silent_agent_after_start_is_a_warning(world: World) -> None:
    world.driver.new_agent = False  # the agent of the domain defined by the restore is silent
    out = world.restore(RestoreMode.REPLACE, start=True)
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    assert any("guest agent did not answer" in w for w in out.job.warnings)
    assert out.result is not None and out.result.started and out.result.boot_seconds is None


def test_cancel_before_switching_leaves_the_vm_untouched(world: World) -> None:
    def cancel_at(job: Job, phase: str) -> None:
        if phase == "switching":
            world.jobs.cancel(job.id)

    world.svc.runner.phase_observers.append(cancel_at)
    out = world.restore(RestoreMode.REPLACE)
    assert out.job.state is JobState.CANCELLED
    original_state(world)
    assert "shutdown" not in world.driver.calls
    assert not world.files.exists(VM_DIR / ".web-vda.qcow2.vmvault-staging")


def test_a_corrupt_image_is_refused_before_the_vm_is_touched(world: World) -> None:
    world.files.free = 1 << 40
    original_size = world.driver.image_size

    def wrong_size(path: Path, fmt: str, target: str) -> int:
        return original_size(path, fmt, target) + (512 if target == "vdb" else 0)

    world.driver.image_size = wrong_size  # type: ignore[method-assign]
    out = world.restore(RestoreMode.REPLACE)
    assert out.job.error_code == "RESTORE_VERIFY_FAILED"
    original_state(world)


def test_a_restore_test_that_passes_records_it_and_removes_its_vm(world: World) -> None:
    out = world.svc.restore_test("web", POINT, directory=str(NEW_DIR))
    assert out.error is None, world.show(out.job.id)
    result = world.svc.last_test(POINT)
    assert result is not None and result.ok and result.mounted == ["/data"]
    assert set(world.driver.domains) == {UUID}
    assert world.files.listing() == {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}
    assert out.result is not None and all(n.link_down for n in out.result.nics)  # isolated


def test_a_restore_test_that_fails_its_check_removes_its_vm(world: World) -> None:
    world.driver.new_fsinfo = []  # /data does not mount
    world.driver.console = "mount: mounting /dev/vda on /data failed"
    out = world.svc.restore_test("web", POINT)
    assert out.job.error_code == "RESTORE_TEST_FAILED"
    result = world.svc.last_test(POINT)
    assert result is not None and not result.ok and result.missing == ["/data"]
    assert set(world.driver.domains) == {UUID}  # the test VM is gone
    assert world.files.listing() == {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}
    _, log = world.show(out.job.id)
    assert any("mounting /dev/vda on /data failed" in line for line in log)


# --- killed at each step, then start-up recovery ----------------------------------------------------

REPLACE_KILLS = [
    "reading", "writing", "staging", "op:write_chunk:3", "staged", "switching", "op:shutdown:1",
    "shut-off", "op:undefine:1", "undefined", "op:rename:2", "op:rename:3", "switched",
    "op:define:1", "defined",
]  # fmt: skip


def killed(world: World, kill_at: str, mode: RestoreMode, **kw: Any) -> list[str]:
    """Run the restore, killed at ``kill_at``; then recovery, as a new process would."""
    world.kill_at = kill_at
    with pytest.raises(Killed):
        world.restore(mode, **kw)
    assert world.dead, f"{kill_at} was never reached"
    job = world.last_job()
    assert job.state is JobState.IN_PROGRESS
    world.dead, world.kill_at = False, None
    world.alive.discard(DEAD)
    [recovered] = world.recovery.recover()
    assert recovered.job.state is JobState.FAILED
    assert recovered.job.error_code == "JOB_INTERRUPTED"
    assert world.recovery.recover() == []
    return recovered.actions


@pytest.mark.parametrize("kill_at", REPLACE_KILLS)
def test_a_replace_killed_at_each_step_is_recovered(world: World, kill_at: str) -> None:
    actions = killed(world, kill_at, RestoreMode.REPLACE)
    if kill_at != "defined":  # the switch did not finish: rolled back
        original_state(world)
        return
    # the point's definition was defined: the switch finished; the previous images are kept
    dom = world.driver.domains[UUID]
    assert dom.xml != XML and dom.power is PowerState.SHUT_OFF
    assert world.files.read(VM_DIR / "web-vda.qcow2") == world.disks["vda"]
    job = world.last_job().id
    kept = [VM_DIR / f"web-vda.qcow2.pre-restore-{job}", VM_DIR / f"web-vdb.raw.pre-restore-{job}"]
    assert world.files.read(kept[0]) == b"the VM's vda now"
    assert all(any(str(k) in a and "kept" in a for a in actions) for k in kept), actions
    with world.uow() as uow:
        assert uow.checkpoints.for_vm(UUID) == []


NEW_KILLS = [
    "reading", "writing", "staging", "op:write_chunk:2", "staged", "defining", "op:rename:3",
    "op:symlink:2", "op:define:1", "defined",
]  # fmt: skip


@pytest.mark.parametrize("kill_at", NEW_KILLS)
def test_an_as_new_restore_killed_at_each_step_is_recovered(world: World, kill_at: str) -> None:
    killed(world, kill_at, RestoreMode.AS_NEW, name="web2", directory=str(NEW_DIR))
    dom = world.driver.domains[UUID]
    assert dom.xml == XML and dom.power is PowerState.RUNNING
    own = {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}
    if kill_at != "defined":  # nothing of web2 is left, not even its directory
        assert set(world.driver.domains) == {UUID}
        assert world.files.listing() == own
        assert not world.files.exists(NEW_DIR) and not world.files.exists(NEW_DIR.parent)
        return
    assert [d.power for d in world.driver.domains.values() if d.name == "web2"] == [
        PowerState.SHUT_OFF
    ]  # kept, not started
    assert world.files.read(NEW_DIR / "web2-vda.qcow2") == world.disks["vda"]
    assert world.files.listing() - own == {
        NEW_DIR / "web2-vda.qcow2", NEW_DIR / "web2-vdb.raw",
        IMAGES / "web2-vda.qcow2", IMAGES / "web2-vdb.raw",
    }  # fmt: skip


@pytest.mark.parametrize(
    "kill_at", ["staged", "defining", "defined", "testing", "op:start:1", "op:remove:1"]
)
def test_a_restore_test_killed_at_each_step_leaves_no_test_vm(world: World, kill_at: str) -> None:
    killed(world, kill_at, RestoreMode.TEST, directory=str(NEW_DIR))
    assert set(world.driver.domains) == {UUID}
    assert world.files.listing() == {VM_DIR / "web-vda.qcow2", VM_DIR / "web-vdb.raw"}
    result = world.svc.last_test(POINT)  # recorded only when the check had run
    assert (result is not None) == (kill_at == "op:remove:1")


def test_replace_checks_ownership_as_discovery_sees_it_now(world: World) -> None:
    """Owned by pacemaker since the catalog last looked (no metadata marker): refused before
    anything changes; a CIB that cannot be read keeps the catalog's view (not owned here)."""
    world.driver.pacemaker[UUID] = "pacemaker resource web (VirtualDomain)"
    with pytest.raises(VmvaultError) as exc:
        world.restore(RestoreMode.REPLACE)
    assert (
        exc.value.code == "CLUSTER_MANAGED_REPLACE" and "pacemaker resource web" in exc.value.text
    )
    assert world.driver.calls == [] and world.driver.domains[UUID].power is PowerState.RUNNING
    world.driver.pacemaker.clear()
    with world.uow() as uow:  # the host's settings list it
        uow.hosts.set_cluster_managed(URI, ["web"])
        uow.commit()
    with pytest.raises(VmvaultError) as exc:
        world.restore(RestoreMode.REPLACE)
    assert exc.value.code == "CLUSTER_MANAGED_REPLACE" and "settings of host" in exc.value.text
    with world.uow() as uow:
        uow.hosts.set_cluster_managed(URI, [])
        uow.commit()
    world.driver.cib_unknown = "pacemaker ownership not known: cibadmin timed out"
    out = world.restore(RestoreMode.REPLACE)
    assert out.error is None, world.show(out.job.id)
