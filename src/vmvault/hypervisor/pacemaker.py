"""VMs that pacemaker owns: its ``VirtualDomain`` resources, read from the CIB.

A pacemaker cluster runs a VM as an ``ocf:heartbeat:VirtualDomain`` primitive whose
``config`` instance attribute is the path of the domain XML it defines.  Pacemaker starts,
stops and migrates that VM; vmvault must never pause, shut off, undefine or replace it
(docs/backup.md, "VMs owned by a cluster manager").

When ``cibadmin`` exists on this machine and the libvirt host is this machine, discovery asks
``cibadmin --query`` for the CIB and matches each domain against the primitives
(:func:`owner_of`): by the name or uuid in the ``config`` file when it can be read, else by
the file's stem or the resource id equal to the domain's name.  :func:`virtual_domains` is a
pure parser (tested on a golden CIB); :func:`query_cib` is the only part that runs anything.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

#: How long ``cibadmin --query`` may take before discovery goes on without it.
CIB_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClusterDomain:
    """One ``VirtualDomain`` primitive of the CIB."""

    resource: str  # the primitive's id
    config: str | None  # the domain XML file pacemaker defines the VM from


def virtual_domains(cib_xml: str) -> list[ClusterDomain]:
    """Every ``VirtualDomain`` primitive of a CIB (in groups and clones too), in order."""
    root = ET.fromstring(cib_xml)
    out = []
    for prim in root.iter("primitive"):
        if prim.get("type") != "VirtualDomain":
            continue
        config = None
        for attrs in prim.findall("instance_attributes"):
            for pair in attrs.findall("nvpair"):
                if pair.get("name") == "config":
                    config = pair.get("value")
        out.append(ClusterDomain(resource=prim.get("id", "?"), config=config))
    return out


def config_identity(xml: str | None) -> tuple[str | None, str | None]:
    """(name, uuid) of a domain XML file's text (None, None when unreadable or not XML)."""
    if not xml:
        return None, None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    name, uuid = root.findtext("name"), root.findtext("uuid")
    return (name.strip() if name else None), (uuid.strip().lower() if uuid else None)


def owner_of(
    domains: Sequence[ClusterDomain],
    name: str,
    uuid: str,
    read_config: Callable[[str], str | None],
) -> str | None:
    """Why pacemaker owns domain ``name``/``uuid`` (None: no primitive matches it)."""
    for d in domains:
        matched = False
        if d.config:
            cfg_name, cfg_uuid = config_identity(read_config(d.config))
            if cfg_name is not None or cfg_uuid is not None:
                matched = cfg_name == name or cfg_uuid == uuid.lower()
            else:
                matched = PurePath(d.config).stem == name
        if matched or d.resource == name:
            where = f", config {d.config}" if d.config else ""
            return f"pacemaker resource {d.resource} (VirtualDomain{where})"
    return None


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def query_cib() -> str | None:
    """``cibadmin --query`` on this machine (None: no cibadmin, no cluster running, error)."""
    cibadmin = shutil.which("cibadmin")
    if cibadmin is None:
        return None
    try:
        done = subprocess.run(
            [cibadmin, "--query"],
            capture_output=True,
            text=True,
            timeout=CIB_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def local_cluster_domains() -> list[ClusterDomain]:
    """The ``VirtualDomain`` primitives of the cluster this machine belongs to ([] if none)."""
    cib = query_cib()
    if cib is None:
        return []
    try:
        return virtual_domains(cib)
    except ET.ParseError:
        return []
