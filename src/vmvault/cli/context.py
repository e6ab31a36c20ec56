"""The CLI's one handle on the services, built on first use: the composition root is imported
then too, so ``--help``, ``errors`` and the remote CLI never import SQLAlchemy or an adapter."""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

import typer

from vmvault.cli import remote

if TYPE_CHECKING:  # the composition root (SQLAlchemy, libvirt …) is imported by services()
    from vmvault.bootstrap import Services


@cache
def services() -> Services:
    """The local services; in remote mode a command that reaches them is refused
    (``REMOTE_UNSUPPORTED``): it never runs locally by mistake."""
    remote.refuse()
    from vmvault.bootstrap import bootstrap

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
