"""Reading a libvirt domain XML: its disks, NICs, guest agent channel and group.

Every module that needs a domain's disks reads them here (:func:`parse_disks`), so there is
one answer to "which disks does this domain have, and where is each one's data".  A
:class:`DomainDisk` keeps what the XML says (``<driver type>`` absent stays ``None``); its
properties give the readings callers share: :attr:`~DomainDisk.path` (how a disk is named in
listings), :attr:`~DomainDisk.local_path` (the file or device QEMU opens on this host) and
:attr:`~DomainDisk.driver_format` (what QEMU reads it as: ``raw`` when the XML names none).

The *guest agent channel* rule is libvirt's own (:func:`has_agent_channel`).

The *group* of a VM (design §1: libvirt has no "cloud service") is the text of
``<metadata><vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">…</vmvault:group>``,
or the host's name when the element is absent.

A domain a cluster manager owns carries the *cluster marker*
``<metadata><vmcluster:managed xmlns:vmcluster="https://vmvault.dev/xmlns/cluster/1"
by="pacemaker"/></metadata>`` (its own namespace, so ``virsh metadata … --set`` of it leaves
the group element alone; ``by`` is optional): :func:`cluster_marker`.

The *fingerprint* hashes what discovery records of the configuration (name, disks, NICs,
agent channel, group), so a changed domain shows up as "changed" in a discovery.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from vmvault.domain.restore import XmlDisk
from vmvault.domain.vm import Disk, DomainFacts, Nic, PowerState, classify_disk, fields_of

GROUP_NS = "https://vmvault.dev/xmlns/1"
#: The namespace of the cluster marker (docs/backup.md, "VMs owned by a cluster manager").
CLUSTER_NS = "https://vmvault.dev/xmlns/cluster/1"
#: The virtio-serial port name qemu-ga listens on, and libvirt looks for.
AGENT_CHANNEL = "org.qemu.guest_agent.0"

# virDomainState values → our power states
POWER_STATES = {
    0: PowerState.UNKNOWN,
    1: PowerState.RUNNING,
    2: PowerState.BLOCKED,
    3: PowerState.PAUSED,
    4: PowerState.SHUTTING_DOWN,
    5: PowerState.SHUT_OFF,
    6: PowerState.CRASHED,
    7: PowerState.SUSPENDED,
}


def _root(domain: str | ET.Element) -> ET.Element:
    return ET.fromstring(domain) if isinstance(domain, str) else domain


def _devices(root: ET.Element, tag: str) -> list[ET.Element]:
    """The ``<devices>`` children named ``tag``, in document order.  Two plain-tag lookups,
    which ElementTree's C code answers itself, where ``./devices/tag`` goes through its
    Python path engine: a third of a fleet's domain reading (docs/deployment.md)."""
    devices = root.find("devices")
    return devices.findall(tag) if devices is not None else []


# --- disks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSource:
    """The ``<source protocol name>`` of a ``type='network'`` disk and its ``<host>``s."""

    protocol: str  # nbd | iscsi | rbd | gluster | http …
    name: str  # export, "IQN/LUN", pool/image …
    hosts: tuple[str, ...] = ()  # "name:port", "name", or the unix socket path


@dataclass(frozen=True)
class BackingImage:
    """One image of a disk's ``<backingStore>`` chain (libvirt writes it in a live XML)."""

    type: str  # file | block | network …
    format: str | None  # <format type>
    path: str | None  # <source file|dev>, or protocol://name


