"""Whole-VM restores on the real lab: ``--as-new``, ``--replace``, the restore test, through the
real ``vmvault`` command; restored images checked chunk by chunk against the point's index,
inside (debugfs, e2fsck) and by booting them.

Run with a lab prefix of its own, e.g. ``VMVAULT_LAB_PREFIX=rs``: every domain, network and
file made here is named after it and removed again.  Restored disks go under
``/var/lib/vmvault/test-restores/<prefix>/`` (QEMU runs as libvirt-qemu and cannot enter
pytest's 0700 temporary directories) and into the host's default image directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner, Result
from tests.integration.conftest import lab_settings
from tests.integration.guests import (
    fsck_clean,
    guest,
    guest_md5,
    libvirt_conn,
    md5_in_image,
    raw_copy,
    write_file,
)
from vmvault.bootstrap import Services, bootstrap
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.domain.errors import RestoreDefineFailed
from vmvault.domain.job import JobType
from vmvault.domain.restore import RestoreMode
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.libvirt.restore import LibvirtRestoreDriver
from vmvault.hypervisor.libvirt.restore_xml import RESTORE_NS

pytestmark = pytest.mark.lab

URI = "qemu:///system"
PREFIX = lab_prefix()
ROOT = Path("/var/lib/vmvault/test-restores") / PREFIX
NET = f"{PREFIX}-it"  # stays for the whole module
GONE = f"{PREFIX}-gone"  # removed by the "network no longer exists" test
BRIDGES = {NET: f"vv{PREFIX[:6]}it0", GONE: f"vv{PREFIX[:6]}gn0"}


@functools.cache
def default_dir() -> Path:
    """The host's default image directory (pool ``default``, else /var/lib/libvirt/images)."""
    return LibvirtRestoreDriver().default_dir(URI)


# --- helpers -----------------------------------------------------------------------------------


