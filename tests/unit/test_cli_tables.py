"""A listing printed by ``render.print_table`` is what Rich prints for its table: the same
characters (piped, as scripts and the tests read it) and the same style on each character (on
a terminal), whatever the cells hold; a table too wide, or holding what Rich lays out itself,
is Rich's own. What the CLI writes without Rich (``cli/plain.py``: plain lines, a
``Listing``, the escape of markup) is byte for byte what Rich writes, piped and on a
terminal, under the variables Rich reads (TERM, FORCE_COLOR, TTY_COMPATIBLE, NO_COLOR,
COLUMNS, LINES)."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.cli import plain, render
from vmvault.cli.consoles import SafeConsole, make_out

SGR = re.compile(r"(\x1b\[[0-9;]*m)")

cell = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), max_codepoint=0x30FF), max_size=9
)
styles = st.sampled_from(["", "green", "red", "bold"])


def _console(width: int, terminal: bool) -> SafeConsole:
    return SafeConsole(
        file=io.StringIO(),
        width=width,
        highlight=False,
        soft_wrap=True,
        force_terminal=terminal,
        color_system="standard" if terminal else None,
    )


def _table(headers: list[str], rows: list[list[tuple[str, str]]]) -> plain.Listing:
    table = plain.Listing(headers)
    for row in rows:
        table.add(*((text, style) if style else text for text, style in row))
    return table


def _printed(
    table: plain.Listing, width: int, terminal: bool, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> str:
    """``table`` printed by ``print_table`` with Rich imported (``fast``: laid out by
    ``render._listing`` when it can be), or by Rich."""
    console = _console(width, terminal)
    monkeypatch.setattr(render, "out", console)
    if fast:
        render.print_table(table)
    else:
        console.print(table.table())
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
    fits = _table(["NAME", "NOTE", "STATE"], [row])  # a cell is text, never markup
    assert render._listing(fits, 80) is not None
    assert _printed(fits, 80, False, True, monkeypatch) == (
        " NAME  NOTE        STATE \n vm-1  [bold]x[/]  ok    \n"
    )
    assert render._listing(fits, 20) is None  # too wide: Rich wraps its cells
    wrapped = _printed(_table(["NAME", "NOTE", "STATE"], [row]), 20, False, True, monkeypatch)
    assert wrapped == _printed(fits, 20, False, False, monkeypatch)
    marked = _table(["[b]NAME[/b]"], [[("a", "")]])  # a header is Rich markup: Rich prints it
    assert render._listing(marked, 80) is None
    assert _printed(marked, 80, False, True, monkeypatch) == " NAME \n a    \n"
    tabbed = _table(["NAME"], [[("a\tb", "")]])  # Rich expands a tab
    assert render._listing(tabbed, 80) is None
    assert _printed(tabbed, 80, False, True, monkeypatch) == (
        _printed(tabbed, 80, False, False, monkeypatch)
    )
    assert render._listing(_table([], []), 80) is None
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        _table(["NAME", "STATE"], [[("a", "")]])  # a row is a cell per header


class _Stream(io.StringIO):
    """stdout or stderr, a terminal or not."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


#: Environments Rich reads to decide whether (and how wide) it styles its output.
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"TERM": "xterm-256color"},
    {"TERM": "dumb"},
    {"TERM": "unknown", "COLUMNS": "60"},
    {"COLORTERM": "truecolor", "NO_COLOR": "1"},
    {"FORCE_COLOR": "1"},
    {"FORCE_COLOR": ""},
    {"FORCE_COLOR": "1", "TERM": "dumb"},
    {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
    {"TTY_COMPATIBLE": "1"},
    {"COLUMNS": "40"},
    {"COLUMNS": "200", "LINES": "30"},
    {"COLUMNS": "x"},
]
RICH_VARIABLES = ("TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")


def _both(
    mp: pytest.MonkeyPatch, env: dict[str, str], tty: bool, stderr: bool = False
) -> tuple[plain.LazyConsole, SafeConsole, _Stream]:
    """The CLI's lazy console and the Rich console it stands for (made as render makes it),
    writing to the same stream under ``env``."""
    for name in (*RICH_VARIABLES, "LINES"):
        mp.delenv(name, raising=False)
    for name, value in env.items():
        mp.setenv(name, value)
    stream = _Stream(tty)
    mp.setattr("sys.stderr" if stderr else "sys.stdout", stream)
    fixed = None if (tty or stderr) else 250
    rich = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    if not stderr:
        rich = make_out(fixed)
    return plain.LazyConsole(lambda: rich, stderr=stderr, fixed=fixed), rich, stream


def _written(stream: _Stream) -> str:
    value = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    return value