@dataclass(frozen=True)
class DomainDisk:
    """One ``<disk>`` of a domain XML, as written (in document order)."""

    target: str  # <target dev>: vda, sdb … ("" only in a hand-written XML without one)
    device: str  # disk | lun | cdrom | floppy
    type: str  # file | block | network | volume | dir | nvme …
    format: str | None  # <driver type>: qcow2 | raw | … (None: not written)
    bus: str | None = None  # <target bus>
    readonly: bool = False
    shareable: bool = False
    file: str | None = None  # <source file>
    dev: str | None = None  # <source dev>
    dir: str | None = None  # <source dir>
    network: NetworkSource | None = None  # type='network'
    pool: str | None = None  # type='volume': <source pool volume>
    volume: str | None = None
    backing: tuple[BackingImage, ...] = ()  # nearest first

    @property
    def path(self) -> str | None:
        """How the disk's data is named in listings: the source file/device/directory,
        ``protocol://name`` for a network disk, ``pool/volume`` for a volume; None when the
        drive is empty."""
        if self.type == "network":
            if self.network is None:
                return None
            return f"{self.network.protocol}://{self.network.name}"
        if self.type == "volume":
            if self.pool is None and self.volume is None:
                return None
            return f"{self.pool or ''}/{self.volume or ''}"
        return self.file or self.dev or self.dir

    @property
    def local_path(self) -> str | None:
        """The file or block device QEMU opens on the domain's host (None for network and
        volume disks and empty drives)."""
        return self.file or self.dev

    @property
    def driver_format(self) -> str:
        """The format QEMU reads the image as: ``<driver type>``, ``raw`` when absent."""
        return self.format or "raw"

    def as_disk(self) -> Disk:
        """The inventory's view of the disk (not yet classified)."""
        return Disk(
            target=self.target or "?",
            type=self.type,
            device=self.device,
            format=self.format,
            path=self.path,
            bus=self.bus,
            readonly=self.readonly,
        )

    def as_xml_disk(self) -> XmlDisk:
        """The restore plan's view of the disk."""
        return XmlDisk(
            target=self.target or "?",
            type=self.type,
            device=self.device,
            format=self.format,
            path=self.path,
            readonly=self.readonly,
            shareable=self.shareable,
        )


def disk_elements(domain: str | ET.Element) -> Iterator[tuple[str, ET.Element]]:
    """``(target dev, <disk> element)`` of every disk, in document order: for code that
    rewrites disks (``""`` for a disk without a target)."""
    for el in _devices(_root(domain), "disk"):
        target = el.find("target")
        yield (target.get("dev", "") if target is not None else ""), el


def parse_disks(domain: str | ET.Element) -> list[DomainDisk]:
    """Every ``<disk>`` of a domain XML (text or parsed), in document order."""
    return [_disk(target, el) for target, el in disk_elements(domain)]


def _disk(target: str, el: ET.Element) -> DomainDisk:
    dtype = el.get("type", "file")
    driver = el.find("driver")
    target_el = el.find("target")
    source = el.find("source")
    src = source.attrib if source is not None else {}
    network = None
    if dtype == "network" and source is not None:
        network = NetworkSource(
            protocol=src.get("protocol", "network"),
            name=src.get("name", ""),
            hosts=tuple(_host(h) for h in source.findall("host")),
        )
    return DomainDisk(
        target=target,
        device=el.get("device", "disk"),
        type=dtype,
        format=driver.get("type") if driver is not None else None,
        bus=target_el.get("bus") if target_el is not None else None,
        readonly=el.find("readonly") is not None,
        shareable=el.find("shareable") is not None,
        file=src.get("file"),
        dev=src.get("dev"),
        dir=src.get("dir"),
        network=network,
        pool=src.get("pool") if dtype == "volume" else None,
        volume=src.get("volume") if dtype == "volume" else None,
        backing=tuple(_backing_chain(el)),
    )


def _host(el: ET.Element) -> str:
    if el.get("socket"):
        return el.get("socket", "")
    name = el.get("name", "")
    return f"{name}:{el.get('port')}" if el.get("port") else name


def _backing_chain(el: ET.Element) -> Iterator[BackingImage]:
    """The ``<backingStore>`` chain under a disk; an empty ``<backingStore/>`` ends it."""
    store = el.find("backingStore")
    while store is not None and store.get("type"):
        fmt = store.find("format")
        source = store.find("source")
        src = source.attrib if source is not None else {}
        if store.get("type") == "network":
            path = f"{src.get('protocol', 'network')}://{src.get('name', '')}" if src else None
        else:
            path = src.get("file") or src.get("dev")
        yield BackingImage(
            type=store.get("type", ""),
            format=fmt.get("type") if fmt is not None else None,
            path=path,
        )
        store = store.find("backingStore")


