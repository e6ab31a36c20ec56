"""API tokens: create, list, revoke, and who holds a token (``vmvault token …``, the
``/api/v1/tokens`` routes, and every API request's authentication).

The token's format, its hashing and why SHA-256 is the right hash for it are the domain's
(:mod:`vmvault.domain.tokens`). A token's name is unique for ever: a revoked token keeps its
row and its name, so each name in the audit log is one token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vmvault.domain import tokens
from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import TokenNotFound
from vmvault.domain.tokens import ApiToken
from vmvault.services.ports import UnitOfWorkFactory


class TokenService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def create(self, name: str, role: Role, created_by: str) -> tuple[ApiToken, str]:
        """A new token and its text — the one time the text exists outside its holder."""
        tokens.validate_token_name(name)
        issued = tokens.issue()
        token = ApiToken(name, role, issued.public_id, self.clock(), created_by)
        with self.uow() as uow:  # TokenExists from add when the name is taken
            uow.tokens.add(token, issued.secret_sha256)
            uow.commit()
        return token, issued.text

    def list_tokens(self) -> list[ApiToken]:
        with self.uow() as uow:
            return uow.tokens.all()

    def revoke(self, name: str) -> ApiToken:
        """Revoke at once: the next request with the token is refused (a revoked one stays
        as it was revoked)."""
        with self.uow() as uow:
            token = uow.tokens.get(name)
            if token is None:
                raise TokenNotFound(name=name)
            if token.revoked_at is None:
                uow.tokens.set_revoked(name, self.clock())
                uow.commit()
                token = uow.tokens.get(name) or token
            return token

    def authenticate(self, text: str) -> Principal | None:
        """Who holds the token ``text``; None when it is malformed, unknown or revoked.

        Writes the token's ``last_used_at`` when it is a minute old or more
        (:func:`~vmvault.domain.tokens.needs_touch`), not at every request."""
        parts = tokens.parse(text)
        if parts is None:
            return None
        with self.uow() as uow:
            found = uow.tokens.by_public_id(parts.public_id)
            if found is None:
                return None
            token, digest = found
            if not tokens.matches(parts.secret, digest) or not token.active:
                return None
            now = self.clock()
            if tokens.needs_touch(token.last_used_at, now):
                uow.tokens.set_last_used(token.name, now)
                uow.commit()
            return token.principal
