"""Reading a domain XML (pure parsing): facts, the one disk parser, the agent channel rule."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmvault.domain.vm import PowerState
from vmvault.hypervisor.lab.xml import DomainSpec, FileDisk, IscsiLun, file_disks, iscsi_iqns
from vmvault.hypervisor.lab.xml import domain_xml as lab_domain_xml
from vmvault.hypervisor.libvirt.domxml import (
    AGENT_CHANNEL,
    BackingImage,
    NetworkSource,
    disk_elements,
    facts_from_xml,
    has_agent_channel,
    parse_disks,
)
from vmvault.hypervisor.libvirt.restore_xml import inspect_xml

XML = """
<domain type='qemu'>
  <name>web-1</name>
  <uuid>0b5c9f3e-1111-2222-3333-444455556666</uuid>
  <metadata><vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">shop</vmvault:group></metadata>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/v/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='/v/b.raw'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='block' device='lun'><driver name='qemu' type='raw'/>
      <source dev='/dev/loop3'/><target dev='sda' bus='scsi'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='nbd' name='exp'><host transport='unix' socket='/s'/></source>
      <target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='sdb' bus='sata'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/>
      <model type='virtio'/></interface>
    <interface type='bridge'><mac address='52:54:00:aa:bb:cd'/><source bridge='br0'/></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
"""


def test_facts_from_xml() -> None:
    f = facts_from_xml(XML, uri="qemu:///system", hostname="h1", state=1)
    assert f.name == "web-1" and f.uuid.startswith("0b5c9f3e") and f.group == "shop"
    assert f.power_state is PowerState.RUNNING and f.agent_channel
    by = {d.target: d for d in f.disks}
    assert by["vda"].format == "qcow2" and not by["vda"].excluded
    assert by["vdb"].format == "raw" and not by["vdb"].excluded
    assert by["sda"].excluded and by["sda"].device == "lun" and by["sda"].path == "/dev/loop3"
    assert by["vdc"].excluded and by["vdc"].path == "nbd://exp"
    assert by["sdb"].excluded and by["sdb"].readonly
    assert [(n.type, n.source) for n in f.nics] == [("network", "default"), ("bridge", "br0")]


def test_group_defaults_to_hostname_and_fingerprint_tracks_config() -> None:
    plain = XML.replace("<vmvault:group", "<other:x").replace("</vmvault:group>", "</other:x>")
    plain = plain.replace("xmlns:vmvault=", "xmlns:other=")
    a = facts_from_xml(plain, uri="u", hostname="h9", state=5)
    assert a.group == "h9" and a.power_state is PowerState.SHUT_OFF
    b = facts_from_xml(plain.replace("/v/b.raw", "/v/c.raw"), uri="u", hostname="h9", state=5)
    c = facts_from_xml(plain, uri="u", hostname="h9", state=1)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint  # power state is tracked on its own


def test_no_agent_channel() -> None:
    xml = XML.replace("org.qemu.guest_agent.0", "org.example.other")
    assert not facts_from_xml(xml, uri="u", hostname="h", state=1).agent_channel


def test_fingerprint_is_the_one_discovery_recorded_before() -> None:
    # the single disk parser must not make every known VM look "changed" after an upgrade
    f = facts_from_xml(XML, uri="u", hostname="h", state=1)
    assert f.fingerprint == "82f2eaa3226d9c918eaed5a0e62d0726c7608896ae55570c22e958f2dabde1dd"


# --- the one disk parser: golden cases -----------------------------------------------------------

DISKS_XML = """
<domain type='kvm'><name>d</name><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2' discard='unmap'/>
    <source file='/v/a.qcow2' index='3'/>
    <backingStore type='file' index='4'>
      <format type='qcow2'/><source file='/v/base.qcow2'/>
      <backingStore type='block' index='5'>
        <format type='raw'/><source dev='/dev/vg/golden'/><backingStore/>
      </backingStore>
    </backingStore>
    <target dev='vda' bus='virtio'/><alias name='virtio-disk0'/>
  </disk>
  <disk type='file' device='disk'>
    <source file='/v/nodriver.img'/><target dev='vdb' bus='virtio'/><shareable/>
  </disk>
  <disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>
    <source dev='/dev/vg/lv0'/><target dev='vdc' bus='virtio'/></disk>
  <disk type='block' device='lun' sgio='unfiltered'><driver name='qemu' type='raw'/>
    <source dev='/dev/sdx'/><target dev='sda' bus='scsi'/></disk>
  <disk type='network' device='disk'><driver name='qemu' type='raw'/>
    <source protocol='rbd' name='pool/image'>
      <host name='mon1' port='6789'/><host name='mon2'/></source>
    <target dev='vdd' bus='virtio'/></disk>
  <disk type='network' device='disk'><driver name='qemu' type='raw'/>
    <source protocol='nbd' name='exp'><host transport='unix' socket='/run/nbd.sock'/></source>
    <target dev='vde' bus='virtio'/></disk>
  <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
    <source pool='default' volume='v.qcow2'/><target dev='vdf' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
    <target dev='sdb' bus='sata'/><readonly/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
    <source file='/iso/debian.iso'/><target dev='sdc' bus='sata'/><readonly/></disk>
  <disk type='file' device='floppy'><source file='/f.img'/><target dev='fda' bus='fdc'/></disk>
