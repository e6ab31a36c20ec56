"""Restore plans, the rules behind them and the XML they render to (no hypervisor)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.domain.errors import InvalidInput, RestoreUnsupportedDisk
from vmvault.domain.recovery_point import PointDisk
from vmvault.domain.restore import (
    DomainShape,
    FileKind,
    RestoreMode,
    XmlDisk,
    check_vm_name,
    new_mac,
    plan_new,
    plan_replace,
    pre_restore_path,
    renamed_file,
    space_by_device,
    staging_path,
)
from vmvault.domain.restore_test import (
    RestoreTestResult,
    expected_mounts,
    fs_summary,
    judge_test,
)
from vmvault.hypervisor.libvirt.restore_xml import RESTORE_NS, inspect_xml, render_xml

XML = """
<domain type='qemu'>
  <name>web-1</name>
  <uuid>0b5c9f3e-1111-2222-3333-444455556666</uuid>
  <metadata>
    <lab:lab xmlns:lab="https://vmvault.dev/xmlns/lab/1" variant="standard" dir="/lab/web-1"/>
    <vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">shop</vmvault:group>
  </metadata>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>
    <kernel>/lab/web-1/vmlinuz</kernel>
    <initrd>/lab/web-1/initrd.img</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/v/web-1/data.qcow2'/><backingStore/><target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/>
      <source dev='/dev/vg/web-1-data2'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='lun'><driver name='qemu' type='raw'/>
      <source protocol='iscsi' name='iqn.x:web-1/1'><host name='127.0.0.1' port='3260'/></source>
      <target dev='sda' bus='scsi'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='/iso/debian.iso'/><target dev='sdb' bus='sata'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/>
      <model type='virtio'/><address type='pci' domain='0x0000' bus='0x01' slot='0x00'/></interface>
    <interface type='bridge'><mac address='52:54:00:aa:bb:cd'/><source bridge='br-gone'/>
      <virtualport type='openvswitch'/><model type='virtio'/></interface>
    <hostdev mode='subsystem' type='pci' managed='yes'><source>
      <address domain='0x0000' bus='0x05' slot='0x00' function='0x0'/></source></hostdev>
    <serial type='pty'><log file='/lab/web-1/console.log' append='off'/><target port='0'/></serial>
    <console type='pty'><log file='/lab/web-1/console.log' append='off'/>
      <target type='serial' port='0'/></console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web-1.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices>
