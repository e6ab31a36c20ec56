"""The API's audit trail: every request that may change something is recorded after its
answer (domain/audit.py) — every method but GET, HEAD and OPTIONS, whatever the answer:
refused ones (400, 401, 403, 404, 413…) and failed ones (500) too.

An ASGI middleware (:class:`AuditTrail`), outside the routes and the error handlers, so it
sees every answer's status — the body limit's 413, an exception's 500 — and the principal the
route's :func:`~vmvault.api.auth.needs` left on ``request.state`` (no valid token: actor
``anonymous``; a token whose role is too low: the token's name, answered 403).  A request
refused before that check ran (no route, a method the route does not take, a body too large or
malformed) has no principal there: the trail checks its token itself. The target is
what a route put in ``request.state.audit_target`` (e.g. the name of a token it created), else
the route's path parameters. The body is never recorded.

The entry is written in a worker thread after the answer was sent; a write that fails is
logged and the answer stays as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmvault.api.auth import Authenticate, bearer_token
from vmvault.domain.access import Principal
from vmvault.domain.audit import ANONYMOUS, READ_METHODS
from vmvault.domain.errors import AuthRequired

log = logging.getLogger("vmvault.audit")

#: ``record(actor, role, action, target, status, remote)``: AuditService.record.
Record = Callable[[str, str | None, str, str | None, int, str], Any]


class AuditTrail:
    def __init__(self, app: ASGIApp, record: Record, authenticate: Authenticate) -> None:
        self.app = app
        self.record = record
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes is answered 500 (api/errors.py)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            await run_in_threadpool(self._write, scope, status)

    def _write(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        who = state.get("principal")
        if who is None:  # refused before the route's role check (404, 405, 413, bad JSON)
            who = self._principal(scope)
        actor, role = (
            (who.name, who.role.value) if isinstance(who, Principal) else (ANONYMOUS, None)
        )
        target = state.get("audit_target")
        if target is None:
            params = scope.get("path_params") or {}
            target = ",".join(str(v) for v in params.values()) or None
        client = scope.get("client")
        remote = str(client[0]) if client else "unknown"
        action = f"{scope['method']} {scope.get('path', '')}"
        try:
            self.record(actor, role, action, target, status, remote)
        except Exception:
            log.exception("audit entry not written: %s %s by %s", action, status, actor)

    def _principal(self, scope: Scope) -> Principal | None:
        try:
            return self.authenticate(bearer_token(Request(scope)))
        except AuthRequired:
            return None
        except Exception:
            log.exception("token of a refused request not checked")
            return None
