"""The XML of a pull-mode backup: ``<domainbackup>`` and ``<domaincheckpoint>`` in, the
exports libvirt made out (``backupGetXMLDesc``).

Every disk of the domain is named in both documents, in the domain's order:

* ``<domainbackup mode='pull'>``: a unix-socket NBD server; the disks to back up get
  ``backup='yes'`` and a scratch file, the others ``backup='no'``.  A pull from a remote host
  (domain/pull.py) serves on TCP with TLS instead (``<server transport='tcp' tls='yes'
  name=ADDRESS port=PORT/>``; QEMU's certificates are the host's ``backup_tls_x509_cert_dir``),
  names each export ``vmvault-<POINT>-<target>`` (how a clean-up knows the job is the one
  of a backup in its journal) and puts each scratch file next to its disk's image on that
  host (``IMAGE.vmvault-<POINT>.scratch``: libvirt creates it and removes it when the job
  ends; :mod:`~vmvault.hypervisor.libvirt.pulljob` names them).  An incremental backup
  names its checkpoint in ``<incremental>`` and gives each disk a ``backupmode``: disks the
  checkpoint does not cover (raw disks, disks added later) are exported ``full`` in the
  same job;
* ``<domaincheckpoint>`` (``description`` ``vmvault``): ``checkpoint='bitmap'`` for the qcow2
  disks backed up, ``'no'`` for raw disks and disks left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DiskModes:
    """Per disk of an incremental backup: ``full`` or ``incremental``, and why a disk is full."""

    modes: dict[str, str] = field(default_factory=dict)
    full_disks: dict[str, str] = field(default_factory=dict)
    broken: str | None = None  # a covered disk whose bitmap is missing or inconsistent


def disk_modes(
    domain_disks: Mapping[str, str],
    targets: Iterable[str],
    incremental_from: str | None,
    coverage: Mapping[str, str],
) -> DiskModes:
    """``coverage``: target → ``ok`` | ``broken`` | ``none`` for checkpoint
    ``incremental_from`` (``checkpoints.checkpoint_coverage``).  Raw disks and disks the
    checkpoint does not cover are read full in the same job."""
    out = DiskModes()
    for target in targets:
        fmt = domain_disks[target]
        if not incremental_from:
            out.modes[target] = "full"
        elif fmt != "qcow2":
            out.modes[target] = "full"
            out.full_disks[target] = f"{fmt} disk: no checkpoints"
        elif coverage.get(target, "none") == "none":
            out.modes[target] = "full"
            out.full_disks[target] = (
                f"checkpoint {incremental_from} has no bitmap for it (disk added later?)"
            )
        elif coverage[target] == "broken":
            out.broken = target
            return out
        else:
            out.modes[target] = "incremental"
    return out


def backup_xml(
    domain_disks: Mapping[str, str],
    wanted: Iterable[str],
    *,
    socket: Path,
    scratch_dir: Path,
    incremental_from: str | None,
    modes: Mapping[str, str],
    tls_server: tuple[str, int] | None = None,
    pulled: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """``domain_disks``: target → format of every disk of the domain, in order; ``wanted``:
    the targets to back up; ``modes``: target → ``full`` | ``incremental`` (incremental
    backups only); ``tls_server``: (address, port) of a pull's TCP server with TLS, instead
    of ``socket``, and then ``pulled`` (target → (export name, scratch file on that host))
    names the exports and the scratch files instead of ``scratch_dir``."""
    pulled = pulled or {}
    root = ET.Element("domainbackup", mode="pull")
    if incremental_from:
        ET.SubElement(root, "incremental").text = incremental_from
    if tls_server is not None:
        name, port = tls_server
        ET.SubElement(root, "server", transport="tcp", tls="yes", name=name, port=str(port))
    else:
        ET.SubElement(root, "server", transport="unix", socket=str(socket))
    disks = ET.SubElement(root, "disks")
    chosen = set(wanted)
    for target in domain_disks:
        if target not in chosen:
            ET.SubElement(disks, "disk", name=target, backup="no")
            continue
        attrs = {"name": target, "backup": "yes", "type": "file"}
        if tls_server is not None:
            attrs["exportname"] = pulled[target][0]
        if incremental_from:
            attrs["backupmode"] = modes[target]
            if modes[target] == "incremental":
                attrs["incremental"] = incremental_from
        el = ET.SubElement(disks, "disk", attrs)
        scratch = scratch_dir / f"{target}.scratch"
        if tls_server is not None:  # on that host: next to the image (libvirt removes it)
            scratch = Path(pulled[target][1])
        ET.SubElement(el, "scratch", file=str(scratch))
    return ET.tostring(root, encoding="unicode")


def checkpoint_xml(name: str, domain_disks: Mapping[str, str], wanted: Iterable[str]) -> str:
    """The new checkpoint: a bitmap on each qcow2 disk backed up, none elsewhere."""
    root = ET.Element("domaincheckpoint")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = "vmvault"
    disks = ET.SubElement(root, "disks")
    chosen = set(wanted)
    for target, fmt in domain_disks.items():
        mode = "bitmap" if target in chosen and fmt == "qcow2" else "no"
        ET.SubElement(disks, "disk", name=target, checkpoint=mode)
    return ET.tostring(root, encoding="unicode")


def exports(backup_desc: str) -> dict[str, tuple[str, str | None]]:
    """target → (export name, dirty bitmap or None) of each disk the running job exports,
    from ``backupGetXMLDesc``."""
    out: dict[str, tuple[str, str | None]] = {}
    for el in ET.fromstring(backup_desc).findall("./disks/disk"):
        if el.get("backup") != "yes":
            continue
        target = el.get("name", "")
        out[target] = (el.get("exportname") or target, el.get("exportbitmap"))
    return out


__all__ = ["DiskModes", "backup_xml", "checkpoint_xml", "disk_modes", "exports"]
