"""What the CLI's Rich consoles print, printed without importing Rich when it is plain.

Rich's import (its console, text, style and table modules: ~0.04 CPU-s) was a fifth of a
listing's CPU on the local socket or against a remote server (docs/deployment.md, "The CLI's
start"). The listings and the dashboard print plain lines and tables of plain cells, which
Rich prints as they are, or with one style (the header's bold) on a terminal. So the CLI's
``out`` and ``err`` are :class:`LazyConsole`\\ s: a print of a string that Rich would print
unchanged (:meth:`LazyConsole.print`) and a :class:`Listing` table that fits are written here;
anything else — markup, a tab, a style other than bold on a terminal, a table too wide —
makes the real console (:mod:`vmvault.cli.consoles`, Rich imported then) and is Rich's.

Whether Rich would style its output, and how wide it takes the terminal to be, is Rich's own
rule (rich/console.py, ``is_terminal``, ``is_dumb_terminal``, ``_detect_color_system``,
``size``) written again here: ``TTY_COMPATIBLE``, ``FORCE_COLOR``, the stream's ``isatty``,
``TERM`` dumb or unknown, ``COLUMNS``, the terminal's size. Where it is not this platform's
plain case (Windows, IPython or Jupyter, IDLE) it is left to Rich. tests/unit/test_cli_tables.py
compares both, piped and on a terminal, under those variables.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from vmvault.domain.inputs import shown

if TYPE_CHECKING:
    from rich.table import Table

    from vmvault.cli.consoles import SafeConsole

BOLD_ON, STYLE_OFF = "\x1b[1m", "\x1b[0m"
#: A line of markup that is all bold and holds nothing Rich would read as markup.
_BOLD_LINE = re.compile(r"\[bold\]([^\[\]\\\n]+)\[/\]")


def styled(stream: TextIO) -> bool | None:
    """Whether a Rich console (auto colour system, terminal not forced) writing to ``stream``
    styles its output (SGR codes); None where this does not know (Rich then decides)."""
    if sys.platform == "win32" or hasattr(builtins, "get_ipython"):
        return None  # Rich's legacy Windows console and Jupyter detection
    if getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return None
    return _terminal(stream) and not _dumb()


def _dumb() -> bool:
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


def width(fixed: int | None, stream: TextIO) -> int | None:
    """The width of a Rich console made with ``width=fixed`` writing to ``stream`` (None where
    :func:`styled` does not know): Rich's ``Console.size``."""
    if styled(stream) is None:
        return None
    columns, lines = os.environ.get("COLUMNS"), os.environ.get("LINES")
    if fixed is None and columns is not None and columns.isdigit():
        fixed = int(columns)
    if fixed is not None and lines is not None and lines.isdigit():
        return fixed
    if _terminal(stream) and _dumb():
        return 80
    found = None
    for fd in (0, 1, 2):
        try:
            found = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    if columns is not None and columns.isdigit():
        found = int(columns)
    return fixed if fixed is not None else found or 80


def _terminal(stream: TextIO) -> bool:
    """Rich's ``is_terminal`` (a dumb terminal is one)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except ValueError:
        return False


def cell_len(text: str) -> int:
    """The terminal cells ``text`` takes, as Rich counts them."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(text)


@dataclass
class Listing:
    """A listing's table: a header and rows of one line of text per cell, each cell plain or
    of one style; printed by :meth:`LazyConsole.print_listing`, as Rich prints :meth:`table`."""

    headers: Sequence[str]
    no_wrap: frozenset[str] = frozenset()
    header_style: str = "bold"
    rows: list[list[tuple[str, str]]] = field(default_factory=list)

    def add(self, *cells: str | tuple[str, str]) -> None:
        """A row of data, a cell per header: plain text (no markup) or a ``(text, style)``
        pair, control characters escaped (:func:`shown`)."""
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(
            [(shown(c), "") if isinstance(c, str) else (shown(c[0]), c[1]) for c in cells]
        )

    def laid_out(self, columns: int) -> list[list[tuple[str, int]]] | None:
        """The header and rows as Rich lays out :meth:`table` in ``columns``: each cell's text
        and the spaces that pad it to its column's width (a cell is written as a space, its
        text, its padding in its own style and a space); None if Rich lays it out otherwise
        (a header is markup, a cell holds a character Rich expands or strips, or the table is
        too wide: Rich wraps its cells)."""
        if not self.headers or any("[" in h for h in self.headers):
            return None
        texts = [list(self.headers), *([t for t, _ in row] for row in self.rows)]
        if not all(t.isprintable() for row in texts for t in row):
            return None  # a tab or line break (Rich lays it out), a character Rich strips
        lens = [[cell_len(t) for t in row] for row in texts]
        widths = [max(row[i] for row in lens) for i in range(len(self.headers))]
        if sum(widths) + 2 * len(widths) > columns:
            return None  # Rich wraps the cells
        return [
            [(t, w - n) for t, n, w in zip(row, ns, widths, strict=True)]
            for row, ns in zip(texts, lens, strict=True)
        ]

    def table(self) -> Table:
        """The Rich table of the same header, rows and styles."""
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, header_style=self.header_style)
        for header in self.headers:
            table.add_column(header, no_wrap=header in self.no_wrap)
        for row in self.rows:
            table.add_row(*(Text(text, style=style) for text, style in row))
        return table


