"""A domain XML for a restore: read what a plan needs, and write a plan back.

:func:`inspect_xml` reads a point's domain XML into a
:class:`~vmvault.domain.restore.DomainShape` (disks, NICs, files, agent channel);
:func:`render_xml` writes a :class:`~vmvault.domain.restore.RestorePlan` back into that XML
(new identity, disk paths, NICs connected or not, renamed files).  No libvirt connection here.

Facts that shape this module (libvirt 9.0, QEMU 7.2, measured on the lab):

* ``<link state='down'/>`` alone does not let a VM start when its network is gone: libvirt
  looks the network up at start (``Network not found: no network with matching name``) and a
  missing bridge fails the same way.  A NIC whose network or bridge is unusable therefore
  becomes ``type='ethernet'`` (a tap device attached to nothing) with its link down; its MAC,
  model and PCI address stay, and the original connection is kept in the domain's metadata
  (``<vmvault-restore:restore>``) so it can be reconnected by hand.
* The namespaces of ``<metadata>`` children survive a round trip through ElementTree: the
  declarations end up on ``<domain>`` and libvirt moves them back.
"""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from pathlib import Path

from vmvault.domain.restore import (
    DomainShape,
    FileKind,
    RestorePlan,
    XmlFile,
    XmlNic,
)
from vmvault.hypervisor.libvirt.domxml import (
    cluster_marker,
    disk_elements,
    has_agent_channel,
    parse_disks,
    parse_nics,
)

RESTORE_NS = "https://vmvault.dev/xmlns/restore/1"
RESTORE_PREFIX = "vmvault-restore"
DEFAULT_POOL = "default"
#: Children an ``<interface>`` keeps when it is disconnected (type ``ethernet``).
_KEEP_IN_ETHERNET = {"mac", "model", "driver", "address", "boot", "rom", "mtu", "alias", "acpi"}
_CHAR_DEVICES = ("serial", "console", "parallel", "channel")


# --- reading a domain XML ----------------------------------------------------------------------


def inspect_xml(xml: str) -> DomainShape:
    """The parts of a domain XML a restore plans with."""
    root = ET.fromstring(xml)
    disks = [d.as_xml_disk() for d in parse_disks(root)]
    nics = [XmlNic(i, n.mac, n.type, n.source) for i, n in enumerate(parse_nics(root))]
    files: list[XmlFile] = []
    seen: set[str] = set()

    def add(kind: FileKind, path: str | None) -> None:
        if path and path not in seen:
            seen.add(path)
            files.append(XmlFile(kind, path))

    for tag in _CHAR_DEVICES:
        for el in root.findall(f"./devices/{tag}"):
            log = el.find("log")
            if log is not None:
                add(FileKind.LOG, log.get("file"))
            source = el.find("source")
            if source is None:
                continue
            if el.get("type") == "file":
                add(FileKind.LOG, source.get("path"))
            elif tag == "channel" and el.get("type") == "unix" and source.get("path"):
                files.append(XmlFile(FileKind.CHANNEL, source.get("path", "")))
    nvram = root.find("./os/nvram")
    if nvram is not None and nvram.text and nvram.text.strip():
        add(FileKind.NVRAM, nvram.text.strip())
    tpm_emulator = False
    for backend in root.findall("./devices/tpm/backend"):
        if backend.get("type") == "emulator":
            tpm_emulator = True
            for child in backend:
                if child.get("path"):
                    add(FileKind.TPM, child.get("path"))
    return DomainShape(
        name=root.findtext("name", default="").strip(),
        uuid=root.findtext("uuid", default="").strip(),
        disks=disks,
        nics=nics,
        files=files,
        hostdevs=len(root.findall("./devices/hostdev")),
        agent_channel=has_agent_channel(root),
        tpm_emulator=tpm_emulator,
        cluster_managed=cluster_marker(root),
    )


# --- writing the restored domain XML -----------------------------------------------------------


