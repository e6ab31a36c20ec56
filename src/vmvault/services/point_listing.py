"""Listing recovery points: the pages of ``points list`` (CLI, API, console), one point, and
where each point is held (its own vault and the vaults holding a copy, the damage and the soft
deletion in each).

A vault's page is read by the database (the page, its total, the copies of the page's points:
three queries, whatever the number of points); a VM's points in every vault (no vault named)
are read whole, bounded by its retention, and cut.  Reads only: the operations on points
(restore as disk images, delete, verify, GC) are :mod:`vmvault.services.points`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vmvault.domain.inputs import DEFAULT_PAGE, check_page, page_of
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.vm import VmItem
from vmvault.services import holdings
from vmvault.services.context import Service
from vmvault.services.vm_refs import resolve_vm


@dataclass
class PointsPage:
    """A page of ``points list``: the vault listed (None: a VM's points in every vault), the
    points, how many match in all, and where each point of the page is held."""

    vault: str | None
    points: list[RecoveryPoint]
    total: int
    held: dict[str, holdings.Holding]


class PointListing(Service):
    """The reads of recovery points: a vault's (or a VM's) points a page at a time, one point,
    and where each is held (:mod:`vmvault.services.holdings`)."""

    def find_vm(self, ref: str) -> VmItem:
        with self.uow() as uow:
            return resolve_vm(uow, ref)

    def list_points(self, vault_name: str | None, vm_ref: str | None) -> list[RecoveryPoint]:
        """The points the vault holds — taken into it or copied there — newest first; for a
        VM and no vault named, its points in every vault (``holders`` says which)."""
        return self.listing(vault_name, vm_ref)[1]

    def listing(
        self, vault_name: str | None, vm_ref: str | None
    ) -> tuple[str | None, list[RecoveryPoint]]:
        """The vault listed (``vault_name`` resolved; None: a VM's points in every vault) and
        the points, newest first."""
        found = self.page(vault_name, vm_ref, limit=None)
        return found.vault, found.points

    def page(
        self,
        vault_name: str | None,
        vm_ref: str | None,
        limit: int | None = DEFAULT_PAGE,
        offset: int = 0,
    ) -> PointsPage:
        """A page of :meth:`listing` (``limit`` after ``offset``; None: every point), how many
        there are in all and where each point of the page is held — a vault's page read by
        the database (three queries, whatever the number of points); a VM's points in every
        vault (no vault named: bounded by its retention) read whole and cut."""
        if limit is not None:
            check_page(limit, offset)
        if vault_name is None and vm_ref is not None:  # held normally in some vault
            with self.uow() as uow:
                every = uow.points.for_vm(resolve_vm(uow, vm_ref).uuid, deleted=None)
                held = holdings.holdings_of(uow, every)
            live = [p for p in every if held[p.id].vaults]
            points, total = (live, len(live)) if limit is None else page_of(live, limit, offset)
            return PointsPage(None, points, total, {p.id: held[p.id] for p in points})
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            vm = resolve_vm(uow, vm_ref).uuid if vm_ref is not None else None
            points = uow.points.held(vault.name, vm, limit, offset)
            total = uow.points.count_held(vault.name, vm) if limit is not None else len(points)
            held = holdings.holdings_of(uow, points)
        return PointsPage(vault.name, points, total, held)

    def holders(self, point_ids: Sequence[str]) -> dict[str, holdings.Holding]:
        """Where each point is held: every vault (its own first, then those holding a copy)
        and the damage recorded in each (:func:`holdings.holding`)."""
        out: dict[str, holdings.Holding] = {}
        with self.uow() as uow:
            for point_id in point_ids:
                point = uow.points.get(point_id)
                if point is not None:
                    out[point_id] = holdings.holding(uow, point)
        return out

    def where_held(self, points: Sequence[RecoveryPoint]) -> dict[str, holdings.Holding]:
        """:meth:`holders` of points already read (a page of a listing): one query for all
        (:func:`holdings.holdings_of`)."""
        with self.uow() as uow:
            return holdings.holdings_of(uow, points)

    def get(self, point_id: str) -> RecoveryPoint:
        with self.uow() as uow:
            return holdings.known(uow, point_id)