names = st.text(
    st.characters(blacklist_categories=("Cs",), max_codepoint=0x30FF), min_size=0, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(names, min_size=3, max_size=3), max_size=5),
    state=st.sampled_from(["", "green", "bold"]),
    env=st.sampled_from(ENVIRONMENTS),
)
def test_a_listing_is_written_byte_for_byte_as_print_table_prints_it_with_rich(
    rows: list[list[str]], state: str, env: dict[str, str]
) -> None:
    for tty in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            lazy, rich, stream = _both(mp, env, tty)
            listing = plain.Listing(("NAME", "日付", "STATE"), no_wrap=frozenset(["NAME"]))
            for a, b, c in rows:
                listing.add(a, b, (c, state))
            done = lazy.print_listing(listing)
            ours = _written(stream)
            mp.setattr(render, "out", rich)  # as print_table printed it with Rich imported
            render.print_table(listing)
            theirs = _written(stream)
            assert ours == (theirs if done else ""), (env, tty)
            if done:
                assert lazy._console is None  # Rich was not needed


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        names,
        st.sampled_from(["1-100 of 2000 shown", "none at 12:00 [::1]", "a\n"]),
        st.text(st.sampled_from("ab [/]\\\t\n\x1b:é日"), max_size=12),
        names.map(lambda n: f"[bold]vault {n}[/]"),
    ),
    markup=st.sampled_from([None, True, False]),
    highlight=st.sampled_from([None, True, False]),
    env=st.sampled_from(ENVIRONMENTS),
    stderr=st.booleans(),
)
def test_a_plain_line_is_written_byte_for_byte_as_rich_prints_it(
    text: str, markup: bool | None, highlight: bool | None, env: dict[str, str], stderr: bool
) -> None:
    for tty in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            lazy, rich, stream = _both(mp, env, tty, stderr)
            try:
                rich.print(text, markup=markup, highlight=highlight)
            except Exception:  # markup Rich refuses (a closing tag with nothing open)
                continue
            theirs = _written(stream)
            lazy.print(text, markup=markup, highlight=highlight)
            assert _written(stream) == theirs, (env, tty)


@settings(max_examples=300, deadline=None)
@given(value=st.text(st.sampled_from("ab[]/\\@#z "), max_size=10) | names)
def test_markup_is_escaped_as_rich_escapes_it(value: str) -> None:
    from rich.markup import escape

    assert render.markup(value) == escape(value)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("tty", [False, True])
def test_the_width_is_rich_s(env: dict[str, str], tty: bool) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for stderr in (False, True):
            lazy, rich, stream = _both(mp, env, tty, stderr)
            assert plain.width(lazy._fixed, stream) == rich.width, (env, tty, stderr)
            styled = plain.styled(stream)
            assert styled == (rich.is_terminal and rich.color_system is not None), (env, tty)


@pytest.mark.parametrize("tty", [False, True])
def test_the_plain_paths_are_taken_for_what_the_routed_commands_print(tty: bool) -> None:
    """The two tests above compare the bytes whichever path printed them: these ones, of the
    dashboard's and a listing's shape, are printed without making the Rich console."""
    with pytest.MonkeyPatch.context() as mp:
        lazy, rich, stream = _both(mp, {}, tty)
        listing = plain.Listing(("NAME", "STATE"))
        listing.add("web", ("ok", ""))
        assert lazy.print_listing(listing)
        lazy.print("[bold]vault main[/]", highlight=False)
        lazy.print("attention none\n  a", markup=False)
        assert lazy._console is None and "web" in _written(stream)
        # a bold line over two lines, or a control character in a styled cell: not as Rich
        # writes them plainly, so Rich's (escaped: shown())
        lazy.print("[bold]a\nb[/]", highlight=False)
        assert lazy._console is not None
        mp.setattr(render, "out", rich)
        escaped = plain.Listing(("NAME", "STATE"))
        escaped.add("web", ("x\x1b[31m", "green"))
        assert escaped.rows[0][1] == ("x\\x1b[31m", "green")


def test_a_reader_gone_ends_the_command_as_rich_does(tmp_path: Path) -> None:
    """``vm list | head`` (here ``| true``: a reader that reads nothing, gone): the rest of the
    output to /dev/null, exit 1, nothing on stderr."""
    script = (
        "import sys\n"
        "from vmvault.cli import plain\n"
        "lazy = plain.LazyConsole(lambda: None, stderr=False, fixed=250)\n"
        "listing = plain.Listing(('NAME',))\n"
        "for i in range(200_000):\n"
        "    listing.add(f'vm-{i:06}')\n"
        "lazy.print_listing(listing)\n"
    )
    run = subprocess.run(
        f"{sys.executable} -c {shlex.quote(script)} | true; "
        'echo "${PIPESTATUS[0]}"',
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.stdout.strip() == "1" and run.stderr == "", (run.stdout, run.stderr)
