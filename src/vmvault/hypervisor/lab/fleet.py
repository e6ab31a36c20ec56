"""A fleet of libvirt "hosts" made with libvirt's test driver, for measuring the control plane
at fleet scale (bench/fleet.py, tests/unit/test_fleet_queries.py; docs/deployment.md,
"Fleet scale").

libvirt's test driver (https://libvirt.org/drvtest.html) is a fake hypervisor inside the
client library: ``test:///path/to/file.xml`` opens, in the calling process, a host whose
domains are those of the file — no daemon, no guest, nothing to start or stop. So a fleet is
only files: :func:`write_fleet` writes one file per host (``fleet-K.xml``, a ``<node>`` with
its ``<domain type='test'>`` elements) and answers the URIs to add with ``host add``; removing
the directory removes the fleet. (That is why it is a helper of the benchmark and the tests,
not a ``vmvault lab`` command: there is no process to manage.)

Each domain has a uuid and name derived from its host and index (the same fleet every time),
one or two file-backed qcow2 disks (paths that need not exist: nothing reads them), a NIC,
and every :data:`RUNNING_EVERY`-th one is running — the others are shut off, through the test
driver's ``<test:runstate>`` (5, ``VIR_DOMAIN_SHUTOFF``; 1 is running).  Every third domain
has a guest-agent channel.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

#: One domain in this many is running; the others are shut off.
RUNNING_EVERY = 3
#: The namespace of the test driver's per-domain extras (``<test:runstate>``).
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
_RUNNING, _SHUTOFF = 1, 5


@dataclass(frozen=True)
class FleetHost:
    uri: str
    path: Path
    domains: int


def domain_uuid(host: int, index: int) -> str:
    """The uuid of domain ``index`` of host ``host`` (the same in every fleet)."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"vmvault-fleet/{host}/{index}"))


def domain_name(host: int, index: int) -> str:
    return f"fleet{host}-vm{index:05d}"


def domain_xml(host: int, index: int) -> str:
    """One test-driver domain: disks, a NIC, running or shut off, an agent channel on some."""
    name = domain_name(host, index)
    state = _RUNNING if index % RUNNING_EVERY == 0 else _SHUTOFF
    disks = [("vda", f"/var/lib/fleet/{name}-root.qcow2")]
    if index % 2 == 0:
        disks.append(("vdb", f"/var/lib/fleet/{name}-data.qcow2"))
    disk_xml = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='{target}' bus='virtio'/></disk>"
        for target, path in disks
    )
    channel = (
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
        if index % 3 == 0
        else ""
    )
    mac = f"52:54:00:{host % 256:02x}:{index // 256 % 256:02x}:{index % 256:02x}"
    return (
        f"<domain type='test' xmlns:test='{TEST_NS}'>"
        f"<name>{name}</name><uuid>{domain_uuid(host, index)}</uuid>"
        f"<memory>65536</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
        f"<test:runstate>{state}</test:runstate>"
        f"<devices>{disk_xml}<interface type='network'><mac address='{mac}'/>"
        f"<source network='default'/><model type='virtio'/></interface>{channel}</devices>"
        f"</domain>"
    )


def write_fleet(directory: Path, vms: int, hosts: int, first: int = 0) -> list[FleetHost]:
    """Write ``vms`` domains spread evenly over ``hosts`` test-driver files under
    ``directory``, the hosts numbered from ``first`` (a fleet grown later takes the next
    numbers: its domains' uuids and names are new); the hosts, with the ``test:///…`` URI of
    each."""
    if vms < 0 or hosts < 1:
        raise ValueError("a fleet has at least one host and no negative count of VMs")
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for n in range(hosts):
        k = first + n
        count = vms // hosts + (1 if n < vms % hosts else 0)
        path = (directory / f"fleet-{k}.xml").absolute()
        body = "\n".join(domain_xml(k, i) for i in range(count))
        path.write_text(f"<node>\n{body}\n</node>\n")
        made.append(FleetHost(f"test://{path}", path, count))
    return made
