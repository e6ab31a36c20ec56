"""Fixed test tokens, one per role, and the authenticator that knows them: what
``create_app(services, authenticate=...)`` takes in tests of the routes (the real token store
and its tests are the auth branch's)."""

from __future__ import annotations

from vmvault.domain.access import Principal, Role

TOKENS = {role: f"test-token-{role.value}" for role in Role}
_BY_TOKEN = {token: Principal(f"test-{role.value}", role) for role, token in TOKENS.items()}


def authenticate(token: str) -> Principal | None:
    return _BY_TOKEN.get(token)


def bearer(role: Role = Role.ADMIN) -> dict[str, str]:
    """The header a request of a principal with ``role`` carries."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}
