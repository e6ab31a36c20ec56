"""The server on real lab guests: a policy's simulated day of scheduled backups, and the
`vmvault serve` process — jobs queued by the CLI and the API, cancel, a kill -9 mid-backup
and the restart that recovers from it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS, assert_vm_clean, lab_settings
from vmvault.bootstrap import bootstrap
from vmvault.domain.job import JobState, JobType
from vmvault.domain.retention import Retention
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_every_4h_policy_over_a_simulated_day(lab: dict, home: Path) -> None:
    """Six slots in a day: six backup jobs, each run once, incrementals after the first,
    retention after each, GC at its own time; a restart mid-day creates nothing twice."""
    clock = Clock(datetime(2026, 11, 23, 0, 30, tzinfo=UTC))
    svc = bootstrap(lab_settings(home), clock)
    svc.vaults.create("main", "local", None)
    svc.inventory.discover(None)
    vm = N["standard"]
    svc.inventory.register(None, [vm])
    svc.policies.create(None, "every4h", "every:4h", "UTC", Retention(daily=2))
    assert svc.protection.protect(None, [vm], "every4h").configured[0].result is not None

    def run_queued(s: Any) -> int:
        n = 0
        while (job := s.queue.claim_next()) is not None:
            s.queue.execute(job)
            n += 1
        return n

    end = clock.now + timedelta(hours=24)
    ran = 0
    while clock.now < end:
        clock.now += timedelta(minutes=20)
        if clock.now == datetime(2026, 11, 23, 12, 10, tzinfo=UTC):
            svc = bootstrap(lab_settings(home), clock)  # "restart" the server mid-day
        svc.scheduler.tick()
        ran += run_queued(svc)

    backups = sorted(svc.jobs.list_jobs(job_type=JobType.BACKUP), key=lambda j: j.id)
    slots = [j.origin for j in backups]
    assert slots == [
        f"policy every4h at 2026-11-{d}T{h} UTC"
        for d, h in (("23", "04:00"), ("23", "08:00"), ("23", "12:00"), ("23", "16:00"), ("23", "20:00"), ("24", "00:00"))
    ]  # fmt: skip
    assert all(j.state is JobState.COMPLETED for j in backups), [(j.id, j.message) for j in backups]
    prunes = svc.jobs.list_jobs(job_type=JobType.PRUNE)
    gcs = svc.jobs.list_jobs(job_type=JobType.GC)  # VMVAULT_GC_SCHEDULE: daily@03:00 UTC
    assert [g.origin for g in gcs] == ["gc schedule at 2026-11-23T03:00 UTC"]
    assert gcs[0].state is JobState.COMPLETED
    assert ran == 7 and len(prunes) == 6
    assert all(p.state is JobState.COMPLETED for p in prunes)
    # retention daily=2: the newest point of each of the two days
    points = svc.point_listing.list_points(None, vm)
    assert [p.job_id for p in points] == [backups[5].id, backups[4].id]  # 00:00 and 20:00
    assert [d.incremental for p in points for d in p.disks if not d.excluded] == [True] * (
        2 * len([d for d in points[0].disks if not d.excluded])
    )


# --- the `vmvault serve` process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.proc: subprocess.Popen[str] | None = None
        self.log = home / "serve.log"
        self.auth: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        env["VMVAULT_HOME"] = str(self.home)
        for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
            if key in os.environ:
                env[key] = os.environ[key]
        env["VMVAULT_GC_SCHEDULE"] = "off"
        return env

    def start(self) -> None:
        if not self.auth:  # an operator's token, made as an admin would
            made = subprocess.run(
                [sys.executable, "-m", "vmvault", "token", "create", "tests", "--role", "operator"],
                env=self.env(), capture_output=True, text=True, check=True,
            )  # fmt: skip
            self.auth = {"Authorization": f"Bearer {made.stdout.splitlines()[-1]}"}
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmvault", "serve", "--listen", f"127.0.0.1:{self.port}"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError("server did not answer:\n" + self.log.read_text())

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.url}{path}", headers=self.auth, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any = None) -> Any:
        r = httpx.post(f"{self.url}{path}", json=body or {}, headers=self.auth, timeout=30)
        assert r.status_code in (200, 202), r.text
        return r.json()

    def wait(
        self, job_id: int, until: Any = None, timeout: float = 300, poll: float = 0.2
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.get(f"/jobs/{job_id}")
            if (until or (lambda j: j["state"] not in ("queued", "in-progress", "cancelling")))(
                job
            ):
                return job
            time.sleep(poll)
        raise AssertionError(f"job {job_id}: {job}\n" + self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=180)
        self.proc = None
        return code


@pytest.fixture()
def server(home: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(home)
    yield s
    if s.proc is not None:
        s.proc.kill()
        s.proc.wait()


def vm_clean(cli: CliRunner, home: Path, name: str) -> None:
    """No libvirt job, running and thawed, no checkpoint no point uses, work dir empty."""
    used = {p["checkpoint"] for p in cli("points", "list", name, "--json").json()} - {None}
    assert_vm_clean(lab_settings(home).work_dir, name, used, exact=False)


def test_serve_runs_queued_jobs_cancels_and_recovers_from_a_kill(
    lab: dict, cli: CliRunner, home: Path, server: ServerProcess
) -> None:
    vm, other = N["writer"], N["app-hook"]
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("discover").code in (0, 3)
    assert cli("register", vm, other).code in (0, 3)
    server.start()

    # 1. the CLI queues, the server runs, `jobs wait` follows it
    r = cli("backup", vm, "--no-wait", "--json")
    assert r.code == 0, r.stderr
    [queued] = r.json()
    assert queued["state"] == "queued" and queued["origin"] == "cli"
    r = cli("jobs", "wait", str(queued["id"]), "--json", timeout=300)
    assert r.code == 0 and r.json()["state"] == "completed", server.log.read_text()

    # 2. cancel through the API while it reads: cancelled, and the VM is left clean
    [job] = server.post("/backups", {"vms": [vm]})
    server.wait(job["id"], until=lambda j: j["state"] != "queued")
    server.post(f"/jobs/{job['id']}/cancel")
    done = server.wait(job["id"], timeout=60)
    assert done["state"] in ("cancelled", "completed"), done  # a tiny incremental may win
    vm_clean(cli, home, vm)
    before = {p["id"] for p in cli("points", "list", vm, "--json").json()}

    # 3. kill -9 the server in the middle of a full backup; queue another while it is down
    for _attempt in range(4):
        for p in cli("points", "list", other, "--json").json():  # no points: the next is full
            assert cli("points", "delete", p["id"]).code == 0
        [job2] = server.post("/backups", {"vms": [other]})
        seen = server.wait(  # kill as soon as it reads: a full takes about a second
            job2["id"],
            until=lambda j: (
                j["state"] not in ("queued", "in-progress")
                or any(line.endswith("phase: reading") for line in j["log"])
            ),
            timeout=120,
            poll=0.02,
        )
        if seen["state"] == "in-progress" and not any("phase: writing" in ln for ln in seen["log"]):
            break
    else:
        raise AssertionError("never caught a backup in progress")
    server.stop(signal.SIGKILL)
    r = cli("backup", other, "--no-wait", "--json")  # the dead server's job still holds it
    assert r.code == 2 and "OPERATION_IN_PROGRESS" in r.stderr, r.stdout + r.stderr
    waiting = cli("backup", vm, "--no-wait", "--json")
    assert waiting.code == 0, waiting.stderr

    server.start()  # recovery: the dead server's job failed, its VM cleaned
    after = server.get(f"/jobs/{job2['id']}")
    assert after["state"] == "failed" and after["error_code"] == "JOB_INTERRUPTED", after
    vm_clean(cli, home, other)
    # the job queued while the server was down runs now, and a new backup of `other` works
    assert server.wait(waiting.json()[0]["id"])["state"] == "completed", server.log.read_text()
    [again] = server.post("/backups", {"vms": [other]})
    assert server.wait(again["id"])["state"] == "completed", server.log.read_text()
    assert {p["id"] for p in cli("points", "list", vm, "--json").json()} > before

    # 4. SIGTERM: a clean stop
    assert server.stop() == 0
    assert "stopping" in server.log.read_text()