</domain>
"""

DISKS = [
    PointDisk("vda", 1 << 30, "qcow2"),
    PointDisk("vdb", 256 << 20, "raw"),
    PointDisk("sda", 0, excluded=True, reason="pass-through LUN (device='lun')"),
]


def counter_rand() -> object:
    numbers = itertools.count(1)
    return lambda n: next(numbers).to_bytes(n, "big")


def new_plan(mode: RestoreMode = RestoreMode.AS_NEW, directory: str = "/srv/restores") -> object:
    return plan_new(
        mode,
        inspect_xml(XML),
        DISKS,
        name="web-2",
        uuid="11111111-2222-3333-4444-555555555555",
        host_uri="qemu:///system",
        directory=Path(directory),
        default_dir=Path("/var/lib/libvirt/images"),
        nic_problems={1: "bridge 'br-gone' does not exist on qemu:///system"},
        taken_macs={"52:54:00:00:00:01"},
        rand=counter_rand(),  # type: ignore[arg-type]
    )


# --- reading the XML ---------------------------------------------------------------------------


def test_inspect_finds_disks_nics_and_files_of_the_vm() -> None:
    shape = inspect_xml(XML)
    assert shape.name == "web-1" and shape.agent_channel and shape.tpm_emulator
    assert [(d.target, d.type, d.device) for d in shape.disks] == [
        ("vda", "file", "disk"),
        ("vdb", "block", "disk"),
        ("sda", "network", "lun"),
        ("sdb", "file", "cdrom"),
    ]
    assert [(n.index, n.type, n.source) for n in shape.nics] == [
        (0, "network", "default"),
        (1, "bridge", "br-gone"),
    ]
    kinds = {(f.kind, f.path) for f in shape.files}
    assert (FileKind.LOG, "/lab/web-1/console.log") in kinds
    assert (FileKind.NVRAM, "/var/lib/libvirt/qemu/nvram/web-1_VARS.fd") in kinds
    assert any(f.kind is FileKind.CHANNEL for f in shape.files)
    assert len([f for f in shape.files if f.kind is FileKind.LOG]) == 1  # one file, two users
    assert shape.hostdevs == 1


# --- planning a new VM -------------------------------------------------------------------------


def test_new_vm_plan_paths_links_files_and_leftouts() -> None:
    plan = new_plan()
    assert [(d.target, d.fmt, str(d.path)) for d in plan.disks] == [
        ("vda", "qcow2", "/srv/restores/web-2-vda.qcow2"),
        ("vdb", "raw", "/srv/restores/web-2-vdb.raw"),
    ]
    vda = plan.disks[0]
    assert vda.staging == Path("/srv/restores/.web-2-vda.qcow2.vmvault-staging")
    assert vda.link == Path("/var/lib/libvirt/images/web-2-vda.qcow2")
    assert vda.previous is None
    assert plan.files == {
        "/lab/web-1/console.log": "/srv/restores/web-2-console.log",
        "/var/lib/libvirt/qemu/nvram/web-1_VARS.fd": "/srv/restores/web-2_VARS.fd",
    }
    assert plan.drop_disks == {"sda": "pass-through LUN (device='lun')"}  # the point's reason
    assert plan.drop_hostdevs and plan.drop_channel_paths
    text = "\n".join(plan.warnings)
    assert "sda" in text and "host device" in text and "TPM" in text and "br-gone" in text
    assert any("sdb" in n and "shared" in n for n in plan.notes)  # the CD-ROM stays


def test_new_vm_gets_new_distinct_macs_and_nic_decisions() -> None:
    plan = new_plan()
    macs = [n.mac for n in plan.nics]
    # 00:00:01 is taken on the host: skipped
    assert macs == ["52:54:00:00:00:02", "52:54:00:00:00:03"]
    assert [n.original_mac for n in plan.nics] == ["52:54:00:aa:bb:cc", "52:54:00:aa:bb:cd"]
    ok, gone = plan.nics
    assert ok.connected and not ok.link_down and ok.problem is None
    assert not gone.connected and gone.link_down and "br-gone" in (gone.problem or "")


def test_no_links_in_the_default_dir_itself_and_a_test_isolates_every_nic() -> None:
    plan = new_plan(directory="/var/lib/libvirt/images")
    assert all(d.link is None for d in plan.disks)
    test = new_plan(RestoreMode.TEST, directory="/srv/restores")
    assert all(d.link is None for d in test.disks)  # a test VM leaves nothing behind
    assert all(n.link_down for n in test.nics)
    assert test.nics[0].connected  # still attached: only its link is down


def test_replace_keeps_identity_and_targets_the_current_files() -> None:
    current = DomainShape(
        name="web-1-renamed",
        uuid="0b5c9f3e-1111-2222-3333-444455556666",
        disks=[
            XmlDisk("vda", "file", "disk", "qcow2", "/moved/web-1/data.qcow2"),
            XmlDisk("vdc", "file", "disk", "qcow2", "/moved/web-1/new.qcow2"),
        ],
        nics=[],
        files=[],
    )
    disks = [PointDisk("vda", 1 << 30, "qcow2"), PointDisk("vdb", 1 << 20, "raw")]
    shape_vdb_file = inspect_xml(
        XML.replace(
            "<source dev='/dev/vg/web-1-data2'/>", "<source file='/v/web-1/data2.raw'/>"
        ).replace("type='block' device='disk'", "type='file' device='disk'")
    )
    plan = plan_replace(
        shape_vdb_file, disks, current=current, host_uri="qemu:///system", nic_problems={}
    )
    assert plan.keep_identity and plan.name == "web-1-renamed" and plan.uuid == current.uuid
    vda, vdb = plan.disks
    assert vda.path == vda.previous == Path("/moved/web-1/data.qcow2")  # where it is now
    assert vdb.path == Path("/v/web-1/data2.raw") and vdb.previous is None  # where it was
    assert any("vdc" in w and "left untouched" in w for w in plan.warnings)
    assert [n.mac for n in plan.nics] == ["52:54:00:aa:bb:cc", "52:54:00:aa:bb:cd"]
    assert pre_restore_path(vda.path, "17") == Path("/moved/web-1/data.qcow2.pre-restore-17")


def test_replace_refuses_a_block_disk() -> None:
    current = inspect_xml(XML)
    with pytest.raises(RestoreUnsupportedDisk) as exc:
        plan_replace(inspect_xml(XML), DISKS, current=current, host_uri="u", nic_problems={})
    assert exc.value.code == "RESTORE_UNSUPPORTED_DISK" and "vdb" in exc.value.text


# --- rendering ---------------------------------------------------------------------------------


def test_render_new_vm() -> None:
    plan = new_plan()
    root = ET.fromstring(render_xml(XML, plan))
    assert root.findtext("name") == "web-2"
    assert root.findtext("uuid") == "11111111-2222-3333-4444-555555555555"
    disks = {d.find("target").get("dev"): d for d in root.findall("devices/disk")}  # type: ignore[union-attr]
    assert set(disks) == {"vda", "vdb", "sdb"}  # the LUN is gone, the CD-ROM stays
    vda, vdb = disks["vda"], disks["vdb"]
    assert vda.find("source").get("file") == "/srv/restores/web-2-vda.qcow2"  # type: ignore[union-attr]
    assert vda.find("backingStore") is None
    assert vda.find("driver").get("discard") == "unmap"  # type: ignore[union-attr]
    assert vda.find("address") is not None  # same PCI layout
    assert vdb.get("type") == "file"  # was a block device: now an image file
    assert vdb.find("source").attrib == {"file": "/srv/restores/web-2-vdb.raw"}  # type: ignore[union-attr]
    assert vdb.find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert disks["sdb"].find("source").get("file") == "/iso/debian.iso"  # type: ignore[union-attr]
    assert root.findtext("os/kernel") == "/lab/web-1/vmlinuz"  # shared, read-only
    assert root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE.fd"
    assert root.findtext("os/nvram") == "/srv/restores/web-2_VARS.fd"
    logs = [el.get("file") for el in root.iter("log")]
    assert logs == ["/srv/restores/web-2-console.log"] * 2
    assert root.find("devices/hostdev") is None
    channel = root.find("devices/channel/source")
    assert channel is not None and "path" not in channel.attrib
    nics = root.findall("devices/interface")
    assert nics[0].get("type") == "network" and nics[0].find("link") is None
    assert nics[0].find("mac").get("address") == "52:54:00:00:00:02"  # type: ignore[union-attr]
    gone = nics[1]
    assert gone.get("type") == "ethernet" and gone.find("source") is None
    assert gone.find("virtualport") is None and gone.find("model") is not None
    assert gone.find("link").get("state") == "down"  # type: ignore[union-attr]
    record = root.find(f"metadata/{{{RESTORE_NS}}}restore/{{{RESTORE_NS}}}disconnected")
    assert record is not None and record.get("source") == "br-gone"
    # the other metadata keeps its namespaces (discovery reads the group from it)
    assert root.findtext("metadata/{https://vmvault.dev/xmlns/1}group") == "shop"
    assert "web-1/data.qcow2" not in render_xml(XML, plan)  # nothing of the original's disks


def test_render_test_vm_sets_every_link_down() -> None:
    root = ET.fromstring(render_xml(XML, new_plan(RestoreMode.TEST)))
    states = [n.find("link").get("state") for n in root.findall("devices/interface")]  # type: ignore[union-attr]
    assert states == ["down", "down"]


def test_render_is_stable_for_a_minimal_domain() -> None:
    xml = "<domain type='kvm'><name>a</name><uuid>u</uuid><devices/></domain>"
    shape = inspect_xml(xml)
    plan = plan_new(
        RestoreMode.AS_NEW,
        shape,
        [],
        name="b",
        uuid="v",
        host_uri="qemu:///system",
        directory=Path("/d"),
        default_dir=Path("/d"),
        nic_problems={},
    )
    root = ET.fromstring(render_xml(xml, plan))
    assert root.findtext("name") == "b" and root.findtext("uuid") == "v"
    assert plan.warnings == [] and plan.disks == []


# --- names, paths and space --------------------------------------------------------------------


def test_names_and_paths() -> None:
    assert check_vm_name("web-2.restored") == "web-2.restored"
    for bad in ("", "-x", "a/b", "x" * 64, "with space"):
        with pytest.raises(InvalidInput):
            check_vm_name(bad)
    assert staging_path(Path("/d/a.qcow2")) == Path("/d/.a.qcow2.vmvault-staging")
    assert renamed_file("/n/web-1_VARS.fd", "web-1", "w2", Path("/x")) == Path("/x/w2_VARS.fd")
    assert renamed_file("/l/console.log", "web-1", "w2", Path("/x")) == Path("/x/w2-console.log")
    assert space_by_device([(1, 10), (2, 5), (1, 7)]) == {1: 17, 2: 5}


def test_new_mac_avoids_taken_ones() -> None:
    rand = counter_rand()
    taken = {"52:54:00:00:00:01", "52:54:00:00:00:02"}
    assert new_mac(taken, rand) == "52:54:00:00:00:03"  # type: ignore[arg-type]
    mac = new_mac(set())
    assert mac.startswith("52:54:00:") and len(mac) == 17


# --- the guest's file systems and the restore test ---------------------------------------------

FSINFO = [
    {
        "name": "vdb",
        "mountpoint": "/data2",
        "type": "ext4",
        "disk": [{"bus-type": "virtio", "dev": "/dev/vdb"}],
        "total-bytes": 1,
    },
    {"name": "vda", "mountpoint": "/data", "type": "ext4", "disk": [{"dev": "/dev/vda"}]},
    {"name": "sda", "mountpoint": "/lun", "type": "ext4", "disk": [{"dev": "/dev/sda"}]},
    {"name": "weird"},  # no mount point: ignored
]


def test_fs_summary_and_expected_mounts() -> None:
    recorded = fs_summary(FSINFO)
    assert recorded is not None
    assert [f["mountpoint"] for f in recorded] == ["/data", "/data2", "/lun"]
    assert recorded[1] == {
        "mountpoint": "/data2",
        "type": "ext4",
        "name": "vdb",
        "devices": ["/dev/vdb"],
    }
    assert fs_summary(None) is None
    # a file system on a left-out disk cannot come back
    assert expected_mounts(recorded, {"sda"}) == ["/data", "/data2"]
    assert expected_mounts(recorded, set()) == ["/data", "/data2", "/lun"]
    mounted, missing = judge_test(["/data", "/data2"], FSINFO[:1])
    assert missing == ["/data"] and mounted == ["/data2"]
    assert judge_test(["/data"], None) == ([], ["/data"])


def test_restore_test_result_round_trip_and_summary() -> None:
    at = datetime(2026, 11, 22, 4, 5, 6, tzinfo=UTC)
    ok = RestoreTestResult(at, True, 4.24, 7, ["/data", "/data2"], ["/data", "/data2"])
    assert (
        ok.summary
        == "restore-tested at 2026-11-22 04:05:06 UTC, booted in 4.2 s: passed (/data, /data2)"
    )
    again = RestoreTestResult.from_json(ok.to_json())
    assert again == ok
    bad = RestoreTestResult(at, False, 3.0, 8, ["/data"], [], ["/data"], "not mounted: /data")
    assert "FAILED (not mounted: /data)" in bad.summary
    assert RestoreTestResult.from_json(bad.to_json()) == bad
