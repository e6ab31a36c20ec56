"""The remote CLI at fleet scale: bench/fleet.py's rows of ``vmvault --server URL …``
(docs/deployment.md, "Fleet scale").

A real ``vmvault serve`` on loopback serves a copy of the bench's fleet catalog (SQLite: the
backup API; PostgreSQL: ``CREATE DATABASE … TEMPLATE``), in which the policy is marked as
changed tomorrow: its scheduler then fires nothing while the rows are measured, and the
bench's own catalog (its slot row, its leader lease) is left as it was.  The CLI runs from an
empty ``VMVAULT_HOME`` with a reader token, as the e2e tests run it.

Each command is a process (``measure``: wall, its own CPU from ``wait4``, GNU time's peak
RSS; the server's CPU meanwhile in the note), median of the rounds, after one run not counted
(the server's first request); the floors in the same run: the interpreter alone, and the
imports no remote command can do without — typer and Rich's console and table (the CLI, its
output), ``urllib.request``, ``ssl`` and ``json`` (the request).

The same commands then run as a local CLI on the server's host (its ``VMVAULT_HOME`` and
catalog URL, no token): the server answers them on its local socket (docs/server.md, "The
local socket"), which the bench checks first (such a command imports no SQLAlchemy).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import ROOT, VMVAULT, measure

TARGET = 0.3
PYTHON = str(ROOT / ".venv" / "bin" / "python")
#: What every remote command imports whatever it does (the floor above the interpreter's).
FLOOR_IMPORTS = "import typer, rich.console, rich.table, urllib.request, ssl, json"

COMMANDS = [
    ("`vm list`", ["vm", "list"]),
    ("`vm list --limit 1000 --json`", ["vm", "list", "--limit", "1000", "--json"]),
    ("`protection list`", ["protection", "list"]),
    ("`protection list --limit 1000 --json`", ["protection", "list", "--limit", "1000", "--json"]),
    ("`dashboard`", ["dashboard"]),
    ("`dashboard --json`", ["dashboard", "--json"]),
]


def remote_rows(table: Any, services: Any, url: str, home: Path, rounds: int) -> None:
    """Add to ``table`` the floors and the remote CLI's rows, against a server on a copy of
    the catalog at ``url`` (whose ``services`` give the reader token)."""
    from vmvault.domain.access import Role

    _, secret = services.tokens.create("bench-cli", Role.READER, "bench")
    services._engine.dispose()  # PostgreSQL copies a database nobody is connected to
    with _copy(url, home) as copy_url, _serve(home, copy_url) as (server, pid):
        elsewhere = home.parent / "remote-cli-home"
        elsewhere.mkdir(exist_ok=True)
        plain = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        env = plain | {"VMVAULT_HOME": str(elsewhere), "VMVAULT_SERVER": server}
        env["VMVAULT_TOKEN"] = secret
        floors = [
            ("`python -c pass` (floor)", [PYTHON, "-c", "pass"]),
            (f"`python -c '{FLOOR_IMPORTS}'` (floor)", [PYTHON, "-c", FLOOR_IMPORTS]),
        ]
        floor = 0.0
        for label, argv in floors:
            floor = _row(table, label, argv, plain, rounds, None, None)
        for label, words in COMMANDS:
            _row(table, f"{label} (remote CLI)", [VMVAULT, *words], env, rounds, pid, floor)
        assert list(elsewhere.iterdir()) == [], "the remote CLI wrote to its home"
        # the local CLI of the server's host: answered on the local socket
        local = plain | {"VMVAULT_HOME": str(home), "VMVAULT_CATALOG_URL": copy_url}
        probe = measure([VMVAULT, "vm", "list"], local | {"PYTHONPROFILEIMPORTTIME": "1"})
        assert probe.rc == 0 and "sqlalchemy" not in probe.err, "not answered on the socket"
        for label, words in COMMANDS:
            _row(
                table, f"{label} (local CLI, socket)", [VMVAULT, *words], local, rounds, pid, floor
            )


def serve_until_stopped(services: Any, url: str, home: Path) -> None:
    """``--serve``: the server the remote rows run against, on a copy of the catalog at ``url``,
    kept until SIGINT or SIGTERM, for profiling a remote command by hand; prints the
    environment a remote CLI needs (a reader token)."""
    from vmvault.domain.access import Role

    _, secret = services.tokens.create("bench-cli", Role.READER, "bench")
    services._engine.dispose()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with _copy(url, home) as copy_url, _serve(home, copy_url) as (server, pid):
        print(f"export VMVAULT_SERVER={server} VMVAULT_TOKEN={secret}", flush=True)
        print(f"# vmvault serve is pid {pid}; SIGINT or SIGTERM (pid {os.getpid()}) ends it",
              flush=True)  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()


def _row(
    table: Any,
    label: str,
    argv: list[str],
    env: dict[str, str],
    rounds: int,
    server: int | None,
    floor: float | None,
) -> float:
    """One row: ``argv`` run once unmeasured, then ``rounds`` times; its median wall time."""
    watch = {"server": server} if server is not None else None
    la = os.getloadavg()[0]
    runs = [measure(argv, env, watch=watch) for _ in range(rounds + 1)][1:]
    for r in runs:
        assert r.rc == 0, (argv, r.err)
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    note = f"median of {' / '.join(f'{r.wall:.3f}' for r in runs)} s"
    if server is not None:
        note += f"; server CPU {statistics.median(r.watched['server'] for r in runs) * 1000:.0f} ms"
    if floor is not None:
        note += f"; {wall - floor:+.3f} s over the import floor"
    table.add(
        label, f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms", f"< {TARGET * 1000:.0f} ms",
        f"{wall / TARGET:.2f}", f"{max(r.rss_mib for r in runs):.0f} MiB", la, note,
    )  # fmt: skip
    return wall


@contextlib.contextmanager
def _copy(url: str, home: Path) -> Iterator[str]:
    """A copy of the catalog at ``url`` whose policies fire nothing before tomorrow."""
    from sqlalchemy import create_engine, update

    from vmvault.persistence import tables as t

    drop: Callable[[], None] = lambda: None  # noqa: E731
    if url.startswith("sqlite:///"):
        copy_url = f"sqlite:///{home / 'served-catalog.db'}"
        source = sqlite3.connect(url.removeprefix("sqlite:///"))
        target = sqlite3.connect(home / "served-catalog.db")
        with contextlib.closing(source), contextlib.closing(target):
            source.backup(target)
    else:
        copy_url, drop = _pg_copy(url)
    engine = create_engine(copy_url)
    try:
        with engine.begin() as conn:
            tomorrow = datetime.now(UTC) + timedelta(days=1)
            conn.execute(update(t.policies).values(updated_at=tomorrow))
    finally:
        engine.dispose()
    try:
        yield copy_url
    finally:
        drop()


def _pg_copy(url: str) -> tuple[str, Callable[[], None]]:
    """``CREATE DATABASE <db>_served TEMPLATE <db>`` in the lab's cluster, and its drop."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/")
    copy = f"{db}_served"
    drop = pg_database(parts.query.removeprefix("host="), copy, template=db)
    return url.replace(f"/{db}?", f"/{copy}?"), drop


def pg_database(run: str, db: str, template: str | None = None) -> Callable[[], None]:
    """Database ``db`` made afresh (a copy of ``template``, if given) in the lab's cluster
    whose socket directory is ``run``; its drop."""
    import psycopg

    def admin() -> Any:
        return psycopg.connect(host=run, user="vmvault", dbname="vmvault", autocommit=True)

    with admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}" + (f" TEMPLATE {template}" if template else ""))

    def drop() -> None:
        with admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    return drop


@contextlib.contextmanager
def _serve(home: Path, url: str) -> Iterator[tuple[str, int]]:
    """``vmvault serve`` on loopback over the catalog at ``url``: its URL and pid."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_CATALOG_URL": url, "VMVAULT_GC_SCHEDULE": "off"}
    server = f"http://127.0.0.1:{port}"
    log = home / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [VMVAULT, "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{server}/api/v1/health", timeout=5).close()
                break
            time.sleep(0.2)
        yield server, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=150)
