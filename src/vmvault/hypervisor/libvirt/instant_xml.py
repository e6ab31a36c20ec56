"""The domain XML of an instant restore: the restored definition with every disk on its
overlay, backed by the point's NBD export (docs/restore.md, "Instant recovery").

The overlay's backing store is written into the XML (``<backingStore type='network'>``, NBD
over the export's unix socket) rather than left for libvirt to probe from the qcow2 header:
libvirt 9.0 then hands QEMU exactly that chain.  ``error_policy``/``rerror_policy`` ``stop``
pause the guest on a failed write or read (the export gone) instead of reporting the error
to it: a file system that saw EIO may remount read-only or worse; a paused guest resumes
where it was.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vmvault.hypervisor.libvirt.domxml import disk_elements
from vmvault.hypervisor.libvirt.restore_xml import register_namespaces

STOP = "stop"


def instant_xml(xml: str, overlays: dict[str, Path], socket: Path) -> str:
    """``xml`` (the restored definition, disks on their final images) with each disk of
    ``overlays`` (target → overlay) on its overlay, backed by export ``target`` at ``socket``."""
    register_namespaces(xml)
    root = ET.fromstring(xml)
    for dev, el in disk_elements(root):
        if dev not in overlays:
            continue
        el.set("type", "file")
        driver = el.find("driver")
        if driver is None:
            driver = ET.Element("driver", {"name": "qemu"})
            el.insert(0, driver)
        driver.set("type", "qcow2")
        driver.set("error_policy", STOP)
        driver.set("rerror_policy", STOP)
        driver.set("detect_zeroes", "unmap")  # the copy of a zero block stays sparse
        source = el.find("source")
        if source is None:
            source = ET.Element("source")
            el.insert(list(el).index(driver) + 1, source)
        source.attrib.clear()
        source.set("file", str(overlays[dev]))
        for bs in el.findall("backingStore"):
            el.remove(bs)
        backing = ET.Element("backingStore", {"type": "network"})
        ET.SubElement(backing, "format", {"type": "raw"})
        nbd = ET.SubElement(backing, "source", {"protocol": "nbd", "name": dev})
        ET.SubElement(nbd, "host", {"transport": "unix", "socket": str(socket)})
        ET.SubElement(backing, "backingStore")
        el.insert(list(el).index(source) + 1, backing)
    return ET.tostring(root, encoding="unicode")


def disk_sources(xml: str) -> dict[str, str | None]:
    """Each disk's source file as ``xml`` has it (target → path; None when not a file)."""
    root = ET.fromstring(xml)
    out: dict[str, str | None] = {}
    for dev, el in disk_elements(root):
        source = el.find("source")
        out[dev] = source.get("file") if source is not None else None
    return out


def copy_destination(path: Path, fmt: str) -> str:
    """The ``<disk>`` a block copy writes to (libvirt creates the image)."""
    disk = ET.Element("disk", type="file")
    ET.SubElement(disk, "source", file=str(path))
    ET.SubElement(disk, "driver", type=fmt)
    return ET.tostring(disk, encoding="unicode")  # escaped: a path may hold & < '"