def run_cli(home: Path, *args: str, timeout: float = 300) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    p = subprocess.run(
        [sys.executable, "-m", "vmvault", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def inactive_text(name: str) -> str:
    with libvirt_conn() as conn:
        return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def inactive_xml(name: str) -> ET.Element:
    return ET.fromstring(inactive_text(name))


def disk_paths(root: ET.Element) -> dict[str, str]:
    out = {}
    for d in root.findall("devices/disk"):
        target, source = d.find("target"), d.find("source")
        if target is not None and source is not None and source.get("file"):
            out[target.get("dev", "")] = source.get("file", "")
    return out


def state(name: str) -> int:
    with libvirt_conn() as conn:
        return int(conn.lookupByName(name).state()[0])


def defined(name: str) -> bool:
    with libvirt_conn() as conn:
        try:
            conn.lookupByName(name)
            return True
        except libvirt.libvirtError:
            return False


def start_and_wait(name: str) -> None:
    with libvirt_conn() as conn:
        dom = conn.lookupByName(name)
        if not dom.isActive():
            dom.create()
    LibvirtRestoreDriver().wait_for_agent(URI, uuid_of(name), 120)
    assert guest(name, "echo up").strip() == "up"


def uuid_of(name: str) -> str:
    with libvirt_conn() as conn:
        return str(conn.lookupByName(name).UUIDString())


def remove_domain(name: str) -> None:
    assert name.startswith(f"{PREFIX}-"), name  # never anybody else's
    with libvirt_conn() as conn:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        dom.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )


def assert_matches_point(services: Services, point_id: str, target: str, raw: Path) -> None:
    """Every chunk of the raw image has the id the point's index holds: byte-identical."""
    vault = services.vaults.resolve(None)
    store = services.vaults.open_store(vault)
    index = store.read_point_index(store.read_manifest(point_id), target)
    assert raw.stat().st_size == index.disk_size
    with raw.open("rb") as f:
        for i, cid in enumerate(index.ids):
            data = f.read(index.chunk_length(i))
            got = ZERO_ID if data == bytes(len(data)) else store.chunk_id(data)
            assert got == cid, f"{target}: chunk {i} differs from the point"


def nic_xml(network: str) -> str:
    return (
        f"<interface type='network'><source network='{network}'/><model type='virtio'/></interface>"
    )


# --- the module's world --------------------------------------------------------------------------


@dataclass
class World:
    home: Path
    services: Services
    src: str  # the VM restored (an extra lab guest of our own)
    other: str  # another VM, for "point of another VM"
    point: str  # a point of src: before.bin, before2.bin, NICs on NET and GONE
    other_point: str
    md5: dict[str, str]
    made: list[str] = field(default_factory=list)  # domains to remove

    def cli(self, *args: str) -> Result:
        return run_cli(self.home, *args)


@pytest.fixture(scope="module")
def world(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("restore-home")
    services = bootstrap(lab_settings(home))
    src, other = (str(vm["name"]) for vm in services.lab.up(2, ["standard"]))
    # what an interrupted earlier run left (the teardown below never ran): its restored VMs,
    # their images and links, its directory
    with libvirt_conn() as conn:
        leftover = [
            d.name() for d in conn.listAllDomains() if d.name().startswith(f"{PREFIX}-restored")
        ]
    for name in leftover:
        remove_domain(name)
    for link in default_dir().glob(f"{PREFIX}-*"):
        link.unlink()
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True, exist_ok=True)
    for p in (ROOT, *ROOT.parents):
        assert p.stat().st_mode & 0o001, f"{p} must be traversable by libvirt-qemu"
    with libvirt_conn() as conn:
        for net, bridge in BRIDGES.items():
            with contextlib.suppress(libvirt.libvirtError):
                old = conn.networkLookupByName(net)
                with contextlib.suppress(libvirt.libvirtError):
                    old.destroy()
                old.undefine()
            n = conn.networkDefineXML(
                f"<network><name>{net}</name><bridge name='{bridge}'/></network>"
            )
            n.create()
        dom = conn.lookupByName(src)
        for net in BRIDGES:  # in the persistent definition: what a backup records
            dom.attachDeviceFlags(nic_xml(net), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    md5 = {
        "/data/before.bin": write_file(src, "/data/before.bin", 4),
        "/data2/before2.bin": write_file(src, "/data2/before2.bin", 2),
    }
    cli = run_cli
    assert cli(home, "vault", "create", "main", "--location", "local").code == 0
    assert cli(home, "discover").code in (0, 3)
    r = cli(home, "register", src, other)
    assert r.code in (0, 3), r.stderr
    r = cli(home, "backup", src, other, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    docs = {d["vm_name"].split("/")[-1]: d["point"] for d in r.json()}
    point = docs[src]
    assert point["consistency"] == "file-system-consistent", point
    write_file(src, "/data/after.bin", 1)  # after the point: a restore must not have it
    w = World(home, services, src, other, point["id"], docs[other]["id"], md5)
    yield w
    for name in w.made:
        remove_domain(name)
    with libvirt_conn() as conn:
        for net in BRIDGES:
            with contextlib.suppress(libvirt.libvirtError):
                n = conn.networkLookupByName(net)
                with contextlib.suppress(libvirt.libvirtError):
                    n.destroy()
                n.undefine()
    for link in default_dir().glob(f"{PREFIX}-*"):
        link.unlink()
    shutil.rmtree(ROOT, ignore_errors=True)


def own_files() -> set[str]:
    """Every file of ours in the restore root and the default directory."""
    found = {str(p) for p in ROOT.rglob("*")} if ROOT.exists() else set()
    return found | {str(p) for p in default_dir().glob(f"*{PREFIX}-*")}


# --- tests -------------------------------------------------------------------------------------


def test_bad_input_is_refused_up_front(world: World, tmp_path: Path) -> None:
    before = own_files()

    def refused(code: str, *args: str) -> None:
        r = world.cli("restore", world.src, *args)
        assert r.code == 2 and f"error {code}" in r.stderr, r.stdout + r.stderr
        assert "Traceback" not in r.stderr

    new = f"{PREFIX}-never-1"
    refused("POINT_NOT_FOUND", "--point", "20200101T000000Z-000000", "--as-new", new)
    refused("POINT_OF_ANOTHER_VM", "--point", world.other_point, "--as-new", new)
    refused("RESTORE_NAME_EXISTS", "--point", world.point, "--as-new", world.other)
    refused("RESTORE_DIR_UNUSABLE", "--point", world.point, "--as-new", new, "--dir", str(tmp_path))
    refused(
        "HOST_NOT_FOUND", "--point", world.point, "--as-new", new, "--host", "qemu+ssh://no/system"
    )
    small = ROOT / "small"
    small.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(small)],
        capture_output=True,
    )
    try:
        if mounted.returncode == 0:
            refused(
                "INSUFFICIENT_SPACE", "--point", world.point, "--as-new", new, "--dir", str(small)
            )
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(small)], check=True)
        small.rmdir()
    # a job running on the VM (here: one claimed by this process) blocks every restore of it
    job = world.services.runner.start(JobType.BACKUP, "main", uuid_of(world.src), world.src)
    try:
        refused("OPERATION_IN_PROGRESS", "--point", world.point, "--replace")
        refused("OPERATION_IN_PROGRESS", "--point", world.point, "--as-new", new)
    finally:
        world.services.runner.finish(job, None)
    assert not defined(new) and own_files() == before
    assert state(world.src) == libvirt.VIR_DOMAIN_RUNNING


