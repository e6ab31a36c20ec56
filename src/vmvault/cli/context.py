"""The CLI's one handle on the services, built on first use (so ``--help`` opens nothing)."""

from __future__ import annotations

from functools import cache

from vmvault.bootstrap import Services, bootstrap


@cache
def services() -> Services:
    return bootstrap()
