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
from datetime import datetime, timedelta

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


#: Anonymous refusals are collapsed per (remote, status) over this window.
REFUSAL_WINDOW = timedelta(minutes=1)
#: The most (remote, status) windows open at once; refusals beyond share one per status.
MAX_WINDOWS = 10_000
#: The remote of the window shared beyond :data:`MAX_WINDOWS`.
MANY_REMOTES = "(many addresses)"


@dataclass
class _Window:
    start: datetime
    action: str
    more: int = 0


@dataclass(frozen=True)
class Repeats:
    """The refusals of one window past its first entry: one summary entry."""

    remote: str
    status: int
    action: str
    more: int
    start: datetime

    @property
    def target(self) -> str:
        return f"{self.more} more anonymous refusals like this since {self.start:%H:%M:%S}"


class AnonymousRefusals:
    """Bounds what anyone who reaches the port can write to the audit log: the first anonymous
    refusal (no valid token, status ≥ 400) per (remote, status) in a :data:`REFUSAL_WINDOW` is
    an entry; the next ones in the window are only counted, and the count becomes one entry
    (:class:`Repeats`) when the window has ended and the log is next written.  At most
    ``(remotes × statuses) × 2`` entries a minute, each attack still recorded with its size."""

    def __init__(self, window: timedelta = REFUSAL_WINDOW, max_windows: int = MAX_WINDOWS):
        self.window = window
        self.max_windows = max_windows
        self._open: dict[tuple[str, int], _Window] = {}

    def admit(self, remote: str, status: int, action: str, now: datetime) -> bool:
        """Whether this refusal is written (the first of its window) or only counted."""
        key = (remote, status)
        if key not in self._open and len(self._open) >= self.max_windows:
            key = (MANY_REMOTES, status)
        found = self._open.get(key)
        if found is not None and now - found.start < self.window:
            found.more += 1
            return False
        self._open[key] = _Window(now, action)
        return True

    def ended(self, now: datetime) -> list[Repeats]:
        """The windows over by ``now`` that counted refusals (their summaries), forgotten."""
        over = [k for k, w in self._open.items() if now - w.start >= self.window]
        done = []
        for key in over:
            w = self._open.pop(key)
            if w.more:
                done.append(Repeats(key[0], key[1], w.action, w.more, w.start))
        return done
