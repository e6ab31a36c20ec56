"""The REST API over a real catalog (no libvirt needed: nothing here runs a backup)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import save_vm
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.vm import VmState


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}))
    svc.vaults.create("main", "local", None)
    save_vm(svc, "web", VmState.REGISTERED, host="h1")
    save_vm(svc, "db", VmState.DISCOVERED, host="h1")
    return svc


@pytest.fixture()
def api(services: Services) -> TestClient:
    return TestClient(create_app(services))


def test_health_vms_and_dashboard(api: TestClient) -> None:
    assert api.get("/api/v1/health").json()["status"] == "ok"
    vms = api.get("/api/v1/vms").json()
    assert {v["name"]: v["state"] for v in vms} == {"web": "registered", "db": "discovered"}
    assert api.get("/api/v1/vms/h1/web").json()["name"] == "web"
    assert api.get("/api/v1/vms?state=registered").json()[0]["name"] == "web"
    d = api.get("/api/v1/dashboard").json()
    assert d["vault"] == "main" and "jobs_24h" in d and "storage" in d


def test_errors_are_documents_with_a_status(api: TestClient) -> None:
    r = api.get("/api/v1/vms/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "VM_NOT_FOUND"
    assert r.json()["error"]["remedy"]
    r = api.get("/api/v1/jobs?status=bogus")
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
    assert api.get("/api/v1/jobs/999").status_code == 404
    r = api.post("/api/v1/backups", json={"vms": ["db"]})  # not registered: nothing queued
    assert r.status_code == 400 and "register" in r.json()["error"]["message"]
    assert api.get("/api/v1/jobs").json() == []


def test_queue_watch_and_cancel_a_backup(api: TestClient) -> None:
    r = api.post("/api/v1/backups", json={"vms": ["web"], "keep_until": "2099-01-01T00:00:00Z"})
    assert r.status_code == 202
    [job] = r.json()
    assert job["state"] == "queued" and job["origin"] == "api"
    assert job["request"]["keep_until"].startswith("2099-01-01")
    # one active job per VM: a second request conflicts
    r = api.post("/api/v1/backups", json={"vms": ["web"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "OPERATION_IN_PROGRESS"
    assert api.get("/api/v1/health").json()["jobs_queued"] == 1
    r = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    shown = api.get(f"/api/v1/jobs/{job['id']}").json()
    assert any("cancelled before it started" in line for line in shown["log"])
    r = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "JOB_NOT_ACTIVE"
    listed = api.get("/api/v1/jobs?type=backup&status=cancelled&vm=web").json()
    assert [j["id"] for j in listed] == [job["id"]]


def test_gc_and_verify_are_queued(api: TestClient) -> None:
    gc = api.post("/api/v1/gc", json={}).json()
    assert gc["type"] == "gc" and gc["state"] == "queued"
    v = api.post("/api/v1/verify", json={}).json()
    assert v["type"] == "verify" and v["request"] == {"op": "verify"}
