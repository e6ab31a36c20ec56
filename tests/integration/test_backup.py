"""Backups of running lab guests into a vault, incrementals, restore of disks, verify, GC —
through the real ``vmvault`` command, checked inside the restored images."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import ENGINES, CliRunner
from tests.integration.conftest import LAB_VARIANTS, lab_settings
from tests.integration.guests import fsck_clean, image_file, md5_in_image, raw_copy, write_file
from vmvault.bootstrap import bootstrap
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.lab.writer import RECORDS_PATH, check_writer_records

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


def setup(
    cli: CliRunner, *vms: str, env: dict[str, str] | None = None, vault_args: tuple[str, ...] = ()
) -> None:
    r = cli("vault", "create", "main", "--location", "local", *vault_args, env=env)
    assert r.code == 0, r.stderr
    assert cli("discover", env=env).code in (0, 3)
    r = cli("register", *vms, "--crash-consistent", env=env)
    assert r.code in (0, 3), r.stderr


def backup(cli: CliRunner, vm: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = cli("backup", vm, "--json", env=env)
    assert r.code in (0, 3), r.stdout + r.stderr
    doc = r.json()[0]
    assert doc["point"] is not None, doc
    return doc  # type: ignore[no-any-return]


def restore(
    cli: CliRunner, vm: str, point: str, target: Path, fmt: str = "raw", **kw: Any
) -> list[Path]:
    r = cli(
        "restore",
        vm,
        "--point",
        point,
        "--disks-only",
        "--dir",
        str(target),
        "--format",
        fmt,
        "--json",
        **kw,
    )
    assert r.code == 0, r.stdout + r.stderr
    return [Path(f) for f in r.json()["files"]]


@pytest.mark.parametrize("cli", ENGINES, indirect=True)  # and on PostgreSQL
def test_full_incremental_restore(lab: dict, cli: CliRunner, tmp_path: Path) -> None:
    vm = N["standard"]
    setup(cli, vm)
    a = write_file(vm, "/data/a.bin", 8)
    full = backup(cli, vm)
    p1 = full["point"]
    assert p1["method"] == "guest-quiesce" and p1["consistency"] == "file-system-consistent"
    assert [d["incremental"] for d in p1["disks"]] == [False, False]
    assert p1["bytes_read"] > 8 << 20 and p1["bytes_new"] > 0

    # a name of this run: the guest is shared (the test runs once per catalog engine), and
    # the older point must not hold the file the newer one added
    bname = f"b-{tmp_path.name[-12:].replace('[', '').replace(']', '')}-{time.time_ns()}.bin"
    b = write_file(vm, f"/data2/{bname}", 4)
    inc = backup(cli, vm)
    p2 = inc["point"]
    assert [d["incremental"] for d in p2["disks"]] == [True, True]
    # only what changed was read: a few MiB, not the 1.25 GiB of the disks
    assert p2["bytes_read"] < 32 << 20, p2
    assert p2["bytes_logical"] == p1["bytes_logical"]

    listed = cli("points", "list", vm, "--json").json()
    assert [p["id"] for p in listed] == [p2["id"], p1["id"]]
    shown = cli("points", "show", p2["id"], "--json").json()
    assert shown["consistency"] == "file-system-consistent"
    # the guest was frozen, and only around backupBegin (~0.1-0.3 s), never while disks are read
    assert 0 < p1["frozen_ms"] < 10_000 and 0 < shown["frozen_ms"] < 10_000, (p1, shown)

    files = restore(cli, vm, p2["id"], tmp_path / "r2")
    vda, vdb = (f for f in files if f.suffix == ".raw")
    assert md5_in_image(vda, "/a.bin") == a
    assert md5_in_image(vdb, f"/{bname}") == b
    fsck_clean(vda)
    fsck_clean(vdb)
    # the sparse image holds only the data, not the 1 GiB of the disk
    assert vda.stat().st_size == 1 << 30 and vda.stat().st_blocks * 512 < 256 << 20

    old = restore(cli, vm, p1["id"], tmp_path / "r1", fmt="qcow2")
    old_vdb = next(f for f in old if "vdb" in f.name)
    raw = raw_copy(old_vdb, tmp_path / "old-vdb.raw")
    assert (
        bname.encode()
        not in subprocess.run(
            ["debugfs", "-R", "ls /", str(raw)], capture_output=True, check=True
        ).stdout
    )

    r = cli("restore", vm, "--point", p2["id"], "--disks-only", "--dir", str(tmp_path / "r2"))
    assert r.code == 2 and "RESTORE_TARGET_EXISTS" in r.stderr


def test_writer_records_consistent_after_restore(lab: dict, cli: CliRunner, tmp_path: Path) -> None:
    vm = N["writer"]
    setup(cli, vm)
    backup(cli, vm)
    point = backup(cli, vm)["point"]  # incremental while the guest keeps writing
    files = restore(cli, vm, point["id"], tmp_path / "r")
    vda = next(f for f in files if "vda" in f.name)
    fsck_clean(vda)
    check = check_writer_records(image_file(vda, RECORDS_PATH.removeprefix("/data")))
    assert check.ok, check.problem
    assert check.records > 0


def test_chain_break_falls_back_to_full_and_metadata_loss_is_repaired(
    lab: dict, cli: CliRunner
) -> None:
    vm = N["app-hook"]
    setup(cli, vm)
    first = backup(cli, vm)["point"]
    conn = libvirt.open(URI)
    dom = conn.lookupByName(vm)
    try:
        # libvirt loses the checkpoint's metadata; the bitmaps stay in the images
        dom.checkpointLookupByName(first["checkpoint"]).delete(
            libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY
        )
        second = backup(cli, vm)
        assert [d["incremental"] for d in second["point"]["disks"]] == [True, True]
        job = cli("jobs", "show", str(second["id"]), "--json").json()
        assert any("redefined" in line for line in job["log"])

        # a real delete removes the bitmaps too: the chain is broken, full read, reason given
        dom.checkpointLookupByName(second["point"]["checkpoint"]).delete(0)
        third = backup(cli, vm)
        assert [d["incremental"] for d in third["point"]["disks"]] == [False, False]
        assert all("chain broken" in d["reason"] for d in third["point"]["disks"])
        # the fallback is cheap in storage: everything deduplicated
        assert third["point"]["bytes_new"] < first["bytes_new"] // 4
        # only the newest vmvault checkpoint is kept
        names = [c.getName() for c in dom.listAllCheckpoints()]
        assert names == [third["point"]["checkpoint"]]
    finally:
        conn.close()


def test_raw_and_passthrough_disks(lab: dict, cli: CliRunner) -> None:
    setup(cli, N["raw-disk"], N["passthrough"])
    one = backup(cli, N["raw-disk"])["point"]
    two = backup(cli, N["raw-disk"])["point"]
    raw_two = next(d for d in two["disks"] if d["format"] == "raw")
    assert not raw_two["incremental"] and "raw" in raw_two["reason"]
    assert two["bytes_new"] < one["bytes_new"] // 4  # re-read, but deduplicated
    doc = backup(cli, N["passthrough"])
    assert doc["state"] == "completed-with-warnings"
    assert any("sda" in w and "pass-through" in w for w in doc["warnings"])
    sda = next(d for d in doc["point"]["disks"] if d["target"] == "sda")
    assert sda["excluded"]


def test_no_agent_vm_is_paused_around_the_point(lab: dict, cli: CliRunner) -> None:
    vm = N["no-agent"]
    setup(cli, vm)
    point = backup(cli, vm)["point"]
    assert point["method"] == "saved-state" and point["consistency"] == "crash-consistent"
    conn = libvirt.open(URI)
    try:
        assert conn.lookupByName(vm).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()


@pytest.mark.parametrize("cli", ENGINES, indirect=True)  # and on PostgreSQL
def test_verify_detects_corruption_and_gc_keeps_referenced(
    lab: dict, cli: CliRunner, home: Path
) -> None:
    vm = N["standard"]
    setup(cli, vm)
    p1 = backup(cli, vm)["point"]
    chunk_dir = home / "vaults" / "main" / "chunks"
    # every chunk file there now belongs to p1, which stays: the GC below keeps chunks no point
    # references for an hour (its grace), so a chunk only the deleted p2 held may outlive it
    of_p1 = {c for c in chunk_dir.rglob("*") if c.is_file()}
    write_file(vm, "/data/c.bin", 4)
    p2 = backup(cli, vm)["point"]
    write_file(vm, "/data/d.bin", 4)
    p3 = backup(cli, vm)["point"]
    assert cli("verify", "--all", "--json").code == 0

    # GC with every point referenced removes nothing that a point needs
    r = cli("gc", "--json")
    assert r.code == 0
    assert cli("verify", "--all").code == 0

    # deleting the middle point keeps the others restorable
    assert cli("points", "delete", p2["id"]).code == 0
    assert cli("gc").code == 0
    assert cli("verify", "--point", p1["id"]).code == 0
    assert cli("verify", "--point", p3["id"]).code == 0

    # flip one byte in one chunk file: verify names the broken points
    victim = max((c for c in of_p1 if c.is_file()), key=lambda c: c.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = cli("verify", "--all", "--json")
    assert r.code == 1
    doc = r.json()
    assert doc["error_code"] == "VERIFY_FAILED"
    assert any("corrupt" in line for line in doc["log"])


def test_encrypted_vault(lab: dict, cli: CliRunner, tmp_path: Path) -> None:
    vm = N["raw-disk"]
    good = {"VMVAULT_PASSPHRASE": "correct horse battery staple"}
    setup(cli, vm, env=good, vault_args=("--encrypt",))
    point = backup(cli, vm, env=good)["point"]
    r = cli("backup", vm, env={"VMVAULT_PASSPHRASE": "wrong"})
    assert r.code == 2 and "error WRONG_PASSPHRASE" in r.stderr and "Traceback" not in r.stderr
    r = cli("backup", vm, env={})
    assert r.code == 2 and "PASSPHRASE_REQUIRED" in r.stderr
    files = restore(cli, vm, point["id"], tmp_path / "r", env=good)
    fsck_clean(next(f for f in files if "vda" in f.name))


def test_shut_off_vm_is_read_from_its_images(
    lab: dict, cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    """Running backup (checkpoint), then a write, then shut-off: the offline backup reads the
    images through qemu-nbd, only what the checkpoint's bitmap marks dirty."""
    services = bootstrap(lab_settings(home))
    (extra,) = services.lab.up(1, ["standard"])
    vm = str(extra["name"])
    setup(cli, vm)
    first = backup(cli, vm)["point"]
    c = write_file(vm, "/data/c.bin", 6)
    conn = libvirt.open(URI)
    dom = conn.lookupByName(vm)
    try:
        dom.shutdown()  # through the guest agent: a clean shutdown flushes the bitmaps
        for _ in range(120):
            if dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
                break
            time.sleep(0.5)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        assert cli("discover").code in (0, 3)
        doc = backup(cli, vm)
        point = doc["point"]
        assert point["method"] == "offline" and point["consistency"] == "crash-consistent"
        vda = next(d for d in point["disks"] if d["target"] == "vda")
        assert vda["incremental"] and vda["bytes_read"] < 64 << 20, vda
        assert point["checkpoint"] == first["checkpoint"]  # no new checkpoint while off
        files = restore(cli, vm, point["id"], tmp_path / "r")
        img = next(f for f in files if "vda" in f.name)
        assert md5_in_image(img, "/c.bin") == c
        fsck_clean(img)
        # and the image itself was not changed by the backup
        assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    finally:
        conn.close()
