"""The real ``vmvault serve``: what it refuses before it does anything, and how it reports its
health.

Refused up front (exit 2, or 1 for a port it cannot have): a TLS certificate and key that
cannot be used, a bad setting, a port in use or out of range. The same
catalog is used each time: a job a dead process left in progress (start-up recovery would close
it) and a queued GC (a worker would run it). Refused, the server leaves both as they were; on
loopback it closes the one and runs the other, which shows the refusal is what kept them
untouched.

Served, ``/api/v1/health`` answers 200 with each component up; when the scheduler crashes (a
policy row this version cannot read), 503 naming it, and after too many crashes the server
exits 1 with ``SERVER_COMPONENT_FAILED``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliRunner
from tests.pglab import Postgres
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.job import JobType
from vmvault.services.jobs import JobRunner


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def catalog(cli: CliRunner, home: Path) -> dict[str, Any]:
    """A vault, a queued GC and a verify job left in progress by a process that is gone."""
    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli("gc", "--no-wait", "--json")
    assert r.code == 0, r.stderr
    [queued] = r.json()
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    dead = JobRunner(svc._uow, svc.clock, _dead_pid(), lambda _pid: False)
    stale = dead.start(JobType.VERIFY, "main", None, None)
    # close this process's connections now: the last one to close checkpoints the WAL into
    # catalog.db and removes -wal/-shm, which must not happen later, while a test compares files
    svc._engine.dispose()
    jobs = cli("jobs", "list", "--json").json()
    assert {j["id"]: j["state"] for j in jobs} == {
        queued["id"]: "queued",
        stale.id: "in-progress",
    }
    return {"queued": queued["id"], "stale": stale.id, "jobs": jobs}


def test_serve_refuses_a_bad_tls_pair_before_anything_starts(
    cli: CliRunner, home: Path, catalog: dict[str, Any]
) -> None:
    # every bad pair is in tests/unit/test_tls.py; here, the real command, both ways
    key = home / "key.pem"
    key.write_text("not a key\n")
    missing = home / "missing.pem"
    runs = [
        ("--listen", "0.0.0.0:8470", "--tls-cert", str(missing), "--tls-key", str(key)),
        ("--listen", "127.0.0.1:8470", "--tls-cert", str(key), "--tls-key", str(key)),
    ]
    env = {"VMVAULT_TLS_CERT": str(missing), "VMVAULT_TLS_KEY": str(key)}
    before = _files(home)
    for args, extra in [(runs[0], {}), (runs[1], {}), (("--listen", "[::]:8470"), env)]:
        r = cli("serve", *args, env=extra, timeout=60)
        assert r.code == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert lines[0].startswith("error TLS_CERTIFICATE_INVALID: the TLS certificate "), r.stderr
        assert lines[1].startswith("remedy: Give a PEM certificate (--tls-cert, VMVAULT_TLS_CERT)")
        assert len(lines) == 2 and r.stdout == ""  # no traceback, no log line: nothing ran
    r = cli("serve", "--listen", "0.0.0.0:8470", "--tls-cert", str(key), timeout=60)
    assert r.code == 2 and r.stderr.startswith("error INVALID_INPUT: the TLS options"), r.stderr
    assert _files(home) == before  # the catalog was not even opened
    _untouched(cli, catalog)


def test_a_refused_serve_creates_no_catalog(cli: CliRunner, home: Path) -> None:
    bad = str(home.parent / "nothing.pem")
    r = cli("serve", "--listen", "0.0.0.0:8470", "--tls-cert", bad, "--tls-key", bad, timeout=60)
    assert r.code == 2 and r.stderr.startswith("error TLS_CERTIFICATE_INVALID:"), r.stderr
    assert list(home.iterdir()) == []  # not even the catalog file
    r = cli("serve", "--listen", "127.0.0.1", timeout=60)  # no port
    assert r.code == 2 and r.stderr.startswith("error INVALID_INPUT:"), r.stderr
    assert "Traceback" not in r.stderr and list(home.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_loopback_recovers_and_runs_the_queue(
    cli: CliRunner, home: Path, catalog: dict[str, Any]
) -> None:
    token = cli("token", "create", "watcher", "--role", "reader").stdout.splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_GC_SCHEDULE": "off"}
    log = home / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmvault", "serve", "--listen", f"localhost:{port}"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                jobs = httpx.get(f"{url}/jobs", headers=auth, timeout=5).json()
                states = {j["id"]: j["state"] for j in jobs}
                if states.get(catalog["queued"]) == "completed":
                    break
            time.sleep(0.2)
        assert states == {catalog["queued"]: "completed", catalog["stale"]: "failed"}, (
            log.read_text()
        )
        stale = httpx.get(f"{url}/jobs/{catalog['stale']}", headers=auth, timeout=5).json()
        assert stale["error_code"] == "JOB_INTERRUPTED"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=150)
    assert code == 0, log.read_text()


def _files(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*")}


def _untouched(cli: CliRunner, catalog: dict[str, Any]) -> None:
    """The dead job was not recovered, the queued GC not run, no log line added."""
    assert cli("jobs", "list", "--json").json() == catalog["jobs"]
    for job_id in (catalog["queued"], catalog["stale"]):
        shown = cli("jobs", "show", str(job_id), "--json").json()
        assert len(shown["log"]) == 1, shown["log"]


BAD_SETTINGS = [
    ("VMVAULT_GC_SCHEDULE", "daily@3am"),
    ("VMVAULT_TIMEZONE", "Europe/Berlim"),
    ("VMVAULT_JOB_WORKERS", "0"),
    ("VMVAULT_LISTEN", "127.0.0.1:65536"),
]


def test_a_bad_setting_is_refused_before_anything_starts(
    cli: CliRunner, home: Path, catalog: dict[str, Any]
) -> None:
    # every refused value is in tests/unit/test_settings.py; here, the real command
    before = _files(home)
    for name, value in BAD_SETTINGS:
        r = cli("serve", env={name: value}, timeout=60)
        assert r.code == 2, (name, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert lines[0].startswith(
            f"error INVALID_SETTING: setting {name}={value!r} is not valid: "
        )
        assert (
            lines[1].startswith("remedy: ") and f"Fix {name} in vmvault's environment" in lines[1]
        )
        assert len(lines) == 2 and r.stdout == ""  # no traceback, no log line: nothing ran
    assert _files(home) == before  # the catalog was not even opened
    _untouched(cli, catalog)


def test_a_port_in_use_or_out_of_range_is_refused_before_anything_starts(
    cli: CliRunner, home: Path, catalog: dict[str, Any]
) -> None:
    before = _files(home)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = cli("serve", "--listen", f"127.0.0.1:{port}", timeout=60)
    assert r.code == 1, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert lines[0] == f"error LISTEN_FAILED: cannot listen on 127.0.0.1:{port}: the port is in use"
    assert lines[1].startswith("remedy: Another process may hold the port")
    assert len(lines) == 2 and r.stdout == ""
    r = cli("serve", "--listen", "127.0.0.1:65536", timeout=60)
    assert r.code == 2 and r.stderr.startswith("error INVALID_INPUT: listen '127.0.0.1:65536'")
    assert "Traceback" not in r.stderr
    assert _files(home) == before
    _untouched(cli, catalog)


@contextlib.contextmanager
def _serving(
    home: Path, log: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_GC_SCHEDULE": "off"} | (extra or {})
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmvault", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, f"http://127.0.0.1:{port}/api/v1/health"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=150)


def _health(proc: subprocess.Popen[bytes], url: str, log: Path, status: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(url, timeout=5)
            if r.status_code == status:
                return dict(r.json())
        time.sleep(0.1)
    raise AssertionError(f"no {status} from {url}: " + log.read_text())


def test_health_is_200_then_503_when_the_scheduler_breaks_then_the_server_exits_1(
    cli: CliRunner, home: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("policy", "create", "nightly", "--schedule", "daily@01:00", "--daily", "7").code == 0
    log = home / "serve.log"
    with _serving(home, log) as (proc, url):
        doc = _health(proc, url, log, 200)
        while doc["components"]["scheduler"]["last_beat"] is None:  # before its first tick
            doc = _health(proc, url, log, 200)
        assert doc["status"] == "ok" and "down" not in doc
        assert set(doc["components"]) == {
            "worker-0",
            "worker-1",
            "scheduler",
            "notifier",
            "api",
            "catalog",
        }
        assert all(c["status"] == "up" for c in doc["components"].values())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=150) == 0, log.read_text()

    # A policy row this version cannot read (a newer vmvault wrote it, or a hand edit): the
    # settings are fine, the scheduler's tick raises only when it runs.
    with sqlite3.connect(home / "catalog.db") as db:
        [(definition,)] = db.execute("SELECT definition FROM policies").fetchall()
        stored = json.loads(definition) | {"version": 99}
        db.execute("UPDATE policies SET definition = ?", (json.dumps(stored),))
    with _serving(home, log) as (proc, url):
        doc = _health(proc, url, log, 503)
        assert doc["status"] == "down" and doc["down"] == ["scheduler"], doc
        sched = doc["components"]["scheduler"]
        assert sched["status"] == "down" and sched["state"] == "restarting"
        assert "stored policy 'nightly' is not valid: unknown version 99" in sched["problem"]
        assert doc["components"]["worker-0"]["status"] == "up"  # the rest goes on meanwhile
        code = proc.wait(timeout=120)  # a few restarts with back-off, then it gives up
    text = log.read_text()
    assert code == 1, text
    assert "scheduler crashed (1 of 5 allowed within 300 s); restarting in 0.5 s" in text
    assert "Traceback (most recent call last)" in text  # each crash logged with its traceback
    assert (
        "error SERVER_COMPONENT_FAILED: the server's scheduler crashed 6 times within 300 s; "
        "the server stopped: InvalidInput: stored policy 'nightly' is not valid"
    ) in text


def test_postgresql_stopped_longer_than_six_crashes_take_is_waited_out(
    home: Path, postgres: Postgres
) -> None:
    """PostgreSQL stopped for 25 s under a serving node — six crashes with back-off took ~16 s
    and stopped the server — is an outage: 503 meanwhile, 200 again once it is back, the same
    process (docs/server.md, "Supervision")."""
    name = postgres.create()
    log = home / "serve.log"
    try:
        with _serving(home, log, {"VMVAULT_CATALOG_URL": postgres.url(name)}) as (proc, url):
            _health(proc, url, log, 200)
            postgres.cluster.stop()
            try:
                time.sleep(25)
                down = _health(proc, url, log, 503)
            finally:
                postgres.cluster.start()
            assert down["components"]["catalog"]["status"] == "down", down
            _health(proc, url, log, 200)
            assert proc.poll() is None
        text = log.read_text()
        assert "giving up" not in text and "SERVER_COMPONENT_FAILED" not in text, text
        assert "CatalogError: the catalog database could not be used" in text  # the outage
    finally:
        postgres.drop(name)


def _log_line(proc: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in the log: " + log.read_text())


def test_serve_beyond_loopback_speaks_tls_with_a_self_signed_certificate_it_keeps(
    cli: CliRunner, home: Path
) -> None:
    token = cli("token", "create", "remote", "--role", "reader").stdout.splitlines()[-1]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_GC_SCHEDULE": "off"}
    cert = home / "tls" / "cert.pem"
    prints = []
    for run in range(2):  # the second start reuses the certificate the first generated
        log = home / f"serve-{run}.log"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vmvault", "serve", "--listen", f"0.0.0.0:{port}"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            printed = _log_line(proc, log, r"SHA-256 fingerprint ([0-9A-F:]{95})")[1]
            _log_line(proc, log, rf"REST API on https://0\.0\.0\.0:{port}/api/v1")
            prints.append(printed)
            context = ssl.create_default_context(cafile=str(cert))  # trust only that cert
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                    break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            with context.wrap_socket(conn, server_hostname="localhost") as tls_sock:
                der = tls_sock.getpeercert(binary_form=True)
                assert der is not None
                digest = hashlib.sha256(der).hexdigest().upper()
                assert printed == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
            base = f"https://localhost:{port}/api/v1"
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(verify=context, timeout=10) as client:
                assert client.get(f"{base}/health").status_code == 200
                assert client.get(f"{base}/whoami", headers=auth).json() == {
                    "name": "remote", "role": "reader"
                }  # fmt: skip
                assert client.get(f"{base}/vms").status_code == 401
            with pytest.raises(httpx.HTTPError):  # no plain HTTP beside it
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=150)
        assert code == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    assert prints[0] == prints[1]
    assert (home / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
