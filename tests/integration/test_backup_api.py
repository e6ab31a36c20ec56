"""The hypervisor side of backups against the real lab: libvirt pull-mode backups read through
NbdSource, checkpoints, offline exports with qemu-nbd, clean-up after a dead process.

Guests come from the session fixture ``lab`` (one of each variant, named with
``lab_prefix()``); run with your own prefix, e.g. ``VMVAULT_LAB_PREFIX=hb``.  The live disks
change all the time, so consistency is checked the way a restore would: files written (and
synced) in the guest before the point in time must read back byte-identical from the backup
(``debugfs -R 'cat …'``), and the backed-up file systems must be clean (``e2fsck -fn``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest

from tests.integration.guests import fsck_clean, image_file, sh
from vmvault.domain.errors import (
    AgentCommandFailed,
    BackupJobRunning,
    BackupVmNotRunning,
    Cancelled,
    CheckpointMissing,
    InvalidInput,
    OfflineExportFailed,
)
from vmvault.domain.recovery_point import UnfinishedBackup, is_our_checkpoint
from vmvault.hypervisor.lab.vms import check_writer_records, lab_prefix, wait_for_agent
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup
from vmvault.hypervisor.libvirt.checkpoints import (
    checkpoint_xml,
    delete_checkpoint,
    image_bitmaps,
    list_checkpoints,
    redefine_checkpoint,
    verify_checkpoint,
)
from vmvault.hypervisor.libvirt.domxml import parse_disks
from vmvault.hypervisor.libvirt.stale import cleanup_stale
from vmvault.hypervisor.nbd import NbdSource
from vmvault.hypervisor.offline import OfflineExport

pytestmark = pytest.mark.lab

URI = "qemu:///system"
MiB = 1 << 20
CHUNK = 4 * MiB


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(lab: dict[str, dict[str, object]]) -> Iterator[Any]:
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    # not under /tmp/pytest-of-root (0700): QEMU (libvirt-qemu) must reach the socket directory
    path = Path("/var/tmp") / f"vmvault-{lab_prefix()}-backup-api-{os.getpid()}"
    path.mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dom(conn: Any, variant: str) -> Any:
    dom = conn.lookupByName(f"{lab_prefix()}-{variant}-1")
    for c in list_checkpoints(URI, dom.UUIDString()):  # a clean chain for each test
        if is_our_checkpoint(c):
            delete_checkpoint(URI, dom.UUIDString(), c)
    return dom


def _specs(dom: Any) -> list[DiskSpec]:
    """The file-backed qcow2/raw disks of the domain (what vmvault backs up)."""
    return [
        DiskSpec(d.target, d.file or "", d.format or "")
        for d in parse_disks(dom.XMLDesc(0))
        if d.type == "file" and d.device == "disk" and d.file
    ]


def _md5s(text: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in text.splitlines() if line.strip()}


def _dump(src: NbdSource, path: Path, runs: list[tuple[int, int]] | None = None) -> int:
    """Write ``runs`` (default: the data extents) of ``src`` into the raw file ``path`` (made
    sparse, of the disk's size, if new); returns the bytes read."""
    if runs is None:
        runs = [(o, n) for o, n, data in src.extents() if data]
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    total = 0
    with open(path, "r+b" if path.exists() else "w+b") as f:
        f.truncate(src.size)
        for off, length in runs:
            pos, end = off, off + length
            while pos < end:
                n = min(CHUNK, end - pos)
                src.pread_into(mv[:n], pos)
                os.pwrite(f.fileno(), mv[:n], pos)
                pos += n
                total += n
    return total


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _job_type(dom: Any) -> int:
    return int(dom.jobInfo()[0])


def _assert_nothing_left(dom: Any, pb: PullBackup) -> None:
    assert _job_type(dom) == libvirt.VIR_DOMAIN_JOB_NONE
    assert not pb.socket.exists()
    assert list(pb.scratch_dir.iterdir()) == []
    assert {p.name for p in pb.vm_dir.iterdir()} == {"lock", "sock", "scratch"}  # no state file


def _fsfreeze_status(dom: Any) -> str:
    return str(agent.agent_command(dom, "guest-fsfreeze-status"))


def _hook_log(dom: Any) -> bytes:
    try:
        return agent.read_file(dom, "/run/fsfreeze-hook.log")
    except AgentCommandFailed:
        return b""


def _disk_sum(runs: list[tuple[int, int]]) -> int:
    return sum(n for _, n in runs)


# --- tests ---------------------------------------------------------------------------------------


def test_full_then_incremental_read_through_nbd(conn: Any, work_dir: Path, tmp_path: Path) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    assert [(s.target, s.format) for s in specs] == [("vda", "qcow2"), ("vdb", "qcow2")]
    md5 = _md5s(
        sh(
            dom,
            "dd if=/dev/urandom of=/data/known.bin bs=1M count=3 2>/dev/null && "
            "echo hello-vdb > /data2/known.txt && sync && "
            "md5sum /data/known.bin /data2/known.txt",
        )
    )
    with PullBackup(
        URI, uuid, specs, checkpoint="vmvault-hb-full", incremental_from=None, work_dir=work_dir
    ) as pb:
        pit = pb.point_in_time
        assert pit.frozen and pit.fs_frozen == 2 and pit.freeze_error is None
        assert 0 < pit.frozen_ms < 3000
        assert pit.fsinfo is not None
        assert {fs["mountpoint"] for fs in pit.fsinfo} >= {"/data", "/data2"}
        assert pb.modes == {"vda": "full", "vdb": "full"}
        assert pb.socket.is_socket()
        assert _fsfreeze_status(dom) == "thawed"  # thawed right after backupBegin
        for spec in specs:
            src = pb.source(spec.target)
            assert not src.has_dirty_bitmap  # a full export offers no dirty bitmap
            assert _dump(src, tmp_path / f"{spec.target}.raw") > 0
    _assert_nothing_left(dom, pb)
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-full"]
    vda, vdb = tmp_path / "vda.raw", tmp_path / "vdb.raw"
    assert _md5(image_file(vda, "/known.bin")) == md5["/data/known.bin"]
    assert _md5(image_file(vdb, "/known.txt")) == md5["/data2/known.txt"]
    fsck_clean(vda)
    fsck_clean(vdb)

    # incremental: only what the guest wrote since the checkpoint
    md5.update(
        _md5s(
            sh(
                dom,
                "dd if=/dev/urandom of=/data/inc.bin bs=1M count=8 2>/dev/null && sync && "
                "md5sum /data/inc.bin",
            )
        )
    )
    inc = tmp_path / "vda-inc.raw"
    shutil.copyfile(vda, inc)
    with PullBackup(
        URI,
        uuid,
        specs,
        checkpoint="vmvault-hb-inc",
        incremental_from="vmvault-hb-full",
        work_dir=work_dir,
    ) as pb:
        assert pb.modes == {"vda": "incremental", "vdb": "incremental"}
        src = pb.source("vda")
        assert src.has_dirty_bitmap
        dirty = src.dirty_extents()
        dirty_bytes = _disk_sum(dirty)
        print(f"incremental after an 8 MiB write: vda dirty {dirty_bytes:,} B in {len(dirty)} runs")
        assert 8 * MiB <= dirty_bytes <= 11 * MiB, dirty  # data + a little metadata
        _dump(src, inc, dirty)
        vdb_dirty = _disk_sum(pb.source("vdb").dirty_extents())
        assert vdb_dirty <= 2 * MiB  # the freeze/thaw superblock update at most
    _assert_nothing_left(dom, pb)
    assert _md5(image_file(inc, "/inc.bin")) == md5["/data/inc.bin"]
    assert _md5(image_file(inc, "/known.bin")) == md5["/data/known.bin"]
    fsck_clean(inc)
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-full", "vmvault-hb-inc"]


def test_raw_disk_is_exported_full_and_never_checkpointed(
    conn: Any, work_dir: Path, tmp_path: Path
) -> None:
    dom = _dom(conn, "raw-disk")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    assert [(s.target, s.format) for s in specs] == [("vda", "qcow2"), ("vdb", "raw")]
    with PullBackup(
        URI, uuid, specs, checkpoint="vmvault-hb-raw1", incremental_from=None, work_dir=work_dir
    ) as pb:
        src = pb.source("vdb")
        assert not src.has_dirty_bitmap
        _dump(src, tmp_path / "vdb.raw")
    cx = ET.fromstring(checkpoint_xml(URI, uuid, "vmvault-hb-raw1"))
    modes = {d.get("name"): d.get("checkpoint") for d in cx.findall("./disks/disk")}
    assert modes == {"vda": "bitmap", "vdb": "no"}
    assert len(image_file(tmp_path / "vdb.raw", "/seed/random.bin")) == MiB
    fsck_clean(tmp_path / "vdb.raw")

    # an incremental: vda from its bitmap, vdb full again in the same job
    with PullBackup(
        URI,
        uuid,
        specs,
        checkpoint="vmvault-hb-raw2",
        incremental_from="vmvault-hb-raw1",
        work_dir=work_dir,
    ) as pb:
        assert pb.modes == {"vda": "incremental", "vdb": "full"}
        assert "raw" in pb.point_in_time.full_disks["vdb"]
        vdb = pb.source("vdb")
        assert not vdb.has_dirty_bitmap
        assert vdb.dirty_extents() == [(0, vdb.size)]  # everything may have changed
        assert pb.source("vda").has_dirty_bitmap
        assert _disk_sum(pb.source("vda").dirty_extents()) < 2 * MiB
    _assert_nothing_left(dom, pb)


def test_app_hook_runs_at_freeze_and_thaw(conn: Any, work_dir: Path, tmp_path: Path) -> None:
    dom = _dom(conn, "app-hook")
    uuid = dom.UUIDString()
    vda = [s for s in _specs(dom) if s.target == "vda"]
    with PullBackup(
        URI, uuid, vda, checkpoint=None, incremental_from=None, work_dir=work_dir
    ) as pb:
        pit = pb.point_in_time
        assert pit.frozen and pit.frozen_ms > 0
        # the dispatcher reported the app's flush hook for this freeze: application-consistent
        assert pit.hooks.state.value == "succeeded", pit.hooks
        assert [h.name for h in pit.hooks.hooks] == ["10-app"]
        print(f"app-hook: fsFreeze took {pit.freeze_call_ms} ms, frozen window {pit.frozen_ms} ms")
        _dump(pb.source("vda"), tmp_path / "vda.raw")
    _assert_nothing_left(dom, pb)
    log = _hook_log(dom).decode().split()
    assert log[-4] == "freeze" and log[-2] == "thaw", log  # "<what> <uptime>" pairs
    in_backup = image_file(tmp_path / "vda.raw", "/app/hook.log").decode().splitlines()
    assert in_backup[-1].startswith("freeze "), in_backup  # the hook ran before the point
    assert b"token=" in image_file(tmp_path / "vda.raw", "/app/state")  # the app flushed
    fsck_clean(tmp_path / "vda.raw")


def test_no_agent_gives_a_crash_consistent_point(conn: Any, work_dir: Path) -> None:
    dom = _dom(conn, "no-agent")
    with PullBackup(
        URI,
        dom.UUIDString(),
        _specs(dom),
        checkpoint=None,
        incremental_from=None,
        work_dir=work_dir,
    ) as pb:
        pit = pb.point_in_time
        assert not pit.frozen and pit.frozen_ms == 0 and pit.fsinfo is None
        assert pit.freeze_error_code == "FREEZE_FAILED"
        assert pit.freeze_error is not None and "agent" in pit.freeze_error
        # never a frozen-labelled point: the saved-state fallback paused it for the instant
        assert pit.paused and pit.paused_ms > 0 and pit.fallback_reason == pit.freeze_error
        src = pb.source("vda")
        off, length, _ = next(e for e in src.extents() if e[2])
        buf = bytearray(min(length, CHUNK))
        src.pread_into(memoryview(buf), off)
    _assert_nothing_left(dom, pb)


def test_writer_records_and_a_hung_agent(conn: Any, work_dir: Path, tmp_path: Path) -> None:
    dom = _dom(conn, "writer")
    uuid = dom.UUIDString()
    vda = [s for s in _specs(dom) if s.target == "vda"]
    with PullBackup(
        URI, uuid, vda, checkpoint=None, incremental_from=None, work_dir=work_dir
    ) as pb:
        assert pb.point_in_time.frozen
        _dump(pb.source("vda"), tmp_path / "vda.raw")
    check = check_writer_records(image_file(tmp_path / "vda.raw", "/writer/records.log"))
    assert check.ok and check.records > 0, check

    # qemu-ga stopped for 6 s: the freeze is not even sent, the point is crash-consistent,
    # and nothing freezes the guest behind our back once the agent wakes up
    sh(
        dom,
        'P=$(pidof qemu-ga); setsid sh -c "sleep 0.3; kill -STOP $P; sleep 6; kill -CONT $P" '
        "</dev/null >/dev/null 2>&1 &",
    )
    time.sleep(0.8)
    t0 = time.monotonic()
    with PullBackup(
        URI,
        uuid,
        vda,
        checkpoint=None,
        incremental_from=None,
        work_dir=work_dir,
        freeze_timeout=2,
    ) as pb:
        assert not pb.point_in_time.frozen
        assert pb.point_in_time.freeze_error_code == "AGENT_FREEZE_TIMEOUT"
    assert time.monotonic() - t0 < 6
    _assert_nothing_left(dom, pb)
    wait_for_agent(dom, 30)
    assert _fsfreeze_status(dom) == "thawed"


def test_pause_resumes_a_running_vm_and_leaves_a_paused_one_paused(
    conn: Any, work_dir: Path
) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    with PullBackup(
        URI,
        uuid,
        specs,
        checkpoint=None,
        incremental_from=None,
        work_dir=work_dir,
        quiesce="pause",
    ) as pb:
        pit = pb.point_in_time
        assert pit.paused and not pit.frozen and pit.paused_ms > 0 and pit.frozen_ms == 0
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # resumed right after backupBegin
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    dom.suspend()
    try:
        for quiesce in ("pause", "freeze"):
            with PullBackup(
                URI,
                uuid,
                specs,
                checkpoint=None,
                incremental_from=None,
                work_dir=work_dir,
                quiesce=quiesce,
            ) as pb:
                pit = pb.point_in_time
                assert not pit.paused and pit.was_paused and not pit.frozen
                assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
            assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
            _assert_nothing_left(dom, pb)
    finally:
        dom.resume()


def test_exception_and_cancel_leave_nothing_behind(conn: Any, work_dir: Path) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    with (
        pytest.raises(RuntimeError, match="boom"),
        PullBackup(
            URI,
            uuid,
            specs,
            checkpoint="vmvault-hb-abort",
            incremental_from=None,
            work_dir=work_dir,
        ) as pb,
    ):
        src = pb.source("vda")
        src.pread_into(memoryview(bytearray(MiB)), 0)
        assert _job_type(dom) != libvirt.VIR_DOMAIN_JOB_NONE
        assert pb.socket.is_socket() and len(list(pb.scratch_dir.iterdir())) == 2
        # a live owner: cleanup_stale keeps its hands off
        assert "nothing done" in cleanup_stale(URI, uuid, work_dir)[0]
        raise RuntimeError("boom")
    _assert_nothing_left(dom, pb)
    assert _fsfreeze_status(dom) == "thawed"
    # __exit__ keeps the new checkpoint: the caller deletes it if the point did not commit
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-abort"]
    delete_checkpoint(URI, uuid, "vmvault-hb-abort")
    delete_checkpoint(URI, uuid, "vmvault-hb-abort")  # idempotent

    # cancelled after backupBegin (inside __enter__): job and new checkpoint rolled back
    answers = iter([False, True])
    with (
        pytest.raises(Cancelled),
        PullBackup(
            URI,
            uuid,
            specs,
            checkpoint="vmvault-hb-cancel",
            incremental_from=None,
            work_dir=work_dir,
            cancel=lambda: next(answers),
        ),
    ):
        pass
    assert _job_type(dom) == libvirt.VIR_DOMAIN_JOB_NONE
    assert list_checkpoints(URI, uuid) == []
    assert _fsfreeze_status(dom) == "thawed"


def test_a_foreign_backup_job_is_refused_and_left_alone(conn: Any, work_dir: Path) -> None:
    dom = _dom(conn, "app-hook")
    uuid = dom.UUIDString()
    foreign = Path("/var/tmp") / f"{lab_prefix()}-foreign-{os.getpid()}"
    (foreign / "sock").mkdir(parents=True)
    owner = ET.fromstring(dom.XMLDesc(0)).findtext("./seclabel[@model='dac']/label") or ""
    uid, gid = (int(x.lstrip("+")) for x in owner.split(":"))
    os.chown(foreign / "sock", uid, gid)
    xml = (
        f"<domainbackup mode='pull'><server transport='unix' socket='{foreign}/sock/s.sock'/>"
        f"<disks><disk name='vda' backup='yes' type='file'>"
        f"<scratch file='{foreign}/vda.scratch'/></disk>"
        f"<disk name='vdb' backup='no'/></disks></domainbackup>"
    )
    hook_log = _hook_log(dom)
    dom.backupBegin(xml, None, 0)
    try:
        with (
            pytest.raises(BackupJobRunning, match="backup job"),
            PullBackup(
                URI,
                uuid,
                _specs(dom),
                checkpoint="vmvault-hb-foreign",
                incremental_from=None,
                work_dir=work_dir,
            ),
        ):
            pass
        assert _hook_log(dom) == hook_log  # never frozen
        done = cleanup_stale(URI, uuid, work_dir)
        assert any("alone" in d for d in done), done
        assert _job_type(dom) != libvirt.VIR_DOMAIN_JOB_NONE
    finally:
        dom.abortJob()
        shutil.rmtree(foreign, ignore_errors=True)
    assert list_checkpoints(URI, uuid) == []


def test_missing_or_broken_checkpoint_is_detected_before_the_freeze(
    conn: Any, work_dir: Path
) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    targets = [s.target for s in specs]

    def incremental(since: str) -> None:
        with PullBackup(
            URI,
            uuid,
            specs,
            checkpoint="vmvault-hb-next",
            incremental_from=since,
            work_dir=work_dir,
        ):
            pytest.fail("an unusable checkpoint was accepted")

    for name in ("vmvault-hb-gone", "vmvault-hb-broken"):
        with PullBackup(
            URI, uuid, specs, checkpoint=name, incremental_from=None, work_dir=work_dir
        ):
            pass
    assert verify_checkpoint(URI, uuid, "vmvault-hb-broken", targets) == []

    delete_checkpoint(URI, uuid, "vmvault-hb-gone")
    with pytest.raises(CheckpointMissing, match="no such checkpoint"):
        incremental("vmvault-hb-gone")

    # QEMU lost the bitmap of vda (libvirt still lists the checkpoint)
    nodes = json.loads(
        libvirt_qemu.qemuMonitorCommand(
            dom, '{"execute":"query-named-block-nodes","arguments":{"flat":true}}', 0
        )
    )["return"]
    node = next(
        n["node-name"]
        for n in nodes
        if n["drv"] == "qcow2" and n["file"] == specs[0].path and n.get("dirty-bitmaps")
    )
    libvirt_qemu.qemuMonitorCommand(
        dom,
        json.dumps(
            {
                "execute": "block-dirty-bitmap-remove",
                "arguments": {"node": node, "name": "vmvault-hb-broken"},
            }
        ),
        0,
    )
    problems = verify_checkpoint(URI, uuid, "vmvault-hb-broken", targets)
    assert len(problems) == 1 and "vda" in problems[0], problems
    assert "vmvault-hb-broken" not in image_bitmaps(Path(specs[0].path))
    assert "vmvault-hb-broken" in image_bitmaps(Path(specs[1].path))
    with pytest.raises(CheckpointMissing, match="vda"):
        incremental("vmvault-hb-broken")
    assert _job_type(dom) == libvirt.VIR_DOMAIN_JOB_NONE
    assert "vmvault-hb-next" not in list_checkpoints(URI, uuid)
    # libvirt cannot delete a checkpoint whose bitmap is gone: the metadata goes alone
    delete_checkpoint(URI, uuid, "vmvault-hb-broken")
    assert list_checkpoints(URI, uuid) == []
    with pytest.raises(InvalidInput):
        delete_checkpoint(URI, uuid, "someone-elses")


def test_redefine_after_libvirt_lost_the_metadata(conn: Any, work_dir: Path) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    with PullBackup(
        URI, uuid, specs, checkpoint="vmvault-hb-r1", incremental_from=None, work_dir=work_dir
    ):
        pass
    xml = checkpoint_xml(URI, uuid, "vmvault-hb-r1")
    # the image header of a running VM does not show a bitmap made since QEMU started:
    # image_bitmaps asks the running QEMU
    vda = Path(specs[0].path)
    assert "vmvault-hb-r1" in image_bitmaps(vda)
    delete_checkpoint(URI, uuid, "vmvault-hb-r1", metadata_only=True)  # bitmaps stay in QEMU
    assert list_checkpoints(URI, uuid) == []
    assert "vmvault-hb-r1" in image_bitmaps(vda)
    assert verify_checkpoint(URI, uuid, "vmvault-hb-r1", ["vda"]) != []
    redefine_checkpoint(URI, uuid, xml)
    redefine_checkpoint(URI, uuid, xml)  # already there: left alone
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-r1"]
    sh(dom, "dd if=/dev/urandom of=/data/r.bin bs=1M count=2 2>/dev/null && sync")
    with PullBackup(
        URI,
        uuid,
        specs,
        checkpoint="vmvault-hb-r2",
        incremental_from="vmvault-hb-r1",
        work_dir=work_dir,
    ) as pb:
        dirty = _disk_sum(pb.source("vda").dirty_extents())
        assert 2 * MiB <= dirty <= 4 * MiB, dirty
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-r1", "vmvault-hb-r2"]
    # a real delete takes the bitmaps: redefining that checkpoint is refused
    xml2 = checkpoint_xml(URI, uuid, "vmvault-hb-r2")
    delete_checkpoint(URI, uuid, "vmvault-hb-r2")
    assert "vmvault-hb-r2" not in image_bitmaps(vda)
    with pytest.raises(CheckpointMissing):
        redefine_checkpoint(URI, uuid, xml2)
    assert list_checkpoints(URI, uuid) == ["vmvault-hb-r1"]


def _wait_state(dom: Any, state: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while dom.state()[0] != state:
        assert time.monotonic() < deadline, f"state {dom.state()} after {timeout}s"
        time.sleep(0.2)


def test_offline_export_of_a_shut_off_vm(conn: Any, work_dir: Path, tmp_path: Path) -> None:
    dom = _dom(conn, "passthrough")
    uuid = dom.UUIDString()
    specs = _specs(dom)
    assert [s.target for s in specs] == ["vda", "vdb"]  # the LUN (sda) is not a file disk
    with PullBackup(
        URI, uuid, specs, checkpoint="vmvault-hb-off1", incremental_from=None, work_dir=work_dir
    ) as pb:
        assert set(pb.modes) == {"vda", "vdb"}
    cx = ET.fromstring(checkpoint_xml(URI, uuid, "vmvault-hb-off1"))
    assert {d.get("name"): d.get("checkpoint") for d in cx.findall("./disks/disk")} == {
        "vda": "bitmap",
        "vdb": "bitmap",
        "sda": "no",
    }
    md5 = _md5s(
        sh(
            dom,
            "dd if=/dev/urandom of=/data/off.bin bs=1M count=4 2>/dev/null && sync && "
            "md5sum /data/off.bin",
        )
    )
    image = Path(specs[0].path)
    dom.shutdown()  # clean: QEMU writes the persistent bitmaps into the images
    _wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF, 60)
    try:
        with pytest.raises(BackupVmNotRunning):
            PullBackup(
                URI, uuid, specs, checkpoint=None, incremental_from=None, work_dir=work_dir
            ).__enter__()
        assert "vmvault-hb-off1" in image_bitmaps(image)
        assert verify_checkpoint(URI, uuid, "vmvault-hb-off1", ["vda", "vdb"]) == []

        with OfflineExport(image, "qcow2", work_dir) as ex:
            src = ex.source()
            assert src.size == 1 << 30 and not src.has_dirty_bitmap
            _dump(src, tmp_path / "off.raw")
        cmp = subprocess.run(
            [
                "qemu-img",
                "compare",
                "-f",
                "raw",
                "-F",
                "qcow2",
                str(tmp_path / "off.raw"),
                str(image),
            ],
            capture_output=True,
            text=True,
        )
        assert cmp.returncode == 0, cmp.stdout + cmp.stderr  # offline: byte-identical
        assert _md5(image_file(tmp_path / "off.raw", "/off.bin")) == md5["/data/off.bin"]

        with OfflineExport(image, "qcow2", work_dir, bitmap="vmvault-hb-off1") as ex:
            with pytest.raises(libvirt.libvirtError, match="lock"):
                dom.create()  # the export holds the image: the VM cannot start meanwhile
            src = ex.source()
            assert src.has_dirty_bitmap
            dirty = _disk_sum(src.dirty_extents())
            print(f"offline dirty since vmvault-hb-off1 after a 4 MiB write: {dirty:,} B")
            assert 4 * MiB <= dirty <= 7 * MiB, dirty
        with pytest.raises(CheckpointMissing):
            OfflineExport(image, "qcow2", work_dir, bitmap="vmvault-hb-nope").__enter__()
        assert list(work_dir.glob("offline-*")) == []
    finally:
        dom.create()
        wait_for_agent(dom, 60)
    with pytest.raises(OfflineExportFailed):  # the running VM holds the image's lock
        OfflineExport(image, "qcow2", work_dir).__enter__()
    assert list(work_dir.glob("offline-*")) == []
    # the chain survived the power cycle
    with PullBackup(
        URI,
        uuid,
        specs,
        checkpoint="vmvault-hb-off2",
        incremental_from="vmvault-hb-off1",
        work_dir=work_dir,
    ) as pb:
        assert 4 * MiB <= _disk_sum(pb.source("vda").dirty_extents()) <= 8 * MiB


_DEAD_PROCESS = """
import sys, time
from pathlib import Path
from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup
uri, uuid, work, mode, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
disks = [DiskSpec(*s.split(",")) for s in specs]
pb = PullBackup(uri, uuid, disks, checkpoint="vmvault-hb-stale", incremental_from=None,
                work_dir=Path(work), quiesce="none")
pb.__enter__()
# die inside the window: frozen (or paused) by us, as a crash between freeze and thaw would
if mode == "freeze":
    pb._dom.fsFreeze(None, 0)
else:
    pb._dom.suspend()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("mode", ["freeze", "pause"])
def test_cleanup_stale_after_a_dead_process(conn: Any, work_dir: Path, mode: str) -> None:
    dom = _dom(conn, "standard")
    uuid = dom.UUIDString()
    args = [f"{s.target},{s.path},{s.format}" for s in _specs(dom)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEAD_PROCESS, URI, uuid, str(work_dir), mode, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()
    assert _job_type(dom) != libvirt.VIR_DOMAIN_JOB_NONE
    # what the dead backup's journal would say: window entered, never released
    left = UnfinishedBackup(
        job_id=1,
        point="hb-stale",
        checkpoint="vmvault-hb-stale",
        quiesce=mode,
        was_paused=False,
        offline=False,
        window_entered=True,
        point_taken=False,
        released=False,
        last_step="freezing",
    )
    done = cleanup_stale(URI, uuid, work_dir, left)
    print(done)
    assert any(d.startswith("aborted the stale backup job") for d in done), done
    assert any("vmvault-hb-stale" in d for d in done), done  # reported, not deleted
    if mode == "freeze":
        assert any(d.startswith("thawed 2 file system") for d in done), done
    else:
        assert any(d.startswith("resumed") for d in done), done
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert _fsfreeze_status(dom) == "thawed"
    assert _job_type(dom) == libvirt.VIR_DOMAIN_JOB_NONE
    vm_dir = work_dir / uuid
    assert not (vm_dir / "sock" / "nbd.sock").exists()
    assert list((vm_dir / "scratch").iterdir()) == []
    assert {p.name for p in vm_dir.iterdir()} == {"lock", "sock", "scratch"}  # no state file
    assert cleanup_stale(URI, uuid, work_dir, left) == [  # nothing left to do
        "the interrupted backup had created checkpoint vmvault-hb-stale "
        "(not deleted here: only the catalog knows whether a recovery point uses it)"
    ]
    delete_checkpoint(URI, uuid, "vmvault-hb-stale")
