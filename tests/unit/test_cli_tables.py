"""A listing's table printed by ``render.print_table`` is what Rich prints for the same table:
the same characters (piped, as scripts and the tests read it) and the same style on each
character (on a terminal), whatever the cells hold; a table too wide, or of another shape,
is Rich's own."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table
from rich.text import Text

from vmvault.cli import render

SGR = re.compile(r"(\x1b\[[0-9;]*m)")

cell = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), max_codepoint=0x30FF), max_size=9
)
styles = st.sampled_from(["", "green", "red", "bold"])


def _console(width: int, terminal: bool) -> render.SafeConsole:
    return render.SafeConsole(
        file=io.StringIO(),
        width=width,
        highlight=False,
        soft_wrap=True,
        force_terminal=terminal,
        color_system="standard" if terminal else None,
    )


def _table(headers: list[str], rows: list[list[tuple[str, str]]]) -> Table:
    table = Table(box=None, header_style="bold")
    for header in headers:
        table.add_column(header)
    for row in rows:
        render.add_row(table, *(Text(text, style=style) if style else text for text, style in row))
    return table


def _printed(
    table: Table, width: int, terminal: bool, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> str:
    console = _console(width, terminal)
    monkeypatch.setattr(render, "out", console)
    if fast:
        render.print_table(table)
    else:
        console.print(table)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _styled(output: str) -> list[tuple[str, str]]:
    """Each character printed with the SGR codes in force on it (Rich resets after each
    run of one style, so how runs are cut does not count)."""
    chars: list[tuple[str, str]] = []
    state = ""
    for token in SGR.split(output):
        if SGR.fullmatch(token):
            state = "" if token == "\x1b[0m" else state + token
        else:
            chars += [(c, state) for c in token]
    return chars


@settings(max_examples=150, deadline=None)
@given(
    headers=st.lists(
        st.sampled_from(["NAME", "ID", "HOST", "STATE", "日付"]), min_size=1, max_size=5
    ),
    cells=st.lists(st.lists(st.tuples(cell, styles), min_size=5, max_size=5), max_size=6),
    width=st.integers(20, 120),
)
def test_a_listing_prints_as_rich_prints_it(
    headers: list[str], cells: list[list[tuple[str, str]]], width: int
) -> None:
    rows = [row[: len(headers)] for row in cells]
    with pytest.MonkeyPatch.context() as mp:
        for terminal in (False, True):
            ours = _printed(_table(headers, rows), width, terminal, True, mp)
            rich = _printed(_table(headers, rows), width, terminal, False, mp)
            if terminal:
                assert _styled(ours) == _styled(rich)
            else:
                assert ours == rich


def test_the_shape_it_lays_out_and_what_it_leaves_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    row = [("vm-1", ""), ("[bold]x[/]", ""), ("ok", "green")]
    fits = _table(["NAME", "NOTE", "STATE"], [row])
    assert render._listing(fits, 80) is not None
    assert _printed(fits, 80, False, True, monkeypatch) == (
        " NAME  NOTE        STATE \n vm-1  [bold]x[/]  ok    \n"
    )
    assert render._listing(fits, 20) is None  # too wide: Rich wraps its cells
    wrapped = _printed(_table(["NAME", "NOTE", "STATE"], [row]), 20, False, True, monkeypatch)
    assert wrapped == _printed(fits, 20, False, False, monkeypatch)
    plain = Table("id", "name", box=None)
    plain.add_row("1", "[b]markup[/b]")  # a string cell is Rich markup: Rich prints it
    assert render._listing(plain, 80) is None
    boxed = _table(["NAME"], [[("a", "")]])
    boxed.box = Table().box
    assert render._listing(boxed, 80) is None