</devices></domain>
"""


def test_parse_disks_reads_every_kind_in_document_order() -> None:
    disks = parse_disks(DISKS_XML)
    assert [d.target for d in disks] == [
        "vda", "vdb", "vdc", "sda", "vdd", "vde", "vdf", "sdb", "sdc", "fda",
    ]  # fmt: skip
    by = {d.target: d for d in disks}
    assert (by["vda"].type, by["vda"].device, by["vda"].format, by["vda"].bus) == (
        "file", "disk", "qcow2", "virtio",
    )  # fmt: skip
    assert by["vda"].file == by["vda"].path == by["vda"].local_path == "/v/a.qcow2"
    # no <driver>: the XML's silence is kept, QEMU's reading is raw
    assert by["vdb"].format is None and by["vdb"].driver_format == "raw"
    assert by["vdb"].shareable and not by["vdb"].readonly
    assert by["vdc"].type == "block" and by["vdc"].dev == by["vdc"].local_path == "/dev/vg/lv0"
    assert by["sda"].device == "lun" and by["sda"].local_path == "/dev/sdx"


def test_parse_disks_network_volume_and_empty_drives() -> None:
    by = {d.target: d for d in parse_disks(DISKS_XML)}
    rbd = by["vdd"]
    assert rbd.network == NetworkSource("rbd", "pool/image", ("mon1:6789", "mon2"))
    assert rbd.path == "rbd://pool/image" and rbd.local_path is None
    assert by["vde"].network == NetworkSource("nbd", "exp", ("/run/nbd.sock",))
    vol = by["vdf"]
    assert (vol.pool, vol.volume, vol.path, vol.local_path) == (
        "default", "v.qcow2", "default/v.qcow2", None,
    )  # fmt: skip
    empty = by["sdb"]
    assert empty.device == "cdrom" and empty.readonly and empty.path is None
    assert by["sdc"].path == "/iso/debian.iso" and by["sdc"].readonly
    assert by["fda"].device == "floppy"


def test_parse_disks_backing_chain() -> None:
    by = {d.target: d for d in parse_disks(DISKS_XML)}
    assert by["vda"].backing == (
        BackingImage("file", "qcow2", "/v/base.qcow2"),
        BackingImage("block", "raw", "/dev/vg/golden"),
    )
    assert by["vdb"].backing == ()


def test_parse_disks_accepts_text_or_a_parsed_root() -> None:
    assert parse_disks(ET.fromstring(DISKS_XML)) == parse_disks(DISKS_XML)
    assert parse_disks("<domain><name>x</name></domain>") == []


def test_disk_without_target() -> None:
    [d] = parse_disks(
        "<domain><devices><disk type='file'><source file='/x'/></disk></devices></domain>"
    )
    assert d.target == "" and d.as_disk().target == "?" and d.as_xml_disk().target == "?"


def test_the_views_of_a_disk_agree() -> None:
    for d in parse_disks(DISKS_XML):
        inv, xml = d.as_disk(), d.as_xml_disk()
        assert (inv.target, inv.type, inv.device, inv.format, inv.path, inv.readonly) == (
            xml.target, xml.type, xml.device, xml.format, xml.path, xml.readonly,
        )  # fmt: skip
    facts = facts_from_xml(DISKS_XML, uri="u", hostname="h", state=5)
    kept = [d.target for d in facts.disks if not d.excluded]
    # vdb: a disk without <driver type> is not backed up (libvirt writes type='raw' into the
    # definition itself, so only a hand-written XML has none)
    assert kept == ["vda", "vdc", "vdf"]


def test_disk_elements_pair_each_target_with_its_element() -> None:
    pairs = list(disk_elements(DISKS_XML))
    assert [t for t, _ in pairs] == [d.target for d in parse_disks(DISKS_XML)]
    assert all(el.tag == "disk" for _, el in pairs)


# --- the lab's domains (as written, and as a running libvirt gives them back) --------------------


def lab_spec(variant: str) -> DomainSpec:
    vm_dir = Path(f"/lab/vms/x-{variant}-1")
    second = "data2.raw" if variant == "raw-disk" else "data2.qcow2"
    luns = [IscsiLun("sda", "iqn.2026-01.dev.vmvault:x", 1, "127.0.0.1", 3260)]
    return DomainSpec(
        name=f"x-{variant}-1",
        uuid="0b5c9f3e-1111-2222-3333-444455556666",
        variant=variant,
        vm_dir=vm_dir,
        kernel=vm_dir / "vmlinuz",
        initrd=vm_dir / "initrd.img",
        console_log=vm_dir / "console.log",
        domain_type="qemu",
        agent=variant != "no-agent",
        disks=[
            FileDisk("vda", vm_dir / "data.qcow2", "qcow2"),
            FileDisk("vdb", vm_dir / second, second.rsplit(".", 1)[1]),
        ],
        luns=luns if variant == "passthrough" else [],
    )


@pytest.mark.parametrize("variant", ["standard", "no-agent", "raw-disk", "passthrough"])
def test_lab_variants(variant: str) -> None:
    xml = lab_domain_xml(lab_spec(variant))
    facts = facts_from_xml(xml, uri="u", hostname="h", state=1)
    kept = [(d.target, d.format) for d in facts.disks if not d.excluded]
    vdb = "raw" if variant == "raw-disk" else "qcow2"
    assert kept == [("vda", "qcow2"), ("vdb", vdb)]
    assert facts.agent_channel is (variant != "no-agent")
    assert file_disks(xml) == [Path(f"/lab/vms/x-{variant}-1/{n}") for n in (
        "data.qcow2", "data2.raw" if variant == "raw-disk" else "data2.qcow2",
    )]  # fmt: skip
    if variant == "passthrough":
        [lun] = [d for d in parse_disks(xml) if d.device == "lun"]
        assert lun.network == NetworkSource(
            "iscsi", "iqn.2026-01.dev.vmvault:x/1", ("127.0.0.1:3260",)
        )
        assert [d.reason for d in facts.disks if d.excluded] == ["pass-through LUN (device='lun')"]
        assert iscsi_iqns(xml) == ["iqn.2026-01.dev.vmvault:x"]


LIVE_LAB_DEVICES = """
<domain type='qemu' id='10'><name>bk-standard-1</name><devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/vmvault/lab-bk/vms/bk-standard-1/data.qcow2' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </disk>
    <channel type='unix'>
      <source mode='bind'
        path='/var/lib/libvirt/qemu/channel/target/domain-10-bk-standard-1/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