class LazyConsole:
    """The CLI's console of stdout (or stderr): :meth:`print` and :meth:`print_listing` of
    plain text written directly, anything else by the Rich console ``make()`` gives, made on
    first use (every other attribute is that console's)."""

    def __init__(self, make: Callable[[], SafeConsole], stderr: bool, fixed: int | None) -> None:
        self._make, self._stderr, self._fixed = make, stderr, fixed
        self._console: SafeConsole | None = None

    def rich(self) -> SafeConsole:
        if self._console is None:
            self._console = self._make()
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich(), name)

    @property
    def _stream(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    def print(self, *objects: Any, markup: bool | None = None, **kwargs: Any) -> None:
        """Rich's ``Console.print``; a string that it prints as it is (after :func:`shown`:
        no markup in it or markup off, no tab) is written here, with its line end."""
        if (
            self._console is None
            and len(objects) == 1
            and type(objects[0]) is str
            and set(kwargs) <= {"highlight"}
            and not kwargs.get("highlight")
        ):
            text = shown(objects[0], newlines=True)
            line = self._plain(text, markup is not False)
            if line is not None:
                _write(
                    self._stream, line + "\n"
                )  # flushed, as Rich does: stdout and stderr stay in order
                return
        self.rich().print(*objects, markup=markup, **kwargs)

    def _plain(self, text: str, markup: bool) -> str | None:
        """``text`` as Rich would write it (its SGR codes included), or None if not known."""
        if "\t" in text:
            return None  # Rich expands tabs
        if not markup or "[" not in text:
            return text
        bold = _BOLD_LINE.fullmatch(text)
        if bold is None:
            return None
        style = styled(self._stream)
        if style is None:
            return None
        return f"{BOLD_ON}{bold[1]}{STYLE_OFF}" if style else bold[1]

    def print_listing(self, listing: Listing) -> bool:
        """``listing`` laid out as Rich lays out its :meth:`Listing.table`, when it fits the
        console and has no style but a bold header (or none is shown: piped); whether it was
        (if not, nothing was printed: it is Rich's)."""
        lines = None if self._console is not None else self._listing_lines(listing)
        if lines is None:
            return False
        _write(self._stream, "".join(line + "\n" for line in lines))
        return True

    def _listing_lines(self, listing: Listing) -> list[str] | None:
        style = styled(self._stream)
        columns = width(self._fixed, self._stream)
        if style is None or columns is None:
            return None
        if style and (
            listing.header_style not in ("", "bold")
            or any(s for row in listing.rows for _, s in row)
        ):
            return None  # a style only Rich writes
        laid = listing.laid_out(columns)
        if laid is None:
            return None
        lines = ["".join(f" {t}{' ' * pad} " for t, pad in row) for row in laid]
        if style and listing.header_style:
            lines[0] = BOLD_ON + lines[0] + STYLE_OFF
        return lines


def escape(value: str) -> str:
    """Rich's ``markup.escape`` of ``value`` (which leaves a value without ``[`` or a last
    ``\\`` as it is)."""
    if "[" not in value and not value.endswith("\\"):
        return value
    from rich.markup import escape as rich_escape

    return rich_escape(value)


def _write(stream: TextIO, text: str) -> None:
    """``text`` written and flushed; a reader gone (``vm list | head``) ends the command as
    Rich's ``Console.on_broken_pipe`` does: the rest of the output to /dev/null, exit 1, no
    message."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        raise SystemExit(1) from None
