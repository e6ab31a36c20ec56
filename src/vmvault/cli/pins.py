"""``vmvault points protect|unprotect``: pinned points, which retention never removes (in the
``points`` group: :mod:`vmvault.cli.points` registers them)."""

from __future__ import annotations

from vmvault.cli import remote
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.render import emit_json, out


def points_protect(point_id: str, json_: JsonOpt = False) -> None:
    """Pin a recovery point: retention never removes it."""
    _pin(point_id, True, json_)


def points_unprotect(point_id: str, json_: JsonOpt = False) -> None:
    """Unpin a recovery point: retention decides about it again."""
    _pin(point_id, False, json_)


def _pin(point_id: str, protected: bool, json_: bool) -> None:
    """The point's document as ``points show`` has it (every vault holding it)."""
    if remote.active():
        doc = remote.post(f"/points/{remote.part(point_id)}/protect", {"protected": protected})
    else:
        from vmvault.documents import point_doc

        p = services().protection.pin(point_id, protected)
        doc = point_doc(p, services().point_listing.holders([p.id]).get(p.id))
    if json_:
        emit_json(doc)
    else:
        out.print(f"point {doc['id']} {'protected' if protected else 'unprotected'}", markup=False)