# --- NICs, agent channel, group ----------------------------------------------------------------


def parse_nics(domain: str | ET.Element) -> list[Nic]:
    """Every ``<interface>`` of a domain XML, in document order."""
    nics = []
    for el in _devices(_root(domain), "interface"):
        mac = el.find("mac")
        source = el.find("source")
        model = el.find("model")
        src = None
        if source is not None:
            src = source.get("network") or source.get("bridge") or source.get("dev")
        nics.append(
            Nic(
                mac=mac.get("address") if mac is not None else None,
                type=el.get("type", "?"),
                source=src,
                model=model.get("type") if model is not None else None,
            )
        )
    return nics


def has_agent_channel(domain: str | ET.Element) -> bool:
    """True if libvirt can reach a guest agent in this domain: a ``<channel type='unix'>``
    with ``<target type='virtio' name='org.qemu.guest_agent.0'/>``.

    This is libvirt's own rule, so "has a channel" means "libvirt will talk to the agent":
    its QEMU driver looks for the agent only among channels whose target type is ``virtio``
    with that name (``qemuFindAgentConfig``) and connects only to a ``unix`` socket (any
    other source type: "unable to handle agent type").  The libvirt wiki's guest agent page
    gives exactly this element.  A domain XML that does not parse has no channel.
    """
    try:
        root = _root(domain)
    except ET.ParseError:
        return False
    for ch in _devices(root, "channel"):
        target = ch.find("target")
        if (
            ch.get("type") == "unix"
            and target is not None
            and target.get("type") == "virtio"
            and target.get("name") == AGENT_CHANNEL
        ):
            return True
    return False


def _metadata(root: ET.Element, tag: str) -> ET.Element | None:
    """The ``<metadata>`` child ``tag`` (a ``{namespace}name``), or None."""
    metadata = root.find("metadata")
    return metadata.find(tag) if metadata is not None else None


def group_of(root: ET.Element, default: str) -> str:
    el = _metadata(root, f"{{{GROUP_NS}}}group")
    if el is not None and el.text and el.text.strip():
        return el.text.strip()
    return default


def cluster_marker(root: ET.Element) -> str | None:
    """Why the domain's metadata says a cluster manager owns it (None: no marker)."""
    el = _metadata(root, f"{{{CLUSTER_NS}}}managed")
    if el is None:
        return None
    by = (el.get("by") or "").strip()
    return f"marked cluster-managed in its libvirt metadata{f' (by {by})' if by else ''}"


def facts_from_xml(
    xml: str, *, uri: str, hostname: str, state: int, persistent: bool = True
) -> DomainFacts:
    root = ET.fromstring(xml)
    disks = [classify_disk(d.as_disk()) for d in parse_disks(root)]
    nics = parse_nics(root)
    name = root.findtext("name", default="?")
    group = group_of(root, hostname)
    agent = has_agent_channel(root)
    cluster = cluster_marker(root)
    recorded: dict[str, object] = {
        "name": name,
        "group": group,
        "agent": agent,
        "disks": [fields_of(d) for d in disks],
        "nics": [fields_of(n) for n in nics],
    }
    if cluster is not None:  # only when marked: unmarked VMs keep their fingerprints
        recorded["cluster"] = cluster
    fingerprint = hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()
    return DomainFacts(
        uuid=root.findtext("uuid", default="").strip(),
        name=name,
        host_uri=uri,
        hostname=hostname,
        group=group,
        power_state=POWER_STATES.get(state, PowerState.UNKNOWN),
        disks=tuple(disks),
        nics=tuple(nics),
        agent_channel=agent,
        persistent=persistent,
        fingerprint=fingerprint,
        cluster_managed=cluster,
    )
