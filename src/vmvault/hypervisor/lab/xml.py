"""Domain XML of lab VMs: how one is written, and how a lab domain is recognised.

A lab domain carries two metadata elements:

* ``<lab:lab xmlns:lab="https://vmvault.dev/xmlns/lab/1" variant="writer" dir="..."/>``
  marks it as the lab's (``lab status``/``lab down`` act on exactly these domains) and names
  its variant and its directory;
* ``<vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">lab</vmvault:group>`` is the
  VM group that discovery reads (the same element any operator may set on their own VMs).

The guest boots the lab kernel directly (no bootloader); the variant reaches the guest as the
kernel parameter ``vmvault.variant=...``. Its serial console is logged by virtlogd to a file
of its own (two domains sharing a log file cannot both start).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from vmvault.hypervisor.libvirt.domxml import AGENT_CHANNEL, parse_disks

LAB_NS = "https://vmvault.dev/xmlns/lab/1"
GROUP_NS = "https://vmvault.dev/xmlns/1"
LAB_GROUP = "lab"


@dataclass(frozen=True)
class FileDisk:
    """A file-backed virtio disk."""

    target: str  # vda, vdb
    path: Path
    fmt: str  # qcow2 | raw


@dataclass(frozen=True)
class IscsiLun:
    """A SCSI LUN passed through to the guest (``device='lun'``), served over iSCSI."""

    target: str  # sda
    iqn: str
    lun: int
    host: str
    port: int


@dataclass(frozen=True)
class DomainSpec:
    """Everything that differs between lab domains."""

    name: str
    uuid: str
    variant: str
    vm_dir: Path
    kernel: Path
    initrd: Path
    console_log: Path
    domain_type: str  # qemu | kvm
    agent: bool
    disks: list[FileDisk]
    luns: list[IscsiLun] = field(default_factory=list)
    memory_mib: int = 256


def _cpu(domain_type: str) -> str:
    if domain_type == "kvm":
        # host-passthrough crashes QEMU 7.2 on some hosts unless arch-capabilities is off.
        return (
            "<cpu mode='host-passthrough'>"
            "<feature policy='disable' name='arch-capabilities'/></cpu>"
        )
    return "<cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>"


def _file_disk(d: FileDisk) -> str:
    return (
        f"    <disk type='file' device='disk'>\n"
        f"      <driver name='qemu' type='{d.fmt}' discard='unmap'/>\n"
        f"      <source file={quoteattr(str(d.path))}/>\n"
        f"      <target dev='{d.target}' bus='virtio'/>\n"
        f"    </disk>\n"
    )


def _lun(d: IscsiLun) -> str:
    return (
        f"    <disk type='network' device='lun'>\n"
        f"      <driver name='qemu' type='raw'/>\n"
        f"      <source protocol='iscsi' name={quoteattr(f'{d.iqn}/{d.lun}')}>\n"
        f"        <host name='{d.host}' port='{d.port}'/>\n"
        f"      </source>\n"
        f"      <target dev='{d.target}' bus='scsi'/>\n"
        f"    </disk>\n"
    )


def domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML of a lab VM."""
    # no_timer_check: on a loaded host a TCG guest can miss the IO-APIC timer check and
    # panic at boot ("IO-APIC + timer doesn't work!", seen at load ~20); the check is for
    # broken hardware, which QEMU's emulated timer is not
    cmdline = (
        "console=ttyS0 panic=-1 quiet no_timer_check "
        f"vmvault.variant={spec.variant} vmvault.name={spec.name}"
    )
    devices = "".join(_file_disk(d) for d in spec.disks)
    if spec.luns:
        devices += "    <controller type='scsi' index='0' model='virtio-scsi'/>\n"
        devices += "".join(_lun(d) for d in spec.luns)
    if spec.agent:
        devices += (
            f"    <channel type='unix'><target type='virtio' name='{AGENT_CHANNEL}'/></channel>\n"
        )
    return f"""\
<domain type='{spec.domain_type}'>
  <name>{escape(spec.name)}</name>
  <uuid>{spec.uuid}</uuid>
  <metadata>
    <lab:lab xmlns:lab='{LAB_NS}' variant='{spec.variant}' dir={quoteattr(str(spec.vm_dir))}/>
    <vmvault:group xmlns:vmvault='{GROUP_NS}'>{LAB_GROUP}</vmvault:group>
  </metadata>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{escape(str(spec.kernel))}</kernel>
    <initrd>{escape(str(spec.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  {_cpu(spec.domain_type)}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{devices}\
    <serial type='pty'>
      <log file={quoteattr(str(spec.console_log))} append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@dataclass(frozen=True)
class LabMark:
    """What the lab metadata element of a domain says."""

    variant: str
    vm_dir: Path | None


def lab_mark(domain_xml_text: str) -> LabMark | None:
    """The lab mark of a domain, or None if the domain is not the lab's."""
    try:
        root = ET.fromstring(domain_xml_text)
    except ET.ParseError:
        return None
    el = root.find(f"metadata/{{{LAB_NS}}}lab")
    if el is None:
        return None
    d = el.get("dir")
    return LabMark(variant=el.get("variant", ""), vm_dir=Path(d) if d else None)


def file_disks(domain_xml_text: str) -> list[Path]:
    """Source paths of the file-backed disks, in XML order."""
    return [Path(d.file) for d in parse_disks(domain_xml_text) if d.type == "file" and d.file]


def console_log(domain_xml_text: str) -> Path | None:
    """The file the serial console is logged to, if any."""
    root = ET.fromstring(domain_xml_text)
    el = root.find("devices/serial/log")
    return Path(el.get("file", "")) if el is not None and el.get("file") else None


def iscsi_iqns(domain_xml_text: str) -> list[str]:
    """The iSCSI target names (without the ``/lun`` suffix) of the domain's network disks."""
    return [
        d.network.name.rsplit("/", 1)[0]
        for d in parse_disks(domain_xml_text)
        if d.network is not None and d.network.protocol == "iscsi"
    ]
