"""The in-memory world: domains, disks with dirty sets per checkpoint, the guest agent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmvault.domain.consistency import HookOutcome, HookState
from vmvault.domain.errors import AgentFreezeTimeout, FreezeFailed
from vmvault.domain.inventory import AgentReport
from vmvault.domain.vm import Disk, DomainFacts, PowerState
from vmvault.hypervisor.pull_dir import pull_dir_problems_here

if TYPE_CHECKING:
    from vmvault.hypervisor.memory.driver import MemorySession

BLOCK = 64 * 1024  # dirty-tracking granularity, as QEMU's default bitmap granularity


class Killed(BaseException):
    """The process "died" here (a test's SIGKILL): nothing after it runs, no clean-up."""


@dataclass
class FakeAgent:
    """The guest agent: ``mode`` ``ok`` | ``hang`` (no answer) | ``fail`` (freeze refused)."""

    mode: str = "ok"
    thaw_fails: bool = False
    frozen: bool = False
    freezes: int = 0
    filesystems: int = 2
    #: what the guest's fsfreeze hook dispatcher reports for a freeze (default: no hooks)
    hooks: HookOutcome = field(default_factory=lambda: HookOutcome(HookState.NONE))

    def freeze(self, vm: str) -> int:
        if self.mode == "hang":
            raise AgentFreezeTimeout("the agent did not answer guest-ping", vm=vm, seconds=5)
        if self.mode == "fail":
            raise FreezeFailed("guest-fsfreeze-freeze failed", vm=vm)
        self.frozen = True
        self.freezes += 1
        return self.filesystems

    def thaw(self) -> bool:
        if self.thaw_fails:
            return False
        self.frozen = False
        return True


@dataclass
class MemoryDisk:
    target: str
    size: int
    format: str = "qcow2"
    data: bytearray = field(default_factory=bytearray)
    #: checkpoint name → blocks written since it was created
    bitmaps: dict[str, set[int]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = bytearray(self.size)

    def write(self, offset: int, payload: bytes) -> None:
        self.data[offset : offset + len(payload)] = payload
        blocks = range(offset // BLOCK, (offset + len(payload) - 1) // BLOCK + 1)
        for dirty in self.bitmaps.values():
            dirty.update(blocks)

    def as_disk(self) -> Disk:
        return Disk(self.target, "file", "disk", self.format, f"/mem/{self.target}.{self.format}")


@dataclass
class MemoryDomain:
    uuid: str
    name: str
    disks: list[MemoryDisk]
    power: PowerState = PowerState.RUNNING
    agent: FakeAgent | None = field(default_factory=FakeAgent)
    checkpoints: list[str] = field(default_factory=list)  # libvirt's metadata, oldest first
    job: MemorySession | None = None  # the running backup job
    owner: MemorySession | None = None  # the live session holding the VM ("the lock")
    paused_by_backup: bool = False
    #: what the hypervisor adapter reports of its cluster ownership (``DomainFacts``)
    cluster_managed: str | None = None
    cluster_unknown: str | None = None

    def disk(self, target: str) -> MemoryDisk:
        return next(d for d in self.disks if d.target == target)

    def facts(self, uri: str) -> DomainFacts:
        return DomainFacts(
            uuid=self.uuid,
            name=self.name,
            host_uri=uri,
            hostname="memory",
            group="memory",
            power_state=self.power,
            disks=tuple(d.as_disk() for d in self.disks),
            nics=(),
            agent_channel=self.agent is not None,
            fingerprint="-".join(f"{d.target}:{d.size}" for d in self.disks),
            cluster_managed=self.cluster_managed,
            cluster_unknown=self.cluster_unknown,
        )


class MemorySource:
    """One disk of a point in time: the bytes as they were at ``begin``."""

    def __init__(self, data: bytes, dirty: set[int] | None) -> None:
        self._data = data
        self.size = len(data)
        self._dirty = dirty

    def extents(self) -> Iterator[tuple[int, int, bool]]:
        yield (0, self.size, True)

    def pread_into(self, buf: memoryview, offset: int) -> None:
        buf[:] = self._data[offset : offset + len(buf)]

    def dirty_extents(self) -> list[tuple[int, int]]:
        if self._dirty is None:
            return [(0, self.size)]
        out: list[tuple[int, int]] = []
        for block in sorted(self._dirty):
            start, end = block * BLOCK, min((block + 1) * BLOCK, self.size)
            if out and out[-1][0] + out[-1][1] == start:
                out[-1] = (out[-1][0], end - out[-1][0])
            else:
                out.append((start, end - start))
        return out


class MemoryHypervisor:
    """Domains in memory: the ``Hypervisor`` read port and the world the driver acts on."""

    def __init__(self, uri: str = "memory:///") -> None:
        self.uri = uri
        self.domains: dict[str, MemoryDomain] = {}
        self.dead = False
        self.sessions: list[MemorySession] = []

    def add(self, dom: MemoryDomain) -> MemoryDomain:
        self.domains[dom.uuid] = dom
        return dom

    def alive(self) -> None:
        if self.dead:
            raise Killed("this process is dead")

    def kill(self) -> None:
        """Every open session dies where it stands; every call raises until :attr:`dead` is
        cleared (the next process)."""
        self.dead = True
        for s in self.sessions:
            s.alive = False
        self.sessions.clear()

    def dom(self, uuid: str) -> MemoryDomain:
        self.alive()
        return self.domains[uuid]

    # --- Hypervisor (read part) -------------------------------------------------------------

    def pull_dir_problems(self, directory: str) -> list[str]:
        return pull_dir_problems_here(directory)  # this node's files, whatever the hypervisor

    def hostname(self, uri: str) -> str:
        self.alive()
        return "memory"

    def list_domains(self, uri: str) -> list[DomainFacts]:
        self.alive()
        return [d.facts(uri) for d in self.domains.values()]

    def domain_facts(self, uri: str, uuid: str) -> DomainFacts | None:
        self.alive()
        d = self.domains.get(uuid)
        return d.facts(uri) if d is not None else None

    def agent_report(self, uri: str, uuid: str, timeout: int) -> AgentReport:
        d = self.dom(uuid)
        ok = d.agent is not None and d.agent.mode != "hang"
        return AgentReport(responded=ok, version="8.0.0" if ok else None)
