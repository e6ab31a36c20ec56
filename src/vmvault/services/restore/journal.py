"""The restore job's journal: the steps it records, and reading them back after a kill.

Each step is recorded (:meth:`JobContext.record`, or :meth:`JobContext.phase` for the steps
that are also phases) *before* the thing it announces can be left half done, so start-up
recovery (:mod:`.clean_up`) always knows every file and every VM a dead job may have
touched.  The table of steps, and what recovery does after each, is in docs/restore.md
("The journal"); the data of each step is built and parsed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmvault.domain.instant import InstantDisk
from vmvault.domain.job import JournalStep
from vmvault.domain.vm import PowerState

# phases (each also a log line ``phase: NAME`` and a cancel point)
READING = "reading"
WRITING = "writing"  # {disks: [{target, path, final}], disks_only}
SWITCHING = "switching"  # --replace: {vm, uuid, uri, was, previous_xml, moves: [...]}
DEFINING = "defining"  # new VM / test: {name, uuid, uri, test, made: [...]}
TESTING = "testing"  # the test VM is started: {name, uuid}
INSTANT = "instant"  # --instant: {name, uuid, uri, socket, disks, final_xml, made, switch}
# steps
STAGING = "staging"  # {target, dirs}: directories made for it, before its first byte
STAGED = "staged"  # {target, path, bytes}: written and verified
WRITTEN = "written"  # --disks-only: {target, path}, an image finished
SHUT_OFF = "shut-off"  # {how}
UNDEFINED = "undefined"  # {}: the VM is no longer defined
SWITCHED = "switched"  # {}: every image in place (renames durable)
DEFINED = "defined"  # {uuid}: the point's (or the new VM's) definition is defined
TEST_REMOVED = "test-removed"  # {}: the test VM and its files are gone
# --instant (docs/restore.md, "Instant recovery"), in this order
EXPORTING = "exporting"  # {job}: the export job serves the point on the socket
OVERLAYS = "overlays"  # {}: every overlay made
INSTANT_DEFINED = "instant-defined"  # {uuid}: the VM is defined on its overlays
STARTED = "started"  # {}: and started
COPYING = "copying"  # {}: the block copies are being started
SYNCED = "synced"  # {}: every copy in sync
PIVOTED = "pivoted"  # {target}: that disk runs on its local image
VERIFIED = "verified"  # {}: --replace: the guest agent answered after the pivot
CLEANED = "cleaned"  # {}: overlays removed, export stopped

#: Power states after which a rolled-back VM is started again.
RUNNING_STATES = (PowerState.RUNNING, PowerState.PAUSED, PowerState.BLOCKED)


@dataclass(frozen=True)
class WriteTarget:
    """An image the job writes: to ``path`` (the staging file, or the final image of a
    ``--disks-only`` restore), to end at ``final``."""

    target: str
    path: Path
    final: Path

    def to_json(self) -> dict[str, str]:
        return {"target": self.target, "path": str(self.path), "final": str(self.final)}


@dataclass(frozen=True)
class Move:
    """One disk of a ``--replace`` switch: ``staging`` is renamed to ``final`` after the
    image at ``final`` is set aside to ``aside`` (None: there was no image there)."""

    target: str
    final: Path
    staging: Path
    aside: Path | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "target": self.target,
            "final": str(self.final),
            "staging": str(self.staging),
            "aside": str(self.aside) if self.aside else None,
        }


@dataclass(frozen=True)
class Switch:
    """A ``--replace`` switch: the VM as it was just before it, and the renames it makes."""

    vm: str
    uuid: str
    uri: str
    was: PowerState
    previous_xml: str
    moves: list[Move]

    @property
    def was_running(self) -> bool:
        return self.was in RUNNING_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "uuid": self.uuid,
            "uri": self.uri,
            "was": self.was.value,
            "previous_xml": self.previous_xml,
            "moves": [m.to_json() for m in self.moves],
        }


@dataclass(frozen=True)
class NewVm:
    """A new VM (or a test VM) about to be placed and defined, and every path it makes
    (images, symlinks, console logs, NVRAM): all checked absent up front, so all ours."""

    name: str
    uuid: str
    uri: str
    test: bool
    made: list[Path]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "uri": self.uri,
            "test": self.test,
            "made": [str(p) for p in self.made],
        }


@dataclass(frozen=True)
class Instant:
    """An instant restore: the VM it defines on overlays backed by the export at ``socket``,
    the definition it persists once pivoted (``final_xml``), every path it may make
    (overlays, local images, symlinks, files: all checked absent up front) and, for
    ``--replace``, the switch of the VM it replaces (images set aside, previous definition)."""

    name: str
    uuid: str
    uri: str
    point: str
    socket: Path
    disks: list[InstantDisk]
    final_xml: str
    made: list[Path]
    links: list[tuple[Path, Path]]  # (symlink, image) made once pivoted
    switch: Switch | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "links": [[str(a), str(b)] for a, b in self.links],
            "name": self.name,
            "uuid": self.uuid,
            "uri": self.uri,
            "point": self.point,
            "socket": str(self.socket),
            "disks": [d.to_json() for d in self.disks],
            "final_xml": self.final_xml,
            "made": [str(p) for p in self.made],
            "switch": self.switch.to_json() if self.switch else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Instant:
        return cls(
            name=str(d["name"]),
            uuid=str(d["uuid"]),
            uri=str(d["uri"]),
            point=str(d["point"]),
            socket=Path(d["socket"]),
            disks=[InstantDisk.from_json(x) for x in d.get("disks", [])],
            final_xml=str(d["final_xml"]),
            made=[Path(p) for p in d.get("made", [])],
            links=[(Path(a), Path(b)) for a, b in d.get("links", [])],
            switch=_switch(d["switch"]) if d.get("switch") else None,
        )


def writing(targets: Iterable[WriteTarget], *, disks_only: bool = False) -> dict[str, Any]:
    """The data of the ``writing`` phase."""
    return {"disks": [t.to_json() for t in targets], "disks_only": disks_only}


@dataclass
class RestoreJournal:
    """A restore job's journal, read back (``uow.jobs.steps``)."""

    writes: list[WriteTarget] = field(default_factory=list)
    disks_only: bool = False
    dirs: list[Path] = field(default_factory=list)  # made for staging, outermost first
    written: set[Path] = field(default_factory=set)  # --disks-only images finished
    switch: Switch | None = None
    new_vm: NewVm | None = None
    instant: Instant | None = None
    export_job: int | None = None
    pivoted: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)  # every step name recorded

    @classmethod
    def read(cls, steps: Iterable[JournalStep]) -> RestoreJournal:
        j = cls()
        for s in steps:
            j.seen.add(s.step)
            d = s.data
            if s.step == WRITING:
                j.disks_only = bool(d.get("disks_only"))
                j.writes = [
                    WriteTarget(str(w["target"]), Path(w["path"]), Path(w["final"]))
                    for w in d.get("disks", [])
                ]
            elif s.step == STAGING:
                j.dirs += [Path(p) for p in d.get("dirs", [])]
            elif s.step == WRITTEN:
                j.written.add(Path(d["path"]))
            elif s.step == SWITCHING:
                j.switch = _switch(d)
            elif s.step == INSTANT:
                j.instant = Instant.from_json(d)
            elif s.step == EXPORTING:
                j.export_job = int(d["job"])
            elif s.step == PIVOTED:
                j.pivoted.add(str(d["target"]))
            elif s.step == DEFINING:
                j.new_vm = NewVm(
                    name=str(d["name"]),
                    uuid=str(d["uuid"]),
                    uri=str(d["uri"]),
                    test=bool(d["test"]),
                    made=[Path(p) for p in d.get("made", [])],
                )
        return j


def _switch(d: dict[str, Any]) -> Switch:
    return Switch(
        vm=str(d["vm"]),
        uuid=str(d["uuid"]),
        uri=str(d["uri"]),
        was=PowerState(d["was"]),
        previous_xml=str(d["previous_xml"]),
        moves=[
            Move(
                str(m["target"]),
                Path(m["final"]),
                Path(m["staging"]),
                Path(m["aside"]) if m.get("aside") else None,
            )
            for m in d.get("moves", [])
        ],
    )
