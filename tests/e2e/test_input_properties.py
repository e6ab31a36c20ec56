"""Hypothesis properties of the CLI's input: generated bad names, dates, durations, sizes,
numbers, paths and URIs are refused with an error code and exit 2, print no raw control
character, and change nothing — the catalog (every table dumped) and the files under
VMVAULT_HOME and the working directory (names, sizes, mtimes) are compared before and after.

The generated cases run in-process (``vmvault.cli.main.main(argv)``, the same entry point as
the ``vmvault`` command) so that a few hundred of them fit in seconds; a handful go through
the real ``vmvault`` process at the end.  Bounded: the whole file runs in well under 60 s.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CliRunner
from vmvault.cli.context import services
from vmvault.cli.main import main
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import MAX_INT64, check_until, parse_instant

BOUNDED = settings(
    max_examples=15,
    deadline=None,
    database=None,  # no .hypothesis directory in the compared working directory
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# Raw control characters a terminal would act on (C0 but \t and \n, DEL, C1, bidi controls).
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass
class World:
    home: Path
    cwd: Path

    def snapshot(self) -> tuple[dict[str, list[Any]], list[tuple[str, int, int]]]:
        """Every catalog table's rows, and every file under home and cwd (not the catalog's
        own files, which SQLite may touch on a read) with its size and mtime.

        Not the audit log: it records what was asked, refused commands too (exit 2), as it
        does for refused API requests (docs/server.md, "The audit log")."""
        con = sqlite3.connect(f"file:{self.home / 'catalog.db'}?mode=ro", uri=True)
        try:
            names = [
                r[0]
                for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if r[0] != "audit_log"
            ]
            tables = {n: sorted(map(repr, con.execute(f'SELECT * FROM "{n}"'))) for n in names}
        finally:
            con.close()
        files = sorted(
            (str(p), st.st_size, st.st_mtime_ns)
            for root in (self.home, self.cwd)
            for p in root.rglob("*")
            if not p.name.startswith("catalog.db") and (st := p.lstat())
        )
        return tables, files


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the ``vmvault`` command in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("input-properties")
    w = World(base / "home", base / "cwd")
    w.home.mkdir()
    w.cwd.mkdir()
    saved_env = {k: v for k, v in os.environ.items() if k.startswith("VMVAULT_")}
    saved_cwd = os.getcwd()
    for key in saved_env:
        if not key.startswith("VMVAULT_LAB"):
            del os.environ[key]
    os.environ["VMVAULT_HOME"] = str(w.home)
    os.chdir(w.cwd)
    services.cache_clear()
    try:
        assert invoke("vault", "create", "main", "--location", "local")[0] == 0
        code = invoke("policy", "create", "gold", "--schedule", "daily@02:30", "--daily", "7")
        assert code[0] == 0, code
        yield w
    finally:
        services.cache_clear()
        os.chdir(saved_cwd)
        for key in [k for k in os.environ if k.startswith("VMVAULT_")]:
            del os.environ[key]
        os.environ.update(saved_env)


def refused(world: World, args: list[str], codes: set[str]) -> None:
    """The property: exit 2, one of ``codes``, no raw control character, nothing changed."""
    before = world.snapshot()
    code, out, err = invoke(*args)
    assert code == 2, (args, code, out, err)
    first = err.splitlines()[0] if err else ""
    assert any(first.startswith(f"error {c}: ") for c in codes), (args, err)
    assert "Traceback" not in err and not RAW_CONTROL.search(out + err), (args, out, err)
    assert world.snapshot() == before, args


# --- strategies ----------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
bad_names = st.one_of(
    TEXT.filter(lambda s: VALID_NAME.fullmatch(s) is None),
    st.builds(
        lambda name, tail: name + tail,
        st.from_regex(VALID_NAME, fullmatch=True).map(lambda s: s[:60]),
        st.sampled_from(["\n", "\r\n", "\x1b[31m", "\x00", " ", "\t", "\u202e", "/", "é"]),
    ),
)


def _bad_instant(text: str) -> bool:
    try:
        check_until(parse_instant(text, "--keep-until"), datetime.now(UTC))
    except InvalidInput:
        return True
    return False


odd_offsets = st.one_of(
    st.integers(-23 * 60 - 59, -12 * 60 - 1), st.integers(14 * 60 + 1, 23 * 60 + 59)
).map(lambda m: timezone(timedelta(minutes=m)))
sub_minute = st.integers(1, 59).map(lambda s: timezone(timedelta(hours=2, seconds=s)))
bad_instants = st.one_of(
    st.datetimes(max_value=datetime(2025, 1, 1), timezones=st.just(UTC)).map(str),  # past
    st.datetimes(min_value=datetime(2128, 1, 1), timezones=st.just(UTC)).map(str),  # far
    st.datetimes(  # at the edge of the calendar: the conversion to UTC overflows
        min_value=datetime(9999, 12, 31, 12), timezones=st.just(timezone(timedelta(hours=-11)))
    ).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=datetime(2030, 1, 1),
        max_value=datetime(2040, 1, 1),
        timezones=st.one_of(odd_offsets, sub_minute),
    ).map(lambda d: d.isoformat()),
    TEXT.filter(_bad_instant),
)
bad_durations = st.one_of(
    st.tuples(st.integers(36601, 10**40), st.just("d")).map(lambda t: f"{t[0]}{t[1]}"),
    st.tuples(st.integers(10**13, 10**40), st.sampled_from("smhw")).map(lambda t: f"{t[0]}{t[1]}"),
    st.sampled_from(["²h", "٣d", "1y", "h", "24", "1.5h", "1e9s", "24h\nx", "-1h"]),
    TEXT.filter(lambda s: re.fullmatch(r"\s*[0-9]{1,6}[smhdw]\s*", s.lower()) is None),
)
bad_sizes = st.one_of(
    st.integers(10**19, 10**40).map(str),
    st.tuples(st.integers(10**7, 10**30), st.sampled_from("KMGT")).map(lambda t: f"{t[0]}{t[1]}"),
    st.integers(0, 1 << 27).filter(lambda n: n & (n - 1) or n < 65536).map(str),
    st.sampled_from(["1e5", "4X", "٤M", "-4M", "4M4", "0x10", "", "nan"]),
)
bad_ids = st.one_of(st.integers(MAX_INT64 + 1, 10**40), st.integers(-(10**30), 0))
bad_seconds = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "NaN", "-1", "1e300"]),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(repr),
    st.floats(min_value=1e7, allow_infinity=False).map(repr),
)
tail = st.one_of(st.just(""), st.from_regex(r"(/[a-z0-9]{1,8}){1,3}", fullmatch=True))
in_trees = st.builds(  # anything under these
    lambda root, rest: root + rest,
    st.sampled_from(
        [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/etc",
            "/usr",
            "/bin",
            "/sbin",
            "/boot",
            "/lib",
            "/lib64",
            "../" * 30 + "etc",
            "/etc/../proc",
            "/var/../usr",
        ]
    ),
    tail,
)
forbidden_dirs = st.one_of(  # these themselves only
    in_trees, st.sampled_from(["/", "/var", "/var/lib", "/var/lib/libvirt", "/home", "//"])
)
command_uris = st.one_of(
    st.builds(
        lambda h: f"qemu+ext://{h}/system?command=/bin/true",
        st.from_regex(r"[a-z]{0,8}", fullmatch=True),
    ),
    st.builds(
        lambda p, v: f"qemu+ssh://h/system?{p}={v}",
        st.sampled_from(["command", "netcat", "COMMAND"]),
        st.from_regex(r"/[a-z/]{1,20}", fullmatch=True),
    ),
)


# --- properties ----------------------------------------------------------------------------------


@BOUNDED
@given(name=bad_names)
def test_bad_vault_and_policy_names(world: World, name: str) -> None:
    refused(world, ["vault", "create", "--location", "local", "--", name], {"INVALID_INPUT"})
    refused(
        world,
        ["policy", "create", "--schedule", "daily@02:30", "--daily", "7", "--", name],
        {"INVALID_INPUT"},
    )
    refused(world, ["restore", "--point", "p", "--as-new", name, "--", "vm"], {"INVALID_INPUT"})


@BOUNDED
@given(text=bad_instants)
def test_bad_keep_until_dates(world: World, text: str) -> None:
    refused(world, ["backup", f"--keep-until={text}", "--", "vm"], {"INVALID_INPUT"})
    refused(world, ["backup", "--no-wait", f"--keep-until={text}", "--", "vm"], {"INVALID_INPUT"})


@BOUNDED
@given(text=bad_durations)
def test_bad_since_durations(world: World, text: str) -> None:
    refused(world, ["jobs", "list", f"--since={text}"], {"INVALID_INPUT"})


@BOUNDED
@given(text=bad_sizes)
def test_bad_chunk_sizes(world: World, text: str) -> None:
    refused(
        world,
        ["vault", "create", "--location", "local", f"--chunk-size={text}", "--", "second"],
        {"INVALID_INPUT"},
    )


@BOUNDED
@given(job_id=bad_ids, timeout=bad_seconds)
def test_bad_job_ids_and_timeouts(world: World, job_id: int, timeout: str) -> None:
    for command in ("show", "cancel", "wait"):
        refused(world, ["jobs", command, "--", str(job_id)], {"INVALID_INPUT"})
    refused(world, ["jobs", "wait", f"--timeout={timeout}", "--", "1"], {"INVALID_INPUT"})
    refused(
        world,
        ["restore", "--point", "p", "--replace", f"--shutdown-timeout={timeout}", "--", "vm"],
        {"INVALID_INPUT"},
    )


@BOUNDED
@given(path=forbidden_dirs)
def test_paths_in_system_areas(world: World, path: str) -> None:
    codes = {"PATH_NOT_ALLOWED"}
    refused(world, ["vault", "create", "--location", "local", f"--path={path}", "--", "v2"], codes)
    refused(
        world,
        ["vault", "create", "--location", "local", "--encrypt", f"--key-file={path}/k", "--",
         "v3"],
        codes | {"PASSPHRASE_REQUIRED"},
    )  # fmt: skip
    refused(world, ["restore", "--point", "p", "--as-new", "n", f"--dir={path}", "--", "vm"], codes)
    refused(world, ["restore", "--point", "p", "--disks-only", f"--dir={path}", "--", "vm"], codes)


@BOUNDED
@given(path=TEXT.filter(lambda s: RAW_CONTROL.search(s) is not None))
def test_paths_with_control_characters(world: World, path: str) -> None:
    refused(
        world,
        ["vault", "create", "--location", "local", f"--path={path}", "--", "v2"],
        {"INVALID_INPUT", "PATH_NOT_ALLOWED"},
    )


@BOUNDED
@given(uri=command_uris)
def test_uris_that_run_commands(world: World, uri: str) -> None:
    refused(world, ["host", "add", "--no-check", "--", uri], {"HOST_URI_RUNS_COMMAND"})


def test_policy_update_that_changes_nothing(world: World) -> None:
    refused(world, ["policy", "update", "gold"], {"INVALID_INPUT"})
    before = world.snapshot()
    code, out, _ = invoke("policy", "update", "gold", "--daily", "7", "--schedule", "daily@02:30")
    assert code == 0 and "unchanged" in out
    assert world.snapshot() == before  # updated_at, which the scheduler reads, did not move


# --- a few through the real process --------------------------------------------------------------


def test_the_real_command_refuses_and_changes_nothing(cli: CliRunner, home: Path) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    w = World(home, home / "vaults")
    for args, code in (
        (("vault", "create", "--location", "local", "--", "x\n"), "INVALID_INPUT"),
        (("vault", "create", "--location", "local", "--path", "/proc/v", "--", "v"),
         "PATH_NOT_ALLOWED"),
        (("jobs", "show", "--", str(2**63)), "INVALID_INPUT"),
        (("jobs", "list", "--since", "99999999999d"), "INVALID_INPUT"),
        (("backup", "--keep-until", "9999-12-31T23:59-01:00", "--", "vm"), "INVALID_INPUT"),
        (("host", "add", "--no-check", "--", "qemu+ext:///system?command=/bin/sh"),
         "HOST_URI_RUNS_COMMAND"),
        (("vault", "show", "--", "\x1b[2Jx"), "VAULT_NOT_FOUND"),
    ):  # fmt: skip
        before = w.snapshot()
        r = cli(*args)
        assert r.code == 2 and r.stderr.startswith(f"error {code}: "), (args, r.stderr)
        assert not RAW_CONTROL.search(r.stdout + r.stderr), r.stderr
        assert w.snapshot() == before, args
