"""Reading domain XML into facts (pure parsing)."""

from __future__ import annotations

from vmvault.domain.vm import PowerState
from vmvault.hypervisor.libvirt.domxml import facts_from_xml

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
