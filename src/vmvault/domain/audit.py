"""The audit log: who changed what, when, from where, and how it ended.

One entry per change requested through the REST API (every request but GET, HEAD and
OPTIONS, refused ones included) or the CLI (every command that changes something):

===========  =======================================================================================
``actor``    the token's name (API; ``anonymous`` without a valid token), or ``local:<unix user>``
``role``     the token's role (API), None for the CLI and anonymous requests
``action``   ``POST /api/v1/backups`` (method and path) or ``vmvault token create`` (the command)
``target``   what it was done to: the route's path parameters, a name the route gave, or the
             command's arguments (never an option's value: that is where secrets would be)
``status``   the HTTP status (API) or the exit code (CLI: ``remote`` is ``cli``)
``remote``   the client's address, or ``cli``
===========  =======================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ANONYMOUS = "anonymous"
CLI_REMOTE = "cli"
#: Requests with these methods change nothing and are not recorded.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Longest action and target kept (longer ones are cut, with ``…``).
MAX_TEXT = 300


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    role: str | None
    action: str
    target: str | None
    status: int
    remote: str
    id: int | None = None


def local_actor(user: str) -> str:
    return f"local:{user}"


def clip(text: str | None) -> str | None:
    """``text`` cut to :data:`MAX_TEXT` characters."""
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"
