"""The CLI's one handle on the services, built on first use (so ``--help`` opens nothing)."""

from __future__ import annotations

import sys
from functools import cache

import typer

from vmvault.bootstrap import Services, bootstrap
from vmvault.cli import remote


@cache
def services() -> Services:
    """The local services; in remote mode a command that reaches them is refused
    (``REMOTE_UNSUPPORTED``): it never runs locally by mistake."""
    remote.refuse()
    svc = bootstrap()
    svc.passphrase_prompt = _prompt
    svc.new_passphrase_prompt = _prompt_new
    return svc


def _prompt() -> str | None:
    """Ask on a terminal when VMVAULT_PASSPHRASE(_FILE) gave nothing."""
    if not sys.stdin.isatty():
        return None
    return str(typer.prompt("vault passphrase", hide_input=True))


def _prompt_new() -> str | None:
    """Ask twice on a terminal when VMVAULT_NEW_PASSPHRASE(_FILE) gave nothing."""
    if not sys.stdin.isatty():
        return None
    return str(typer.prompt("new passphrase", hide_input=True, confirmation_prompt=True))
