"""Who am I, API tokens and the audit log (``/api/v1/whoami``, ``/tokens``, ``/audit``).

``whoami`` needs a reader's token; everything else here is an admin's (design.md §6). A new
token's text is in the answer to its ``POST`` once (with ``Cache-Control: no-store``) and never
again: the catalog keeps only its hash (domain/tokens.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.requests import TokenCreate
from vmvault.api.routes.common import PAGE, Limit, Offset, paged, set_total
from vmvault.bootstrap import Services
from vmvault.domain.access import Principal, Role
from vmvault.domain.job import parse_since


class WhoAmIDoc(BaseModel):
    name: str
    role: Role


class TokenDoc(BaseModel):
    name: str
    role: Role
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedDoc(TokenDoc):
    token: str = Field(description="the token: shown this once, never again")


class AuditDoc(BaseModel):
    at: datetime
    actor: str = Field(description="the token's name, 'anonymous', or local:<unix user>")
    role: str | None
    action: str = Field(description="'METHOD /path' or 'vmvault COMMAND'")
    target: str | None
    status: int = Field(description="the HTTP status, or the CLI's exit code (remote 'cli')")
    remote: str = Field(description="the client's address, or 'cli'")


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    admin = [needs(Role.ADMIN)]

    @router.get("/whoami", response_model=WhoAmIDoc, responses=responses())
    def whoami(who: Annotated[Principal, needs(Role.READER)]) -> dict[str, Any]:
        """The name and role of the token the request carries."""
        return {"name": who.name, "role": who.role.value}

    @router.get("/tokens", response_model=list[TokenDoc], responses=responses(), dependencies=admin)
    def tokens() -> list[dict[str, Any]]:
        """Every token, revoked ones included (never a token's secret)."""
        return [documents.token_doc(t) for t in services.tokens.list_tokens()]

    @router.post(
        "/tokens", status_code=201, response_model=TokenCreatedDoc, responses=responses(409)
    )
    def create_token(
        body: TokenCreate,
        request: Request,
        response: Response,
        who: Annotated[Principal, needs(Role.ADMIN)],
    ) -> dict[str, Any]:
        """A new token: its text is in this answer, and nowhere ever again."""
        request.state.audit_target = body.name
        token, text = services.tokens.create(body.name, body.role, who.name)
        response.headers["Cache-Control"] = "no-store"
        return documents.token_doc(token) | {"token": text}

    @router.delete(
        "/tokens/{name}", response_model=TokenDoc, responses=responses(404), dependencies=admin
    )
    def revoke_token(name: str) -> dict[str, Any]:
        """Revoke a token: the next request with it is refused (401)."""
        return documents.token_doc(services.tokens.revoke(name))

    @router.get(
        "/audit",
        response_model=list[AuditDoc],
        responses={**paged("audit entries"), **responses()},
        dependencies=admin,
    )
    def audit(
        response: Response,
        actor: str | None = None,
        since: Annotated[
            str | None, Query(description="only entries this long ago or later: 24h, 7d…")
        ] = None,
        limit: Limit = PAGE,
        offset: Offset = 0,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first; ``X-Total-Count``: how many entries match."""
        window = parse_since(since) if since else None
        found, total = services.audit.list_entries(actor, window, limit, offset)
        set_total(response, total)
        return [documents.audit_doc(e) for e in found]

    return router
