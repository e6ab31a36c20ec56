"""``/metrics`` read back with prometheus_client's own parser and checked against the catalog:
real jobs (a backup failing on an unreachable host, backups driven through the real
JobRunner), real points in the SQLite catalog, a protected VM the attention rule flags."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import save_vm
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Principal, Role
from vmvault.domain.consistency import Consistency
from vmvault.domain.job import JobState, JobType
from vmvault.domain.recovery_point import Method, PointDisk, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState
from vmvault.services.jobs import JobContext

DEAD_HOST = "qemu+tcp://127.0.0.1:9/system"
TOKENS = {"r": Principal("prometheus", Role.READER)}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def world(tmp_path: Path) -> tuple[Services, Clock]:
    clock = Clock()
    env = {"VMVAULT_HOME": str(tmp_path / "home"), "VMVAULT_NODE_HOST": DEAD_HOST}
    svc = bootstrap(Settings.from_env(env), clock)  # the dead host's node: its backup runs
    svc.vaults.create("main", "local", None)
    # a real failed backup: the VM's host refuses connections
    web = replace(save_vm(svc, "web", VmState.REGISTERED), host_uri=DEAD_HOST)
    svc.policies.create("main", "nightly", "daily@02:00", "UTC", Retention(daily=7))
    db = save_vm(svc, "db", VmState.PROTECTED, policy="nightly")
    with svc._uow() as uow:
        uow.hosts.add(DEAD_HOST, "local", "dead", clock.now)
        uow.vms.save(web)
        uow.vms.save(replace(db, protected_since=clock.now - timedelta(days=3)))
        uow.commit()
    svc.backups.backup("main", ["web"])

    def read(bytes_read: int, warn: bool, seconds: int):  # type: ignore[no-untyped-def]
        def work(ctx: JobContext) -> None:
            ctx.progress(bytes_read, bytes_read)
            if warn:
                ctx.warn("the guest agent did not answer")
            clock.now += timedelta(seconds=seconds)

        return work

    # db: a good backup (4 MiB in 7 s), then one with warnings (1 MiB in 3 s)
    svc.runner.run(JobType.BACKUP, "main", db.uuid, db.label, read(4 << 20, False, 7))
    clock.now += timedelta(minutes=5)
    svc.runner.run(JobType.BACKUP, "main", db.uuid, db.label, read(1 << 20, True, 3))
    svc.runner.run(JobType.VERIFY, "main", None, None, read(0, False, 1))
    with svc._uow() as uow:
        for n, (frozen, paused) in enumerate([(30, 0), (200, 0), (0, 1500), (0, 0)]):
            disk = PointDisk("vda", (n + 1) << 30, "qcow2", bytes_read=1 << 20)
            uow.points.add(
                RecoveryPoint(
                    id=f"p{n}", vault="main", vm_uuid=web.uuid, vm_name="web",
                    created_at=clock.now - timedelta(days=10 - n),
                    consistency=Consistency.CRASH, method=Method.OFFLINE,
                    frozen_ms=frozen, paused_ms=paused, checkpoint=None, disks=[disk],
                )
            )  # fmt: skip
        uow.commit()
    return svc, clock


def scrape(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = api.get("/metrics", headers={"Authorization": "Bearer r"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(r.text):
        assert family.name.startswith("vmvault_")
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_match_the_catalog(world: tuple[Services, Clock]) -> None:
    services, _clock = world
    api = TestClient(create_app(services, authenticate=TOKENS.get))
    assert api.get("/metrics").status_code == 401  # not an API request: not counted
    assert api.get("/api/v1/vaults").status_code == 401  # counted below
    m = scrape(api)

    # jobs by type and state, counted independently from the job list
    for job_type in (JobType.BACKUP, JobType.VERIFY):
        for state in JobState:
            n = len(services.jobs.list_jobs(job_type=job_type, state=state))
            key = ("vmvault_jobs", (("state", state.value), ("type", job_type.value)))
            assert m.get(key, 0) == n
    assert m[("vmvault_jobs", (("state", "failed"), ("type", "backup")))] == 1
    assert m[("vmvault_jobs", (("state", "completed-with-warnings"), ("type", "backup")))] == 1

    # last backups per VM
    web = services.inventory.find("web")
    db = services.inventory.find("db")
    web_labels = (("name", web.label), ("vm", web.uuid))
    db_labels = (("name", db.label), ("vm", db.uuid))
    db_jobs = services.jobs.list_jobs(job_type=JobType.BACKUP, vm_uuid=db.uuid)  # newest first
    newest = db_jobs[0]
    assert newest.state is JobState.COMPLETED_WITH_WARNINGS and newest.ended_at is not None
    key = ("vmvault_vm_last_backup_success_timestamp_seconds", db_labels)
    assert m[key] == newest.ended_at.timestamp()
    assert m[("vmvault_vm_last_backup_duration_seconds", db_labels)] == 3
    assert m[("vmvault_vm_last_backup_bytes", db_labels)] == 1 << 20
    assert m[("vmvault_vm_last_backup_failed", db_labels)] == 0
    assert ("vmvault_vm_last_backup_success_timestamp_seconds", web_labels) not in m
    assert m[("vmvault_vm_last_backup_failed", web_labels)] == 1

    # protected VMs by health: db has points of no VM of its own: never backed up
    health = {k[1][0][1]: v for k, v in m.items() if k[0] == "vmvault_protected_vms"}
    assert health == {
        "ok": 0, "never-backed-up": 1, "overdue": 0, "last-backup-failed": 0, "vm-deleted": 0
    }  # fmt: skip
    _count, flagged = services.dashboard.attention("main")
    assert [a.reason for a in flagged] == ["never-backed-up"]

    # vault figures
    points = services.point_listing.list_points("main", None)
    vault = (("vault", "main"),)
    assert m[("vmvault_vault_points", vault)] == len(points) == 4
    assert m[("vmvault_vault_logical_bytes", vault)] == sum(p.bytes_logical for p in points)
    stored = services.vaults.stored_chunk_bytes(services.vaults.resolve("main")).bytes
    assert m[("vmvault_vault_stored_bytes", vault)] == stored

    # the frozen / paused windows of the points held (frozen 30 and 200 ms, paused 1.5 s)
    def bucket(kind: str, le: str) -> float:
        return m[("vmvault_quiesce_window_seconds_bucket", (("kind", kind), ("le", le)))]

    assert bucket("frozen", "0.025") == 0
    assert bucket("frozen", "0.05") == 1
    assert bucket("frozen", "0.25") == 2
    assert bucket("frozen", "+Inf") == 2
    assert m[("vmvault_quiesce_window_seconds_count", (("kind", "frozen"),))] == 2
    assert m[("vmvault_quiesce_window_seconds_sum", (("kind", "frozen"),))] == pytest.approx(0.23)
    assert bucket("paused", "1.0") == 0 and bucket("paused", "2.5") == 1
    assert m[("vmvault_quiesce_window_seconds_count", (("kind", "paused"),))] == 1

    # API requests (/api/ paths only: not /metrics, not the console's files) by status
    requests = (("method", "GET"), ("status", "401"))
    assert m[("vmvault_api_requests_total", requests)] == 1
    assert ("vmvault_api_requests_total", (("method", "GET"), ("status", "200"))) not in m
    api.get("/console/index.html")
    assert api.get("/api/v1/vaults", headers={"Authorization": "Bearer r"}).status_code == 200
    again = scrape(api)
    assert again[("vmvault_api_requests_total", (("method", "GET"), ("status", "200")))] == 1
    api.get("/api/v1/nope", headers={"Authorization": "Bearer r"})
    assert scrape(api)[("vmvault_api_requests_total", (("method", "GET"), ("status", "404")))] == 1


def test_metrics_need_a_reader_token(world: tuple[Services, Clock]) -> None:
    services, _ = world
    api = TestClient(create_app(services, authenticate=TOKENS.get))
    r = api.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_REQUIRED"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