</devices></domain>
"""


def test_live_xml_of_a_running_lab_vm() -> None:
    [d] = parse_disks(LIVE_LAB_DEVICES)
    assert d.local_path == "/var/lib/vmvault/lab-bk/vms/bk-standard-1/data.qcow2"
    assert d.backing == () and d.driver_format == "qcow2"
    assert has_agent_channel(LIVE_LAB_DEVICES)


# --- the guest agent channel: libvirt's rule ------------------------------------------------------


def channel(chardev: str | None, target_type: str | None, name: str) -> str:
    typ = f" type='{chardev}'" if chardev else ""
    ttyp = f" type='{target_type}'" if target_type else ""
    return (
        f"<domain><devices><channel{typ}><target{ttyp} name='{name}'/></channel></devices></domain>"
    )


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (channel("unix", "virtio", AGENT_CHANNEL), True),  # what libvirt's docs give
        # the two old rules disagreed here: the inventory counted any target of that name
        (channel("unix", "xen", AGENT_CHANNEL), False),  # libvirt skips non-virtio targets
        (channel("unix", None, AGENT_CHANNEL), False),
        # libvirt connects to the agent over a unix socket only ("unable to handle agent type")
        (channel("pty", "virtio", AGENT_CHANNEL), False),
        (channel("unix", "virtio", "org.qemu.guest_agent.1"), False),
        (channel("spicevmc", "virtio", "com.redhat.spice.0"), False),
        ("<domain><devices/></domain>", False),
        ("<domain", False),  # not XML: no channel
    ],
)
def test_has_agent_channel(xml: str, expected: bool) -> None:
    assert has_agent_channel(xml) is expected
    if expected or xml.startswith("<domain>"):
        assert has_agent_channel(ET.fromstring(xml)) is expected


def test_inventory_restore_and_backup_share_the_channel_rule() -> None:
    lenient = channel("unix", "xen", AGENT_CHANNEL)
    facts = facts_from_xml(
        lenient.replace("<devices>", "<name>n</name><uuid>u</uuid><devices>"),
        uri="u", hostname="h", state=1,
    )  # fmt: skip
    assert not facts.agent_channel
    assert not inspect_xml(lenient).agent_channel
