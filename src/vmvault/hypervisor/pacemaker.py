"""VMs that pacemaker owns: its ``VirtualDomain`` resources, read from the CIB.

A pacemaker cluster runs a VM as an ``ocf:heartbeat:VirtualDomain`` primitive whose
``config`` instance attribute is the path of the domain XML it defines.  Pacemaker starts,
stops and migrates that VM; vmvault must never pause, shut off, undefine or replace it
(docs/backup.md, "VMs owned by a cluster manager").

When ``cibadmin`` exists on this machine and the libvirt host is this machine, discovery asks
``cibadmin --query`` for the CIB and matches each domain against the primitives
(:func:`owner_of`): by the name or uuid in the ``config`` file when it can be read, else by
the file's stem or the resource id equal to the domain's name.  :func:`virtual_domains` is a
pure parser (tested on a golden CIB); :func:`query_cib` is the only part that runs anything,
through :class:`CibCache` (one query per host per 30 s).  A cibadmin that exists but fails
makes ownership *unknown*: discovery then keeps the catalog's previous value and warns
(:attr:`~vmvault.domain.vm.DomainFacts.cluster_unknown`), never "not cluster-managed".
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
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


@dataclass(frozen=True)
class CibView:
    """What this machine's cluster says: its ``VirtualDomain`` primitives, or why it could
    not be read (``unknown``: cibadmin exists but failed — ownership is then not known)."""

    domains: tuple[ClusterDomain, ...] = ()
    unknown: str | None = None


def query_cib() -> CibView:
    """``cibadmin --query`` on this machine, parsed.  No cibadmin: no cluster, ``CibView()``;
    a cibadmin that times out, exits non-zero or prints no/bad XML: ``unknown`` says why."""
    cibadmin = shutil.which("cibadmin")
    if cibadmin is None:
        return CibView()
    try:
        done = subprocess.run(
            [cibadmin, "--query"],
            capture_output=True,
            text=True,
            timeout=CIB_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CibView(unknown=f"cibadmin --query took more than {CIB_TIMEOUT:g} s")
    except OSError as exc:
        return CibView(unknown=f"cibadmin --query could not run: {exc}")
    if done.returncode != 0 or not done.stdout.strip():
        err = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return CibView(unknown=f"cibadmin --query failed (exit {done.returncode}): {err[0]}")
    try:
        return CibView(domains=tuple(virtual_domains(done.stdout)))
    except ET.ParseError as exc:
        return CibView(unknown=f"cibadmin --query gave a CIB that is not XML: {exc}")


#: How long one CIB reading is reused (a backup set asks once per VM, within seconds).
CIB_TTL = 30.0


class CibCache:
    """:func:`query_cib` at most once per ``ttl`` seconds per host (failures too: a timing
    out cibadmin must not cost 10 s per VM).  Thread-safe: set members ask in parallel."""

    def __init__(
        self,
        query: Callable[[], CibView] = query_cib,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = CIB_TTL,
    ) -> None:
        self.query, self.clock, self.ttl = query, clock, ttl
        self._seen: dict[str, tuple[float, CibView]] = {}
        self._lock = threading.Lock()

    def view(self, host: str) -> CibView:
        with self._lock:
            hit = self._seen.get(host)
            if hit is not None and self.clock() - hit[0] < self.ttl:
                return hit[1]
            found = self.query()
            self._seen[host] = (self.clock(), found)
            return found
