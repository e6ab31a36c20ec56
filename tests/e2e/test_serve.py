"""``vmvault serve`` listens on loopback only (the API has no authentication yet): any other
address is refused before the server does anything, and a loopback one serves.

The same catalog is used both ways: a job a dead process left in progress (start-up recovery
would close it) and a queued GC (a worker would run it). Refused, the server leaves both as
they were; on loopback it closes the one and runs the other, which shows the refusal is what
kept them untouched."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliRunner
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
    jobs = cli("jobs", "list", "--json").json()
    assert {j["id"]: j["state"] for j in jobs} == {
        queued["id"]: "queued",
        stale.id: "in-progress",
    }
    return {"queued": queued["id"], "stale": stale.id, "jobs": jobs}


def test_serve_refuses_a_non_loopback_address(cli: CliRunner, catalog: dict[str, Any]) -> None:
    # every refused form is in tests/unit/test_listen.py; here, the real command, both ways
    runs = [(a, ("--listen", a), {}) for a in ("0.0.0.0:8470", "[::]:8470", "192.0.2.10:8470")]
    runs += [(a, (), {"VMVAULT_LISTEN": a}) for a in ("0.0.0.0:8470", "vmvault.example:8470")]
    for address, args, env in runs:
        r = cli("serve", *args, env=env, timeout=60)
        assert r.code == 2, (address, env, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert lines[0] == (
            "error LISTEN_NOT_LOOPBACK: the REST API may only listen on a loopback address, "
            f"not {address}"
        ), r.stderr
        assert lines[1].startswith("remedy: The API has no authentication yet")
        assert "reverse proxy that authenticates" in lines[1]
        assert len(lines) == 2 and r.stdout == ""  # no traceback, no log line: nothing ran
    # nothing started: the dead job was not recovered, the queued GC not run, no log line added
    assert cli("jobs", "list", "--json").json() == catalog["jobs"]
    for job_id in (catalog["queued"], catalog["stale"]):
        shown = cli("jobs", "show", str(job_id), "--json").json()
        assert len(shown["log"]) == 1, shown["log"]  # only the line written when it was made


def test_a_refused_serve_creates_no_catalog(cli: CliRunner, home: Path) -> None:
    r = cli("serve", "--listen", "0.0.0.0:8470", timeout=60)
    assert r.code == 2 and r.stderr.startswith("error LISTEN_NOT_LOOPBACK:"), r.stderr
    assert list(home.iterdir()) == []  # not even the catalog file
    r = cli("serve", "--listen", "127.0.0.1", timeout=60)  # no port
    assert r.code == 2 and r.stderr.startswith("error INVALID_INPUT:"), r.stderr
    assert "Traceback" not in r.stderr and list(home.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_loopback_recovers_and_runs_the_queue(home: Path, catalog: dict[str, Any]) -> None:
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
                jobs = httpx.get(f"{url}/jobs", timeout=5).json()
                states = {j["id"]: j["state"] for j in jobs}
                if states.get(catalog["queued"]) == "completed":
                    break
            time.sleep(0.2)
        assert states == {catalog["queued"]: "completed", catalog["stale"]: "failed"}, (
            log.read_text()
        )
        stale = httpx.get(f"{url}/jobs/{catalog['stale']}", timeout=5).json()
        assert stale["error_code"] == "JOB_INTERRUPTED"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=150)
    assert code == 0, log.read_text()
