"""The audit log (domain/audit.py): record a change, list them (``vmvault audit list``,
``GET /api/v1/audit``). The API's middleware and the CLI's entry point record; nothing else
writes, and nothing updates or deletes an entry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from vmvault.domain.audit import AuditEntry, clip
from vmvault.domain.inputs import check_count
from vmvault.services.ports import UnitOfWorkFactory

#: The most entries one page lists.
MAX_PAGE = 1000


class AuditService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def record(
        self,
        actor: str,
        role: str | None,
        action: str,
        target: str | None,
        status: int,
        remote: str,
    ) -> AuditEntry:
        entry = AuditEntry(
            self.clock(), clip(actor) or "", role, clip(action) or "", clip(target), status, remote
        )
        with self.uow() as uow:
            uow.audit.add(entry)
            uow.commit()
        return entry

    def list_entries(
        self,
        actor: str | None = None,
        since: timedelta | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AuditEntry], int]:
        """Newest first: a page of ``limit`` entries from ``offset``, and how many match."""
        check_count(limit, "limit", 1, MAX_PAGE)
        check_count(offset, "offset", 0, 2**31)
        start = self.clock() - since if since is not None else None
        with self.uow() as uow:
            return uow.audit.find(actor, start, limit, offset)
