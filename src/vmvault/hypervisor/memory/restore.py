"""The ``RestoreDriver`` port in memory, for unit tests of the restore service.

Domains are defined, undefined, started and shut off in a dict; their XML is read and
rendered by the real functions of the libvirt adapter.  Each domain has a guest agent that
answers or not, and the file systems it reports.  Networks and bridges that exist are sets;
an image's size is read from the :class:`~vmvault.hypervisor.memory.files.MemoryFiles` the
restore wrote it to.  Failures are injected per operation (``fail["define"] = [error]``
raises that error at the next define instead of defining), and ``fault(op, args)`` is called
before every operation, as in ``MemoryFiles``.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmvault.domain.errors import RestoreDefineFailed, RestoreVerifyFailed, VmDeleted
from vmvault.domain.restore import DomainShape, LiveDomain, RestorePlan, XmlNic
from vmvault.domain.vm import DomainFacts, PowerState
from vmvault.hypervisor.libvirt.domxml import facts_from_xml
from vmvault.hypervisor.libvirt.restore_xml import inspect_xml, render_xml
from vmvault.hypervisor.memory.files import Fault, MemoryFiles

RUNNING = (PowerState.RUNNING, PowerState.PAUSED, PowerState.BLOCKED)


@dataclass
class MemoryDomain:
    uuid: str
    name: str
    xml: str
    power: PowerState = PowerState.SHUT_OFF
    agent: bool = True  # the guest agent answers once the domain runs
    fsinfo: list[dict[str, Any]] | None = None  # what the agent reports (None: nothing)
    snapshots: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)


class MemoryRestoreDriver:
    """A host's domains in memory (see ``RestoreDriver`` in services/ports/)."""

    def __init__(
        self, files: MemoryFiles, default_dir: Path = Path("/var/lib/libvirt/images")
    ) -> None:
        self.files = files
        self.domains: dict[str, MemoryDomain] = {}
        self.networks: set[str] = set()
        self.bridges: set[str] = set()
        self.local = True
        self.default = default_dir
        files.add_dir(default_dir)
        self.dir_problems: dict[Path, str] = {}
        #: agent and file systems of domains defined by a restore
        self.new_agent = True
        self.new_fsinfo: list[dict[str, Any]] | None = None
        self.fail: dict[str, list[BaseException]] = {}
        self.fault: Fault | None = None
        self.calls: list[str] = []
        self.console = ""
        self.graceful = True  # a shutdown request is obeyed
        self.pacemaker: dict[str, str] = {}  # uuid -> why pacemaker owns the domain
        self.cib_unknown: str | None = None  # the CIB could not be read: why

    def add(self, xml: str, power: PowerState = PowerState.RUNNING, **kw: Any) -> MemoryDomain:
        """A domain that exists before the test (not an operation: no fault, no call)."""
        shape = inspect_xml(xml)
        dom = MemoryDomain(shape.uuid, shape.name, xml, power, **kw)
        self.domains[dom.uuid] = dom
        return dom

    # --- host ----------------------------------------------------------------------------------

    def is_local(self, uri: str) -> bool:
        return self.local

    def default_dir(self, uri: str) -> Path:
        return self.default

    def refresh_default_pool(self, uri: str) -> None:
        return None

    def dir_problem(self, path: Path) -> str | None:
        return self.dir_problems.get(path)

    def nic_problem(self, uri: str, nic: XmlNic) -> str | None:
        if nic.type == "network" and nic.source not in self.networks:
            return f"network '{nic.source}' does not exist on {uri}"
        if nic.type == "bridge" and nic.source not in self.bridges:
            return f"bridge '{nic.source}' does not exist on {uri}"
        return None

    def used_macs(self, uri: str) -> set[str]:
        out: set[str] = set()
        for dom in self.domains.values():
            root = ET.fromstring(dom.xml)
            out |= {m.get("address", "").lower() for m in root.findall("./devices/interface/mac")}
        return out

    def inspect(self, xml: str) -> DomainShape:
        return inspect_xml(xml)

    def render(self, xml: str, plan: RestorePlan) -> str:
        return render_xml(xml, plan)

    # --- domains -------------------------------------------------------------------------------

    def domain_named(self, uri: str, name: str) -> str | None:
        return next((d.uuid for d in self.domains.values() if d.name == name), None)

    def domain(self, uri: str, uuid: str) -> LiveDomain | None:
        d = self.domains.get(uuid)
        if d is None:
            return None
        return LiveDomain(uuid, d.name, d.power, d.xml, list(d.snapshots), list(d.checkpoints))

    def domain_facts(self, uri: str, uuid: str) -> DomainFacts | None:
        """The ``Hypervisor`` port's read of the same domains (the libvirt adapter's parser:
        its metadata marker), plus what ``pacemaker`` says of them: uuid → owner, or
        ``cib_unknown`` when the CIB could not be read."""
        d = self.domains.get(uuid)
        if d is None:
            return None
        state = {PowerState.RUNNING: 1, PowerState.PAUSED: 3, PowerState.SHUT_OFF: 5}
        facts = facts_from_xml(d.xml, uri=uri, hostname="memory", state=state.get(d.power, 0))
        if facts.cluster_managed is None and uuid in self.pacemaker:
            return replace(facts, cluster_managed=self.pacemaker[uuid])
        if facts.cluster_managed is None and self.cib_unknown:
            return replace(facts, cluster_unknown=self.cib_unknown)
        return facts

    def shutdown(self, uri: str, uuid: str, timeout: float) -> str:
        d = self._op("shutdown", uuid)
        if d.power is PowerState.SHUT_OFF:
            return "already shut off"
        how = "forced (the VM was paused)"
        if d.power is not PowerState.PAUSED:
            how = "shutdown through the guest agent" if d.agent else "ACPI shutdown"
            if not self.graceful:
                how = f"{how} did not finish within {timeout:g} s: forced off"
        d.power = PowerState.SHUT_OFF
        return how

    def undefine(self, uri: str, uuid: str) -> None:
        d = self._op("undefine", uuid)
        if d.power is not PowerState.SHUT_OFF:
            raise RestoreDefineFailed("undefine: the domain is running", vm=d.name)
        del self.domains[uuid]

    def define(self, uri: str, xml: str) -> str:
        self._op("define")
        shape = inspect_xml(xml)
        uuid = shape.uuid or str(uuidlib.uuid4())
        old = self.domains.get(uuid)
        if old is None and self.domain_named(uri, shape.name) is not None:
            raise RestoreDefineFailed(f"domain '{shape.name}' already exists", vm=shape.name)
        if old is not None:
            old.xml, old.name = xml, shape.name
        else:
            self.domains[uuid] = MemoryDomain(
                uuid, shape.name, xml, agent=self.new_agent, fsinfo=self.new_fsinfo
            )
        return uuid

    def start(self, uri: str, uuid: str) -> None:
        d = self._op("start", uuid)
        d.power = PowerState.RUNNING

    def wait_for_agent(self, uri: str, uuid: str, timeout: float) -> bool:
        d = self.domains.get(uuid)
        return d is not None and d.power is PowerState.RUNNING and d.agent

    def guest_filesystems(self, uri: str, uuid: str) -> list[dict[str, Any]] | None:
        d = self.domains.get(uuid)
        if d is None or d.power is not PowerState.RUNNING or not d.agent:
            return None
        return d.fsinfo

    def console_tail(self, uri: str, uuid: str, lines: int = 20) -> str:
        return "\n".join(self.console.splitlines()[-lines:])

    def remove(self, uri: str, uuid: str) -> None:
        self._op("remove")
        self.domains.pop(uuid, None)

    def image_size(self, path: Path, fmt: str, target: str) -> int:
        self._op("image_size")
        if path not in self.files.files:
            raise RestoreVerifyFailed(
                f"{path}: no such file", target=target, why="unreadable image"
            )
        size = len(self.files.files[path])
        return -(-size // 512) * 512 if fmt == "qcow2" else size

    # --- inside --------------------------------------------------------------------------------

    def _op(self, op: str, uuid: str | None = None) -> MemoryDomain:
        self.calls.append(op)
        if self.fault is not None:
            self.fault(op, ())
        errors = self.fail.get(op)
        if errors:
            raise errors.pop(0)
        if uuid is None:
            return MemoryDomain("", "", "")
        d = self.domains.get(uuid)
        if d is None:
            raise VmDeleted(vm=uuid, host="memory")
        return d
