"""Instant recovery (docs/restore.md, "Instant recovery"): the plan and the rules that need no
libvirt.

An instant restore runs the VM from the point's export at once and copies its disks to local
storage while it runs:

1. the point is exported (an ``export`` job's NBD server, on a unix socket next to the disks,
   so QEMU — user ``libvirt-qemu`` — can reach it);
2. each disk becomes a local qcow2 **overlay** whose backing file is that export
   (``DIR/.NAME-vda.instant.qcow2``): the guest's writes stay local, its reads of untouched
   blocks go to the vault;
3. the VM is defined (the as-new XML: new name, uuid and MACs; or, for ``--replace``, the VM's
   own identity) with every disk on its overlay and ``error_policy``/``rerror_policy`` ``stop``,
   so a failing export pauses the guest on the I/O error instead of handing it bad data;
4. it is started; the job reports when its guest agent answers;
5. each disk is block-copied (libvirt ``blockCopy``, full: the copy flattens the overlay and
   the export into one image) to its final image (``DIR/NAME-vda.qcow2``);
6. once every copy is in sync, each is **pivoted** (the VM switches to its local image);
7. the definition is persisted on the local images, the overlays and the export removed.

What a killed job's next start does is decided by :func:`resolve` from what the journal says
and what libvirt shows (docs/restore.md, "Instant recovery").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vmvault.domain.restore import RestorePlan

#: The longest unix socket path (sun_path holds 108 bytes with its NUL).
MAX_SOCKET = 107
OVERLAY_SUFFIX = ".instant.qcow2"
SOCKET_SUFFIX = ".instant.sock"


@dataclass(frozen=True)
class InstantDisk:
    """One disk: the overlay the VM starts on, and the local image it is copied to."""

    target: str
    size: int
    overlay: Path
    final: Path
    fmt: str  # of the final image: qcow2 | raw

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "size": self.size,
            "overlay": str(self.overlay),
            "final": str(self.final),
            "fmt": self.fmt,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> InstantDisk:
        return cls(
            str(d["target"]),
            int(str(d["size"])),
            Path(str(d["overlay"])),
            Path(str(d["final"])),
            str(d["fmt"]),
        )


@dataclass(frozen=True)
class InstantPlan:
    socket: Path
    disks: list[InstantDisk]

    @property
    def overlays(self) -> dict[str, Path]:
        return {d.target: d.overlay for d in self.disks}

    @property
    def made(self) -> list[Path]:
        """What an instant restore makes on top of a restore's: overlays and the socket."""
        return [d.overlay for d in self.disks] + [self.socket]


@dataclass(frozen=True)
class CopyState:
    """A disk's block copy as the hypervisor reports it."""

    active: bool
    cur: int
    end: int
    ready: bool  # in sync: a pivot switches at once


def overlay_path(final: Path) -> Path:
    """The overlay of the disk whose local image will be ``final`` (same directory, hidden)."""
    return final.with_name(f".{final.name}{OVERLAY_SUFFIX}")


def socket_path(directory: Path, name: str) -> Path:
    """The export's socket: in the disks' directory, which QEMU can enter (checked up front);
    when the VM's name makes it too long for a unix socket, a short fixed name."""
    path = directory / f".{name}{SOCKET_SUFFIX}"
    if len(str(path).encode()) > MAX_SOCKET:
        path = directory / f".vv{SOCKET_SUFFIX}"
    return path


def plan_instant(plan: RestorePlan) -> InstantPlan:
    """Where the overlays and the socket of ``plan``'s disks go."""
    directory = plan.directory or plan.disks[0].path.parent
    disks = [InstantDisk(d.target, d.size, overlay_path(d.path), d.path, d.fmt) for d in plan.disks]
    return InstantPlan(socket_path(directory, plan.name), disks)


def eta(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far (None before anything was copied)."""
    if done <= 0 or elapsed <= 0 or total <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


class Resolution(StrEnum):
    """What start-up recovery does with an instant restore whose process died."""

    NOTHING = "nothing"  # cleaned up before it died
    REMOVE = "remove"  # the VM was never defined: remove what was made
    FINISH = "finish"  # every disk pivoted: persist, remove overlays
    PIVOT = "pivot"  # every copy is in sync and still running: pivot, then finish
    REBUILD = "rebuild"  # copy unfinished: local images from the point + the overlays
    ROLL_BACK = "roll-back"  # --replace, copy unfinished: the replaced VM back as it was


def resolve(
    *,
    cleaned: bool,
    defined: bool,
    on_local: bool,
    copies_ready: bool,
    replace: bool,
) -> Resolution:
    """The choice (docs/restore.md, "Instant recovery", "Killed"):

    * ``cleaned`` (the job recorded it): nothing left;
    * the VM is not defined: everything the job made is removed (nothing ran from it);
    * every disk of the VM is on its local image (pivoted): persist that, remove overlays;
    * every block copy is still running and in sync: the pivot needs no export (the local
      image has every block), so recovery pivots — the guest never notices;
    * otherwise the export died with the process and the copy can never finish (QEMU's NBD
      client of libvirt 9.0 does not reconnect): the VM is stopped (it was, or soon would be,
      paused on an I/O error), each local image is rebuilt from the point and the overlay's
      writes committed into it, and the VM is started again if it was running — like after a
      power cut: every write the guest had completed is kept;
    * ``--replace`` in that last case is rolled back instead: the VM it replaced is defined
      and started again on its own images, set aside until the new VM was verified.
    """
    if cleaned:
        return Resolution.NOTHING
    if not defined:
        return Resolution.REMOVE
    if on_local:
        return Resolution.FINISH
    if copies_ready:
        return Resolution.PIVOT
    return Resolution.ROLL_BACK if replace else Resolution.REBUILD
