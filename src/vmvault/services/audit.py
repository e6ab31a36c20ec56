"""The audit log (domain/audit.py): record a change, list them (``vmvault audit list``,
``GET /api/v1/audit``). The API's middleware and the CLI's entry point record; nothing else
writes, and nothing updates or deletes an entry.

Anonymous refusals are collapsed (domain/audit.py :class:`AnonymousRefusals`): whoever can
reach the port cannot grow the log without bound."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from vmvault.domain.audit import ANONYMOUS, AnonymousRefusals, AuditEntry, clip
from vmvault.domain.inputs import check_page
from vmvault.services.ports import UnitOfWorkFactory


class AuditService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock
        self._refusals = AnonymousRefusals()
        self._lock = threading.Lock()

    def record(
        self,
        actor: str,
        role: str | None,
        action: str,
        target: str | None,
        status: int,
        remote: str,
    ) -> AuditEntry | None:
        """Write one entry; None when it is an anonymous refusal only counted (its window's
        summary is written with a later entry)."""
        now = self.clock()
        with self._lock:
            summaries = [
                AuditEntry(now, ANONYMOUS, None, clip(r.action) or "", r.target, r.status, r.remote)
                for r in self._refusals.ended(now)
            ]
            written = not (actor == ANONYMOUS and status >= 400) or self._refusals.admit(
                remote, status, action, now
            )
        entry = AuditEntry(
            now, clip(actor) or "", role, clip(action) or "", clip(target), status, remote
        )
        entries = summaries + ([entry] if written else [])
        if entries:
            with self.uow() as uow:
                for e in entries:
                    uow.audit.add(e)
                uow.commit()
        return entry if written else None

    def list_entries(
        self,
        actor: str | None = None,
        since: timedelta | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AuditEntry], int]:
        """Newest first: a page of ``limit`` entries from ``offset``, and how many match."""
        check_page(limit, offset)
        start = self.clock() - since if since is not None else None
        with self.uow() as uow:
            return uow.audit.find(actor, start, limit, offset)
