"""Reading a libvirt domain XML into :class:`~vmvault.domain.vm.DomainFacts`.

The *group* of a VM (design §1: libvirt has no "cloud service") is the text of
``<metadata><vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">…</vmvault:group>``,
or the host's name when the element is absent.

The *fingerprint* hashes what discovery records of the configuration (name, disks, NICs,
agent channel, group), so a changed domain shows up as "changed" in a discovery.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict

from vmvault.domain.vm import Disk, DomainFacts, Nic, PowerState, classify_disk

GROUP_NS = "https://vmvault.dev/xmlns/1"
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


def parse_disks(root: ET.Element) -> list[Disk]:
    disks = []
    for el in root.findall("./devices/disk"):
        dtype = el.get("type", "file")
        device = el.get("device", "disk")
        target = el.find("target")
        driver = el.find("driver")
        source = el.find("source")
        path: str | None = None
        if source is not None:
            if dtype == "network":
                proto = source.get("protocol", "network")
                path = f"{proto}://{source.get('name', '')}"
            elif dtype == "volume":
                path = f"{source.get('pool', '')}/{source.get('volume', '')}"
            else:
                path = source.get("file") or source.get("dev") or source.get("dir")
        disk = Disk(
            target=target.get("dev", "?") if target is not None else "?",
            type=dtype,
            device=device,
            format=driver.get("type") if driver is not None else None,
            path=path,
            bus=target.get("bus") if target is not None else None,
            readonly=el.find("readonly") is not None,
        )
        disks.append(classify_disk(disk))
    return disks


def parse_nics(root: ET.Element) -> list[Nic]:
    nics = []
    for el in root.findall("./devices/interface"):
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


def has_agent_channel(root: ET.Element) -> bool:
    for ch in root.findall("./devices/channel"):
        target = ch.find("target")
        if target is not None and target.get("name") == AGENT_CHANNEL:
            return True
    return False


def group_of(root: ET.Element, default: str) -> str:
    el = root.find(f"./metadata/{{{GROUP_NS}}}group")
    if el is not None and el.text and el.text.strip():
        return el.text.strip()
    return default


def facts_from_xml(
    xml: str, *, uri: str, hostname: str, state: int, persistent: bool = True
) -> DomainFacts:
    root = ET.fromstring(xml)
    disks = parse_disks(root)
    nics = parse_nics(root)
    name = root.findtext("name", default="?")
    group = group_of(root, hostname)
    agent = has_agent_channel(root)
    recorded = {
        "name": name,
        "group": group,
        "agent": agent,
        "disks": [asdict(d) for d in disks],
        "nics": [asdict(n) for n in nics],
    }
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
    )