def test_as_new_into_a_non_default_directory(world: World) -> None:
    name = f"{PREFIX}-restored-1"
    world.made.append(name)
    target_dir = ROOT / "as-new"
    r = world.cli(
        "restore", world.src, "--point", world.point, "--as-new", name, "--dir", str(target_dir),
        "--json",
    )  # fmt: skip
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()["result"]
    assert doc["vm_name"] == name and doc["vm_uuid"] != uuid_of(world.src)
    # files in DIR, a symlink to each in the default directory, the XML pointing at the files
    paths = {d["target"]: Path(d["path"]) for d in doc["disks"]}
    assert paths == {
        "vda": target_dir / f"{name}-vda.qcow2",
        "vdb": target_dir / f"{name}-vdb.qcow2",
    }
    for d in doc["disks"]:
        link = Path(d["link"])
        assert link.parent == default_dir() and link.is_symlink()
        assert link.resolve() == Path(d["path"])
    root = inactive_xml(name)
    assert disk_paths(root) == {t: str(p) for t, p in paths.items()}
    assert root.findtext("uuid") == doc["vm_uuid"]
    src_root = inactive_xml(world.src)
    src_macs = {m.get("address") for m in src_root.findall("devices/interface/mac")}
    macs = [m.get("address") for m in root.findall("devices/interface/mac")]
    assert len(macs) == 2 and not set(macs) & src_macs
    assert [n.get("type") for n in root.findall("devices/interface")] == ["network", "network"]
    assert root.find("devices/interface/link") is None  # attached, link up
    logs = {el.get("file") for el in root.iter("log")}
    assert logs == {str(target_dir / f"{name}-console.log")}
    src_dir = str(Path(disk_paths(src_root)["vda"]).parent)
    leftovers = [el for el in root.iter() if any(src_dir in v for v in el.attrib.values())]
    assert all(el.tag == "{https://vmvault.dev/xmlns/lab/1}lab" for el in leftovers)
    assert root.findtext("os/kernel", "").startswith(src_dir)  # shared read-only by design
    # byte-identical to the point, intact inside
    for target, image in paths.items():
        raw = raw_copy(image, ROOT / "check" / f"{image.name}.raw")
        assert_matches_point(world.services, world.point, target, raw)
        fsck_clean(raw)
        if target == "vda":
            assert md5_in_image(raw, "/before.bin") == world.md5["/data/before.bin"]
        else:
            assert md5_in_image(raw, "/before2.bin") == world.md5["/data2/before2.bin"]
        raw.unlink()
    # and it boots: the agent answers, the files are there, the later one is not
    start_and_wait(name)
    assert guest_md5(name, "/data/before.bin") == world.md5["/data/before.bin"]
    assert guest_md5(name, "/data2/before2.bin") == world.md5["/data2/before2.bin"]
    assert guest(name, "ls /data").split().count("after.bin") == 0
    remove_domain(name)


def test_restore_test_records_its_result_on_the_point(world: World) -> None:
    name = f"{PREFIX}-rtest-1"
    r = world.cli(
        "restore", world.src, "--point", world.point, "--as-new", name, "--test", "--json"
    )
    assert r.code in (0, 3), r.stdout + r.stderr
    doc = r.json()
    test = doc["result"]["test"]
    assert test["ok"] and test["expected"] == ["/data", "/data2"] and test["missing"] == []
    assert 0 < test["boot_seconds"] < 120
    assert test["summary"].startswith("restore-tested at ") and "booted in" in test["summary"]
    assert all(n["link_down"] for n in doc["result"]["nics"])  # isolated
    recorded = world.services.restores.last_test(world.point)
    assert recorded is not None and recorded.ok and recorded.job_id == doc["id"]
    # the test VM and its files are gone
    assert not defined(name)
    assert not [p for p in own_files() if name in p]


