"""Who may do what through the REST API and the web console (design.md §6).

Four roles, each allowed everything the ones below it are:

=============  ==============================================================================
``reader``     read: lists, shows, dashboard, jobs and their logs, errors catalog
``operator``   + run: backup, copy, restore (every mode), restore test, verify, GC, cancel
``contributor``  + change the configuration: vaults, hosts, discovery, registration,
               policies, protection, point deletion and pinning
``admin``      + tokens, approvals and the audit log
=============  ==============================================================================

A request carries an API token (``Authorization: Bearer …``); the token names a
:class:`Principal` (its name and role). Which role a route needs is declared on the route.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    READER = "reader"
    OPERATOR = "operator"
    CONTRIBUTOR = "contributor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether a principal with this role may do what ``needed`` is required for."""
        return self.rank >= needed.rank


_RANKS = {Role.READER: 0, Role.OPERATOR: 1, Role.CONTRIBUTOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    """The holder of a token, as a request is attributed to it (audit log: *who*)."""

    name: str
    role: Role