def register_namespaces(xml: str) -> None:
    """Keep the document's namespace prefixes (``lab:``, ``vmvault:``…) when serialising."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(xml), events=("start-ns",)):
        with contextlib.suppress(ValueError):  # prefixes ElementTree reserves (ns0 …)
            ET.register_namespace(prefix, uri)
    ET.register_namespace(RESTORE_PREFIX, RESTORE_NS)


def render_xml(xml: str, plan: RestorePlan) -> str:
    """The point's domain XML rewritten as the plan says (see the module docstring)."""
    register_namespaces(xml)
    root = ET.fromstring(xml)
    _set_text(root, "name", plan.name)
    _set_text(root, "uuid", plan.uuid)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    paths = plan.disk_paths
    for dev, el in list(disk_elements(root)):
        if dev in plan.drop_disks:
            devices.remove(el)
        elif dev in paths:
            path, fmt = paths[dev]
            _file_disk(el, path, fmt)
    if plan.drop_hostdevs:
        for el in list(devices.findall("hostdev")):
            devices.remove(el)
    if plan.files:
        for el in root.iter():
            for key, value in list(el.attrib.items()):
                if value in plan.files:
                    el.set(key, plan.files[value])
            if el.text and el.text.strip() in plan.files:
                el.text = plan.files[el.text.strip()]
    if plan.drop_channel_paths:
        for el in devices.findall("channel"):
            source = el.find("source")
            if el.get("type") == "unix" and source is not None and "path" in source.attrib:
                del source.attrib["path"]
    disconnected = []
    for el, nic in zip(devices.findall("interface"), plan.nics, strict=False):
        if nic.mac:
            mac = el.find("mac")
            if mac is None:
                mac = ET.Element("mac")
                el.insert(0, mac)
            mac.set("address", nic.mac)
        if not nic.connected:
            el.set("type", "ethernet")
            for child in list(el):
                if child.tag not in _KEEP_IN_ETHERNET:
                    el.remove(child)
            disconnected.append(nic)
        if nic.link_down:
            link = el.find("link")
            if link is None:
                link = ET.SubElement(el, "link")
            link.set("state", "down")
    if disconnected:
        meta = root.find("metadata")
        if meta is None:
            meta = ET.Element("metadata")
            root.insert(_after_identity(root), meta)
        for old in meta.findall(f"{{{RESTORE_NS}}}restore"):
            meta.remove(old)
        record = ET.SubElement(meta, f"{{{RESTORE_NS}}}restore")
        for nic in disconnected:
            ET.SubElement(
                record,
                f"{{{RESTORE_NS}}}disconnected",
                {
                    "mac": nic.mac or "",
                    "type": nic.type,
                    "source": nic.source or "",
                    "why": nic.problem or "",
                },
            )
    return ET.tostring(root, encoding="unicode")


def _set_text(root: ET.Element, tag: str, value: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.Element(tag)
        root.insert(_after_identity(root), el)
    el.text = value


def _after_identity(root: ET.Element) -> int:
    pos = 0
    for i, child in enumerate(root):
        if child.tag in ("name", "uuid", "genid", "title", "description"):
            pos = i + 1
    return pos


def _file_disk(el: ET.Element, path: Path, fmt: str) -> None:
    """Make ``el`` a file disk of ``fmt`` at ``path`` (no backing chain: images are flat)."""
    el.set("type", "file")
    source = el.find("source")
    keep_children = []
    if source is not None:
        # <seclabel> children of a source stay; hosts/auth/reservations of other types go
        keep_children = [c for c in source if c.tag == "seclabel"]
        el.remove(source)
    new_source = ET.Element("source", {"file": str(path)})
    for child in keep_children:
        new_source.append(child)
    driver = el.find("driver")
    if driver is None:
        driver = ET.Element("driver", {"name": "qemu"})
        el.insert(0, driver)
    driver.set("type", fmt)
    index = list(el).index(driver) + 1
    el.insert(index, new_source)
    for bs in el.findall("backingStore"):
        el.remove(bs)


# --- the driver --------------------------------------------------------------------------------
