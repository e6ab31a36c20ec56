"""API tokens: their format, how they are stored and checked (roles: :mod:`.access`).

A token is ``vmv_<id>_<secret>``:

===========  ===================================================================================
``vmv_``     a fixed prefix, so a leaked token is recognisable (secret scanners, log filters)
``<id>``     16 hex digits, random, public: the catalog's lookup key (``api_tokens.public_id``)
``<secret>`` 43 characters of URL-safe base64: 32 random bytes (256 bits) from :mod:`secrets`
===========  ===================================================================================

The catalog keeps the id and the SHA-256 of the secret (hex), never the secret: the token is
printed once, when it is created, and cannot be shown again. Checking a token looks its row up
by id and compares the digests with :func:`hmac.compare_digest` (constant time).

Why SHA-256 and not bcrypt/scrypt/argon2: slow, salted hashes protect *low-entropy* secrets —
passwords a person chose — against an offline guess of every likely value. A token's secret
is 256 random bits: nobody guesses 2**256 values whatever the hash costs, so a slow hash
would buy no security, only latency: every API request checks its token, and bcrypt's ~0.1 s
of CPU per check would be most of a request on a two-core host (bcrypt also ignores input past
72 bytes). A salt is unneeded too: no two secrets are equal, so no precomputed table helps.

``last_used_at`` is written at most once per :data:`TOUCH_EVERY` per token, so a busy client
does not turn every read into a catalog write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vmvault.domain.access import Principal, Role
from vmvault.domain.vault import validate_name

PREFIX = "vmv_"
ID_BYTES = 8
SECRET_BYTES = 32
_TOKEN = re.compile(r"vmv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", re.ASCII)
#: How stale ``last_used_at`` may get before a request that uses the token writes it anew.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenParts:
    public_id: str
    secret: str


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``text`` is given to its holder once; the catalog keeps the rest."""

    public_id: str
    secret_sha256: str
    text: str


@dataclass(frozen=True)
class ApiToken:
    """A stored token (never its secret)."""

    name: str
    role: Role
    public_id: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role)


def validate_token_name(name: str) -> str:
    """A token's name: as a vault's (1-63 of ``[A-Za-z0-9._-]``, starting alnum)."""
    return validate_name(name, "token name")


def issue(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> IssuedToken:
    """A new random token (``random_bytes``: the source of randomness, for tests)."""
    public_id = random_bytes(ID_BYTES).hex()
    secret = base64.urlsafe_b64encode(random_bytes(SECRET_BYTES)).decode().rstrip("=")
    return IssuedToken(public_id, hash_secret(secret), f"{PREFIX}{public_id}_{secret}")


def parse(text: str) -> TokenParts | None:
    """The id and secret of a well-formed token; None for anything else."""
    m = _TOKEN.fullmatch(text)
    return TokenParts(m.group(1), m.group(2)) if m else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def matches(secret: str, secret_sha256: str) -> bool:
    """Whether ``secret`` is the one whose digest is stored (constant-time comparison)."""
    return hmac.compare_digest(hash_secret(secret), secret_sha256)


def needs_touch(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use at ``now`` writes ``last_used_at`` (at most once per :data:`TOUCH_EVERY`)."""
    return last_used_at is None or now - last_used_at >= TOUCH_EVERY
