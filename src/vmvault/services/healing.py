"""Self-healing as a use case: which vaults hold a point, verify-and-heal, restore's fallback.

A point keeps its id in every vault that holds it: its own vault (``RecoveryPoint.vault``)
and its copies (``uow.copies``).  The **holders** of a point for a repair of vault V are its
own vault first, then its copies by vault name, V left out (:func:`holdings.holders`).

* **Verify** (:meth:`Healing.verify_point`): every missing or corrupt chunk of the point in V
  is repaired from the holders (:class:`~vmvault.dataplane.heal.PointHealer`); each healed
  batch (one per disk) is journaled as a ``healed`` step naming each chunk and the vault it
  came from, and logged.  What no holder can supply stays: the point is marked damaged in V
  (``uow.copies.set_damaged``) with the byte ranges of each disk; a verify that finds the
  point intact (after healing) clears the mark.
* **Restore** (:meth:`Healing.reading_store`): a point marked damaged in the vault it would be
  read from is refused with ``POINT_DAMAGED`` before anything changes, naming the holders not
  marked damaged — unless the user named no vault and such a holder exists: then the restore
  reads from that vault (and says so).  A vault the user named is never replaced.  The store it
  reads through falls back to the other holders for a chunk found damaged on the way
  (:class:`~vmvault.dataplane.heal.HealingStore`), repairing the vault; :meth:`Healing.report`
  journals and logs what was healed, and marks the point damaged when the read failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from vmvault.dataplane.heal import HealedChunk, HealingStore, Holder, PointHealer
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.restore import PointVerifyReport, VerifyReport, verify_point
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import PointDamaged
from vmvault.domain.job import JournalStep
from vmvault.domain.recovery_point import DamagedDisk, RecoveryPoint, describe_damage
from vmvault.services import holdings
from vmvault.services.context import Service, ServiceContext
from vmvault.services.jobs import JobContext

#: The journal step of a batch of chunks healed (one per disk and verify or restore).
HEALED = "healed"
#: The journal step of a point found damaged (damage recorded in the catalog).
DAMAGED = "damaged"

Progress = Callable[[int, int], None]


def findings(steps: Sequence[JournalStep]) -> dict[str, list[dict[str, Any]]]:
    """What a verify or restore job healed and found damaged, from its journal: ``healed``
    (each chunk: point, vault, disk, chunk, ``from`` the vault it came from) and ``damaged``
    (each point marked: point, vault, disks with byte ranges)."""
    healed: list[dict[str, Any]] = []
    damaged: list[dict[str, Any]] = []
    for step in steps:
        d = step.data
        if step.step == HEALED:
            where = {"point": d["point"], "vault": d["vault"], "disk": d["disk"]}
            healed += [{**where, **c} for c in d["chunks"]]
        elif step.step == DAMAGED and d.get("disks"):
            damaged.append({"point": d["point"], "vault": d["vault"], "disks": d["disks"]})
    return {"healed": healed, "damaged": damaged}


@dataclass
class PointHealth:
    """What verify found in one point in one vault, after healing."""

    point_id: str
    vault: str
    report: PointVerifyReport
    healed: list[HealedChunk] = field(default_factory=list)
    damage: list[DamagedDisk] = field(default_factory=list)
    #: lines for the job log: problems left (chunks, indexes, the manifest)
    problems: list[str] = field(default_factory=list)


@dataclass
class ReadPlan:
    """Where a restore reads a point from, through a store that heals on the way."""

    vault: str
    store: VaultStore
    healer: PointHealer
    note: str | None = None  # said in the job log (reading from a copy)


class Healing(Service):
    """Healing for one job: the other vaults' stores are opened once, on first need (an
    encrypted vault's key file is unwrapped once per job, not per point)."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self._stores: dict[str, VaultStore] = {}

    def _holders(self, point: RecoveryPoint, exclude: str) -> list[Holder]:
        with self.uow() as uow:
            names = holdings.holders(uow, point, exclude)
        return [Holder(n, partial(self._open, n)) for n in names]

    def _open(self, name: str) -> VaultStore:
        if name not in self._stores:
            self._stores[name] = self.vaults.open_store(self.vaults.resolve(name))
        return self._stores[name]

    # --- verify ---------------------------------------------------------------------------------

    def verify_point(
        self,
        store: VaultStore,
        vault: str,
        point: RecoveryPoint,
        ctx: JobContext,
        progress: Progress | None = None,
    ) -> PointHealth:
        """Verify ``point`` as held in ``vault`` (``store``), heal it from the other holders,
        record what was healed and the damage left (or clear the damage mark)."""
        report = verify_point(store, point.id, workers=self.workers, progress=progress)
        health = PointHealth(point.id, vault, report)
        bad = {t: r for t, r in report.disks.items() if not r.ok}
        healer = PointHealer(
            store,
            vault,
            point.id,
            self._holders(point, vault) if bad else [],
            lambda: {t: r.index for t, r in report.disks.items() if r.index is not None},
        )
        for target, disk in bad.items():
            out = healer.heal(target, _by_position(disk), set(disk.corrupt))
            if out.healed:
                self._journal_healed(ctx, point.id, vault, target, out.healed)
            health.healed += out.healed
            left = [bytes.fromhex(c) for c in out.failed]
            if left:
                ranges = disk.index.ranges_of(left) if disk.index is not None else ()
                health.damage.append(DamagedDisk(target, ranges))
                for cid in left:
                    state = "missing" if cid in disk.missing else "corrupt"
                    if state == "corrupt":  # the next backup of the same data stores it again
                        store.chunks.quarantine(cid)
                    at = DamagedDisk(target, disk.index.ranges_of([cid]) if disk.index else ())
                    health.problems.append(
                        f"chunk {cid.hex()} {state} ({at.describe()}), "
                        f"not healed: {out.failed[cid.hex()]}"
                    )
        self._structural_damage(point, report, health)
        self._record_damage(ctx, point, vault, health.damage)
        return health

    def _structural_damage(
        self, point: RecoveryPoint, report: PointVerifyReport, health: PointHealth
    ) -> None:
        """A manifest or index that cannot be read damages whole disks (not healed here)."""
        sizes = {d.target: d.size for d in point.disks if not d.excluded}
        for p in report.problems:
            health.problems.append(f"{p['code']}: {p['message']}")
            disks = [p["disk"]] if "disk" in p else list(sizes)
            for target in disks:
                health.damage.append(DamagedDisk(target, ((0, sizes.get(target, 0)),)))

    def _journal_healed(
        self, ctx: JobContext, point_id: str, vault: str, target: str, healed: list[HealedChunk]
    ) -> None:
        ctx.record(
            HEALED,
            point=point_id,
            vault=vault,
            disk=target,
            chunks=[{"chunk": h.chunk, "from": h.source} for h in healed],
        )
        for h in healed:
            ctx.log(
                f"point {point_id}: chunk {h.chunk} ({DamagedDisk(target, h.ranges).describe()}) "
                f"healed in vault {vault} from vault {h.source}"
            )

    def _record_damage(
        self, ctx: JobContext, point: RecoveryPoint, vault: str, damage: list[DamagedDisk]
    ) -> None:
        with self.uow() as uow:
            before = holdings.damage_in(uow, point, vault)
            if not damage and before is None:
                return
            uow.copies.set_damaged(point.id, vault, damage or None)
            uow.commit()
        if damage:
            ctx.record(DAMAGED, point=point.id, vault=vault, disks=[d.to_json() for d in damage])
            ctx.log(f"point {point.id} marked damaged in vault {vault}: {describe_damage(damage)}")
        else:
            ctx.record(DAMAGED, point=point.id, vault=vault, disks=None)
            ctx.log(f"point {point.id} is intact in vault {vault}: damage mark cleared")

    # --- restore --------------------------------------------------------------------------------

    def reading_store(
        self, point: RecoveryPoint, vault: str | None = None, *, named: bool = False
    ) -> ReadPlan:
        """The store a restore of ``point`` reads through (``vault``: default its own;
        ``named``: the user named it, ``--from-vault``).

        Marked damaged there: refused with ``POINT_DAMAGED`` (naming the holders not marked
        damaged) when the vault was named or no other holder is intact; else the first intact
        holder is read instead."""
        vault = vault or point.vault
        note = None
        with self.uow() as uow:
            damage = holdings.damage_in(uow, point, vault)
            if damage is not None:
                intact = [
                    v
                    for v in holdings.holders(uow, point, exclude=vault)
                    if holdings.damage_in(uow, point, v) is None
                ]
                if named or not intact:
                    raise _damaged(point, vault, damage, intact)
                note = (
                    f"point {point.id} is marked damaged in vault {vault} "
                    f"({describe_damage(damage)}): reading it from vault {intact[0]}"
                )
                vault = intact[0]
        base = self.vaults.open_store(self.vaults.resolve(vault))
        manifest = base.read_manifest(point.id)

        def indexes() -> dict[str, DiskIndex]:
            return {
                d.target: base.read_point_index(manifest, d.target)
                for d in manifest.disks
                if d.index is not None
            }

        healer = PointHealer(base, vault, point.id, self._holders(point, vault), indexes)
        return ReadPlan(vault, HealingStore(base, healer), healer, note)

    def report(self, plan: ReadPlan, point: RecoveryPoint, ctx: JobContext) -> None:
        """After a restore read: journal and log what was healed; mark what was not."""
        by_disk: dict[str, list[HealedChunk]] = {}
        for h in plan.healer.outcome.healed:
            by_disk.setdefault(h.disk, []).append(h)
        for target, healed in by_disk.items():
            self._journal_healed(ctx, point.id, plan.vault, target, healed)
        damage = [
            DamagedDisk(t, plan.healer.indexes()[t].ranges_of(cids))
            for t, cids in plan.healer.unhealed.items()
            if cids
        ]
        if damage:
            self._record_damage(ctx, point, plan.vault, damage)


def _damaged(
    point: RecoveryPoint, vault: str, damage: tuple[DamagedDisk, ...], intact: list[str]
) -> PointDamaged:
    """The refusal; it names the holders not marked damaged (none: no vault to read from)."""
    where = f"intact in vault {', '.join(intact)}" if intact else "no other vault holds it intact"
    return PointDamaged(where, point=point.id, vault=vault, where=describe_damage(damage))


def _by_position(disk: VerifyReport) -> list[bytes]:
    """The disk's missing and corrupt chunks in the order they first appear on the disk."""
    bad = {*disk.missing, *disk.corrupt}
    ids = disk.index.ids if disk.index is not None else []
    first = list(dict.fromkeys(cid for cid in ids if cid in bad))
    return first + sorted(bad - set(first))
