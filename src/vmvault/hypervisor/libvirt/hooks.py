"""The guest's application-hook report, over the agent (docs/backup.md, "Consistency").

:func:`arm` writes a fresh token into the guest before the freeze; after the thaw
:func:`report` reads the fsfreeze hook dispatcher's status file and keeps it only if it
carries that token (:func:`vmvault.domain.consistency.parse_hook_status`).  Both run outside
the freeze window (a frozen agent refuses ``guest-file-*``) and never raise: whatever goes
wrong ends as a "no report" outcome, which can only lower the level, never raise it.
"""

from __future__ import annotations

import secrets
from typing import Any

from vmvault.domain.consistency import (
    STATUS_PATH,
    TOKEN_PATH,
    HookOutcome,
    no_report,
    parse_hook_status,
)
from vmvault.domain.errors import AgentCommandFailed
from vmvault.hypervisor.libvirt import agent


def arm(dom: Any, timeout: int = 5) -> tuple[str | None, str | None]:
    """Write a new token for the next freeze: ``(token, None)`` or ``(None, why not)``."""
    token = secrets.token_hex(8)
    try:
        agent.write_file(dom, TOKEN_PATH, f"{token}\n".encode(), timeout=timeout)
    except AgentCommandFailed as exc:
        return None, f"could not write the freeze token: {exc.detail or exc.text}"
    return token, None


def report(dom: Any, token: str | None, why_unarmed: str | None = None) -> HookOutcome:
    """What the dispatcher reported for the freeze armed with ``token``."""
    if token is None:
        return no_report(why_unarmed or "no freeze token")
    try:
        data = agent.read_file(dom, STATUS_PATH)
    except AgentCommandFailed as exc:
        return no_report(f"no hook dispatcher report ({exc.detail or exc.text})")
    return parse_hook_status(data.decode(errors="replace"), token)


__all__ = ["arm", "report"]
