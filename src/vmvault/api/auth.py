"""Authentication and authorization of API requests (roles: :mod:`vmvault.domain.access`).

Every route except ``/api/v1/health`` declares the role it needs with
``dependencies=[needs(Role.X)]``. The dependency reads ``Authorization: Bearer TOKEN``, asks
the app's authenticator (``app.state.authenticate``: token → :class:`Principal` or None) who
holds it, and refuses with ``AUTH_REQUIRED`` (401: no token, unknown, revoked, malformed) or
``ROLE_REQUIRED`` (403: the role is too low). The principal is left on
``request.state.principal`` for the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import AuthRequired, RoleRequired

#: Who holds a token: its principal, or None when no live token matches.
Authenticate = Callable[[str], Principal | None]

#: A token is short printable ASCII; anything longer is refused before it is looked up.
MAX_TOKEN_CHARS = 200


def bearer_token(request: Request) -> str:
    """The request's bearer token, or :class:`AuthRequired` saying what is wrong."""
    header = request.headers.get("authorization")
    if header is None:
        raise AuthRequired(why="no Authorization header")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthRequired(why="the Authorization header is not 'Bearer TOKEN'")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable():
        raise AuthRequired(why="the token is malformed")
    return token


def principal(request: Request) -> Principal:
    """Who sent the request (authenticated once per request)."""
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    authenticate: Authenticate = request.app.state.authenticate
    who = authenticate(bearer_token(request))
    if who is None:
        raise AuthRequired(why="the token is unknown or revoked")
    request.state.principal = who
    return who


def needs(role: Role) -> Any:
    """The dependency of a route that ``role`` (or a higher one) may call; the role it
    needs is its ``needed_role`` (see :func:`needed_role`)."""

    def check(request: Request) -> Principal:
        who = principal(request)
        if not who.role.allows(role):
            raise RoleRequired(name=who.name, role=who.role.value, needed=role.value)
        return who

    check.needed_role = role  # type: ignore[attr-defined]
    return Depends(check)


def needed_role(route: Any) -> Role | None:
    """The role an API route needs (its :func:`needs` dependency), None when it has none."""
    dependant = getattr(route, "dependant", None)
    found: list[Role] = []
    stack = list(dependant.dependencies) if dependant else []
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, "needed_role", None)
        if isinstance(role, Role):
            found.append(role)
        stack.extend(dep.dependencies)
    return max(found, key=lambda r: r.rank) if found else None