def test_replace_from_running_then_in_place_byte_identical(world: World) -> None:
    vm = world.src
    uuid = uuid_of(vm)
    paths_before = disk_paths(inactive_xml(vm))
    macs_before = [m.get("address") for m in inactive_xml(vm).findall("devices/interface/mac")]
    assert state(vm) == libvirt.VIR_DOMAIN_RUNNING
    # 1. from running, with --start: downtime is shutdown → agent answers again
    r = world.cli("restore", vm, "--point", world.point, "--replace", "--start", "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    doc = r.json()
    result = doc["result"]
    assert result["vm_uuid"] == uuid and result["started"] and result["previous"] == []
    assert result["downtime_seconds"] is not None and result["boot_seconds"] is not None
    print(
        f"\nreplace: downtime {result['downtime_seconds']:.1f}s, "
        f"boot {result['boot_seconds']:.1f}s, "
        + ", ".join(
            f"{d['target']} {d['bytes_written'] / max(d['seconds'], 1e-6) / 1e6:.0f} MB/s"
            for d in result["disks"]
        )
    )
    assert any("shutdown through the guest agent" in line for line in doc["log"])
    assert any("checkpoint chain is reset" in line for line in doc["log"])
    assert uuid_of(vm) == uuid and disk_paths(inactive_xml(vm)) == paths_before
    assert [m.get("address") for m in inactive_xml(vm).findall("devices/interface/mac")] == (
        macs_before
    )
    assert guest_md5(vm, "/data/before.bin") == world.md5["/data/before.bin"]
    assert "after.bin" not in guest(vm, "ls /data").split()
    # still registered; the next backup reads everything (chain reset), deduplicated
    r = world.cli("backup", vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    point = r.json()[0]["point"]
    assert not any(d["incremental"] for d in point["disks"]), point
    assert all("chain broken" in d["reason"] for d in point["disks"])
    assert point["bytes_new"] < 8 << 20, point  # the restored data is in the vault already
    # 2. again, keeping the previous images and without starting: compare in place
    r = world.cli("restore", vm, "--point", world.point, "--replace", "--keep-previous", "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    result = r.json()["result"]
    assert state(vm) == libvirt.VIR_DOMAIN_SHUTOFF and not result["started"]
    previous = [Path(p) for p in result["previous"]]
    assert sorted(p.name for p in previous) == sorted(
        f"{Path(p).name}.pre-restore-{r.json()['id']}" for p in paths_before.values()
    )
    for target, path in paths_before.items():
        raw = raw_copy(Path(path), ROOT / "check" / f"{Path(path).name}.raw")
        assert_matches_point(world.services, world.point, target, raw)
        fsck_clean(raw)
        raw.unlink()
    for p in previous:
        p.unlink()
    start_and_wait(vm)


def test_replace_with_a_corrupt_chunk_leaves_the_vm_untouched(
    world: World, cli: CliRunner, home: Path
) -> None:
    vm = world.src
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("discover").code in (0, 3)
    assert cli("register", vm).code in (0, 3)
    r = cli("backup", vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    point = r.json()[0]["point"]["id"]
    chunks = [c for c in (home / "vaults" / "main" / "chunks").rglob("*") if c.is_file()]
    victim = max(chunks, key=lambda c: c.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    xml_before = inactive_text(vm)
    vm_dir = Path(disk_paths(inactive_xml(vm))["vda"]).parent
    files_before = sorted(p.name for p in vm_dir.iterdir())
    md5_before = guest_md5(vm, "/data/before.bin")
    r = cli("restore", vm, "--point", point, "--replace", "--start", "--json")
    assert r.code == 1, r.stdout + r.stderr
    doc = r.json()
    # no other vault holds the point: it cannot be healed, so it is marked damaged (healing)
    assert doc["state"] == "failed" and doc["error_code"] == "POINT_DAMAGED", doc
    assert "corrupt" in doc["message"], doc
    assert any("nothing was changed" in line for line in doc["log"])
    shown = cli("points", "show", point, "--json").json()
    assert shown["damaged"] and "main" in shown["damaged"], shown
    assert state(vm) == libvirt.VIR_DOMAIN_RUNNING
    assert inactive_text(vm) == xml_before
    assert sorted(p.name for p in vm_dir.iterdir()) == files_before  # no staging left
    assert guest_md5(vm, "/data/before.bin") == md5_before


class FailingDefine(LibvirtRestoreDriver):
    """libvirt refuses the restored definition once (the rollback's define works)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def define(self, uri: str, xml: str) -> str:
        if not self.failed:
            self.failed = True
            raise RestoreDefineFailed("injected by the test", vm="?")
        return super().define(uri, xml)


def test_replace_rolls_back_when_the_define_fails(world: World) -> None:
    vm = world.src
    assert state(vm) == libvirt.VIR_DOMAIN_RUNNING
    xml_before = inactive_text(vm)
    vm_dir = Path(disk_paths(inactive_xml(vm))["vda"]).parent
    files_before = sorted(p.name for p in vm_dir.iterdir())
    md5_before = guest_md5(vm, "/data/before.bin")
    services = bootstrap(lab_settings(world.home))
    services.restores.driver = FailingDefine()
    outcome = services.restores.restore(vm, world.point, RestoreMode.REPLACE)
    assert outcome.job.error_code == "RESTORE_DEFINE_FAILED"
    _, log = services.jobs.show(outcome.job.id)
    assert any("is back as it was (running)" in line for line in log), log
    assert state(vm) == libvirt.VIR_DOMAIN_RUNNING
    assert inactive_text(vm) == xml_before
    assert sorted(p.name for p in vm_dir.iterdir()) == files_before
    LibvirtRestoreDriver().wait_for_agent(URI, uuid_of(vm), 120)
    assert guest_md5(vm, "/data/before.bin") == md5_before


def test_point_whose_network_is_gone_restores_with_the_nic_link_down(world: World) -> None:
    with libvirt_conn() as conn:
        net = conn.networkLookupByName(GONE)
        net.destroy()
        net.undefine()
    name = f"{PREFIX}-restored-2"
    world.made.append(name)
    r = world.cli(
        "restore", world.src, "--point", world.point, "--as-new", name,
        "--dir", str(ROOT / "gone"), "--start", "--json",
    )  # fmt: skip
    assert r.code == 3, r.stdout + r.stderr
    doc = r.json()
    assert doc["state"] == "completed-with-warnings"
    assert len(doc["warnings"]) == 1 and f"network '{GONE}' does not exist" in doc["warnings"][0]
    assert doc["result"]["started"] and doc["result"]["boot_seconds"] is not None
    root = inactive_xml(name)
    ok, gone = root.findall("devices/interface")
    assert ok.get("type") == "network" and ok.find("link") is None
    assert gone.get("type") == "ethernet" and gone.find("source") is None
    assert gone.find("link").get("state") == "down"  # type: ignore[union-attr]
    record = root.find(f"metadata/{{{RESTORE_NS}}}restore/{{{RESTORE_NS}}}disconnected")
    assert record is not None and record.get("source") == GONE
    assert state(name) == libvirt.VIR_DOMAIN_RUNNING
    assert guest_md5(name, "/data/before.bin") == world.md5["/data/before.bin"]
    remove_domain(name)


def test_point_whose_data_disk_does_not_mount_fails_the_restore_test(world: World) -> None:
    """Last: it wipes the file system of the source VM's /data."""
    vm = world.src
    guest(vm, "dd if=/dev/zero of=/dev/vda bs=1M count=4 conv=fsync 2>/dev/null; sync")
    r = world.cli("backup", vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    point = r.json()[0]["point"]["id"]
    services = bootstrap(lab_settings(world.home))
    services.restores.mount_wait = 3
    outcome = services.restores.restore_test(vm, point)
    job = outcome.job
    assert job.state.value == "failed" and job.error_code == "RESTORE_TEST_FAILED"
    assert "/data" in (job.message or "") and "/data2" not in (job.message or "")
    result = services.restores.last_test(point)
    assert result is not None and not result.ok and result.missing == ["/data"]
    assert result.boot_seconds is not None and result.mounted == ["/data2"]
    _, log = services.jobs.show(job.id)
    assert any("cannot mount /dev/vda" in line for line in log)  # the console tail
    with libvirt_conn() as conn:
        names = [str(d.name()) for d in conn.listAllDomains(0)]
    assert not [n for n in names if n.startswith(f"{vm}-rtest-")]
    assert not [p for p in own_files() if "-rtest-" in p]
