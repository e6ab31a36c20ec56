"""The CLI's Rich consoles, made when something is printed that only Rich prints
(:mod:`vmvault.cli.plain`: plain lines and listings are written without importing Rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from vmvault.domain.inputs import shown


class SafeConsole(Console):
    """A Rich console that never writes a control character it was handed as text.

    Names, paths, messages and log lines hold what users, guests and hosts typed; an escape
    sequence among them would drive the terminal.  Every string printed (and every table
    cell) is rendered with its control characters escaped (:func:`shown`); line breaks and
    tabs stay.  Data printed with markup on goes through :func:`vmvault.cli.render.markup`,
    table cells are text (:class:`vmvault.cli.plain.Listing`), so brackets in data are never read
    as Rich markup either.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(shown(text, newlines=True), **kwargs)


def make_out(width: int | None) -> SafeConsole:
    """The console of stdout (``width``: None on a terminal, its own)."""
    # Data is never read as emoji codes either (a name "a:ok:b" stays as typed).
    return SafeConsole(highlight=False, soft_wrap=True, width=width, emoji=False)


def make_err() -> SafeConsole:
    """The console of stderr."""
    return SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
