"""The REST API over a real catalog (no libvirt needed: nothing here runs a backup)."""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tests.api_tokens import authenticate, bearer
from tests.conftest import save_vm
from vmvault import documents
from vmvault.api import models
from vmvault.api.app import create_app
from vmvault.api.errors import MAX_BODY_BYTES
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.recovery_point import PointDisk
from vmvault.domain.vm import Disk, Nic, VmState


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}))
    svc.vaults.create("main", "local", None)
    save_vm(svc, "web", VmState.REGISTERED, host="h1")
    save_vm(svc, "db", VmState.DISCOVERED, host="h1")
    return svc


@pytest.fixture()
def api(services: Services) -> TestClient:
    return TestClient(create_app(services, authenticate=authenticate), headers=bearer())


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


def _error(r: Any, status: int, code: str) -> dict[str, str]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "remedy"}
    assert body["error"]["code"] == code, body
    return body["error"]


JSON = {"content-type": "application/json"}


def test_bad_input_speaks_the_error_language(api: TestClient) -> None:
    # malformed JSON, a body that is not an object, wrong and missing fields, an unknown one
    e = _error(
        api.post("/api/v1/backups", content=b'{"vms": [', headers=JSON), 400, "INVALID_INPUT"
    )
    assert "malformed JSON" in e["message"]
    e = _error(
        api.post("/api/v1/backups", content=b"vms=web", headers={"content-type": "text/plain"}),
        400,
        "INVALID_INPUT",
    )
    assert "JSON object" in e["message"]
    e = _error(api.post("/api/v1/backups", json={"vms": "web"}), 400, "INVALID_INPUT")
    assert "body.vms" in e["message"]
    e = _error(api.post("/api/v1/restore-tests", json={"vm": "web"}), 400, "INVALID_INPUT")
    assert "body.point" in e["message"] and "required" in e["message"]
    # an unknown field is refused, not ignored: {"dry_run": true} must not run a real GC
    e = _error(api.post("/api/v1/gc", json={"dry_run": True}), 400, "INVALID_INPUT")
    assert "dry_run" in e["message"]
    # path and query parameters
    _error(api.get("/api/v1/jobs/abc"), 400, "INVALID_INPUT")
    _error(api.get(f"/api/v1/jobs/{2**63}"), 400, "INVALID_INPUT")  # was a 500 (OverflowError)
    _error(api.post("/api/v1/jobs/0/cancel"), 400, "INVALID_INPUT")
    _error(api.get("/api/v1/vms?state=bogus"), 400, "INVALID_INPUT")
    assert api.get("/api/v1/jobs").json() == []  # nothing was queued by any of them


def test_the_body_is_never_echoed(api: TestClient) -> None:
    secret = "s3cr3t-" + "x" * 40
    for body in (
        {"vms": [1, {"k": secret}]},
        {"vms": ["web"], secret: 1},
        {"vms": ["web"], "keep_until": secret},
    ):
        r = api.post("/api/v1/backups", json=body)
        e = _error(r, 400, "INVALID_INPUT")
        assert secret not in r.text and "input" not in r.json()["error"], e
    r = api.post("/api/v1/backups", content=b'{"vms": ["' + secret.encode() + b'"', headers=JSON)
    assert r.status_code == 400 and secret not in r.text


def test_unknown_routes_and_methods(api: TestClient) -> None:
    e = _error(api.get("/api/v1/nothing-here"), 404, "ROUTE_NOT_FOUND")
    assert "/openapi.json" in e["remedy"]
    e = _error(api.delete("/api/v1/vaults"), 405, "METHOD_NOT_ALLOWED")
    assert "GET" in e["remedy"]
    _error(api.put("/api/v1/backups", json={"vms": ["web"]}), 405, "METHOD_NOT_ALLOWED")


def test_request_bodies_are_size_limited(api: TestClient) -> None:
    big = b'{"vms": ["' + b"w" * MAX_BODY_BYTES + b'"]}'
    e = _error(api.post("/api/v1/backups", content=big, headers=JSON), 413, "REQUEST_TOO_LARGE")
    assert str(MAX_BODY_BYTES) in e["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"vms": ["'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"w" * 1024
        yield b'"]}'

    r = api.post("/api/v1/backups", content=chunked(), headers=JSON)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _error(r, 413, "REQUEST_TOO_LARGE")
    _error(
        api.post("/api/v1/gc", content=b"{}", headers={**JSON, "content-length": "12x"}),
        400,
        "INVALID_INPUT",
    )
    # just under the limit is read and judged on its content
    fits = b'{"vms": ["' + b"w" * (MAX_BODY_BYTES - 100) + b'"]}'
    _error(api.post("/api/v1/backups", content=fits, headers=JSON), 404, "VM_NOT_FOUND")
    assert api.get("/api/v1/jobs").json() == []


def test_contradictory_requests_are_refused(api: TestClient) -> None:
    r = api.post("/api/v1/backups", json={"vms": ["web"]})
    [job] = r.json()
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    e = _error(api.post("/api/v1/verify", json={"vm": "web", "point": "p1"}), 400, "INVALID_INPUT")
    assert "both a point and a VM" in e["message"]
    _error(api.post("/api/v1/backups", json={"vms": []}), 400, "INVALID_INPUT")
    _error(
        api.post("/api/v1/backups", json={"vms": ["web"], "keep_until": "2000-01-01T00:00:00Z"}),
        400,
        "INVALID_INPUT",
    )
    assert [j["id"] for j in api.get("/api/v1/jobs").json()] == [job["id"]]


def test_gc_and_verify_need_no_body(api: TestClient) -> None:
    assert api.post("/api/v1/gc").status_code == 202
    assert api.post("/api/v1/verify").json()["request"] == {"op": "verify"}


def test_openapi_declares_statuses_and_response_models(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorDoc"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "413", "500"} <= codes, (method, path, codes)
            assert "422" not in codes, (method, path)
            for code, resp in op["responses"].items():
                if (path, code) == ("/metrics", "200"):  # Prometheus' text format
                    assert set(resp["content"]) == {"text/plain"}
                    continue
                if (path, code) == ("/api/v1/points/{point_id}/files/content", "200"):
                    assert set(resp["content"]) == {"application/octet-stream"}  # a file's bytes
                    continue
                if (path, code) == ("/api/v1/points/{point_id}/files/archive", "200"):
                    assert set(resp["content"]) == {"application/x-tar"}  # files as one tar
                    continue
                schema = resp["content"]["application/json"]["schema"]
                if code.startswith("2"):
                    assert schema != {}, (method, path, "untyped response")
                elif (path, code) == ("/api/v1/health", "503"):  # a component is down
                    assert schema == {"$ref": "#/components/schemas/HealthDoc"}
                else:
                    assert schema == {"$ref": error_ref}, (method, path, code)
            if path.startswith("/api/v1/") and "{" in path:
                assert "404" in codes, (method, path)
            if method == "post":  # what it names is missing, or it conflicts (POST /tokens:
                # no 404; POST /notifications: no 409)
                assert {"404", "409"} & codes, (method, path)
    # query parameters that take fixed values say so (the fuzzer found them as free strings)
    params = {p["name"]: p["schema"] for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    for name in ("type", "status"):
        ref = next(s["$ref"] for s in params[name]["anyOf"] if "$ref" in s)
        assert spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["enum"], name


def test_response_models_match_the_documents(services: Services, api: TestClient) -> None:
    """Each model names exactly the document's keys (documents may gain fields: then the
    model gains them too, or the API would drop them)."""
    [job] = api.post("/api/v1/backups", json={"vms": ["web"]}).json()
    docs: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (models.JobDoc, job),
        (models.JobWithLogDoc, api.get(f"/api/v1/jobs/{job['id']}").json()),
        (models.VmDoc, documents.vm_doc(services.inventory.find("web"))),
        (models.VaultDoc, documents.vault_doc(services.vaults.list_vaults()[0])),
        (models.DashboardDoc, documents.dashboard_doc(services.dashboard.summary(None))),
    ]
    raw_job = documents.job_doc(services.jobs.show(job["id"])[0])
    assert set(raw_job) == set(models.JobDoc.model_fields)
    for model, doc in docs:
        assert set(doc) == set(model.model_fields), model.__name__
    # the nested ones: compare with the dataclasses they are built from
    assert set(models.DiskDoc.model_fields) == {f.name for f in fields(Disk)}
    assert set(models.NicDoc.model_fields) == {f.name for f in fields(Nic)}
    assert set(models.PointDiskDoc.model_fields) == {f.name for f in fields(PointDisk)}
    point_keys = set(inspect.getsource(documents.point_doc).split('"disks"')[0].split('"')[1::2])
    assert point_keys | {"disks"} == set(models.PointDoc.model_fields)
    policy_keys = set(inspect.getsource(documents.policy_doc).split('"')[1::2])
    assert policy_keys == set(models.PolicyDoc.model_fields)


def test_a_huge_since_is_bad_input_not_a_failure(api: TestClient) -> None:
    # was an OverflowError inside timedelta, a 500 INTERNAL_ERROR (bounded in domain/inputs.py)
    _error(api.get("/api/v1/jobs?since=99999999999999d"), 400, "INVALID_INPUT")


def test_a_real_server_refuses_a_chunked_upload_over_the_limit(services: Services) -> None:
    """Through uvicorn, as a client would: a body without Content-Length is counted."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app = create_app(services, authenticate=authenticate)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)

        def chunks() -> Iterator[bytes]:
            for _ in range(MAX_BODY_BYTES // 4096 + 2):
                yield b" " * 4096

        url = f"http://127.0.0.1:{port}/api/v1/gc"
        r = httpx.post(url, content=chunks(), headers=JSON | bearer(), timeout=30)
        assert r.request.headers["transfer-encoding"] == "chunked"
        _error(r, 413, "REQUEST_TOO_LARGE")
        assert httpx.post(url, json={}, headers=bearer(), timeout=30).status_code == 202
    finally:
        server.should_exit = True
        thread.join(timeout=30)


SECRET_TEXT = "postgresql://vmvault:s3cret@db.internal/catalog"


def test_a_bug_answers_a_fixed_text_with_an_error_id(
    services: Services, api: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A 500's exception text (a path, a URL with a password) stays in the server's log, under
    the error id the client gets."""

    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(SECRET_TEXT)

    monkeypatch.setattr(services.vaults, "list_vaults", explode)
    api = TestClient(api.app, headers=bearer(), raise_server_exceptions=False)
    r = api.get("/api/v1/vaults")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "INTERNAL_ERROR" and "s3cret" not in r.text
    assert "RuntimeError" not in r.text
    ident = error["message"].split("error id ")[1].split()[0]
    logged = [rec for rec in caplog.records if ident in rec.getMessage()]
    assert logged and SECRET_TEXT in logged[0].getMessage()


def test_health_says_only_that_the_catalog_is_down(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(SECRET_TEXT)

    monkeypatch.setattr(services.jobs, "count_jobs", explode)
    r = TestClient(create_app(services, authenticate=authenticate)).get("/api/v1/health")
    assert r.status_code == 503 and r.json()["down"] == ["catalog"]
    assert r.json()["components"]["catalog"] == {
        "status": "down",
        "problem": "the catalog did not answer",
    }
    assert "s3cret" not in r.text and SECRET_TEXT in caplog.text


def test_each_dashboard_job_count_is_what_its_jobs_link_lists(
    services: Services, api: TestClient
) -> None:
    """Jobs of two vaults in every state: each ``jobs_24h`` count of the dashboard equals the
    X-Total-Count of ``GET /jobs?vault=&state=&since=24h`` (the console's link)."""
    from vmvault.domain.job import JobState, JobType

    services.vaults.create("other", "local", None)
    now = services.clock()
    states = [*JobState] * 2
    with services._uow() as uow:
        for n, state in enumerate(states):
            for vault in ("main", "other") if n % 2 else ("main",):
                uow.jobs.create(JobType.GC, vault, None, None, state, now, None, None)
        uow.commit()
    board = api.get("/api/v1/dashboard?vault=main").json()["jobs_24h"]
    assert set(board) == {s.value.replace("-", "_") for s in JobState}
    for key, n in board.items():
        state = key.replace("_", "-")
        r = api.get(f"/api/v1/jobs?vault=main&state={state}&since=24h")
        assert r.status_code == 200 and int(r.headers["X-Total-Count"]) == n == 2, key
        assert {j["vault"] for j in r.json()} == {"main"}
    assert int(api.get("/api/v1/jobs?vault=other").headers["X-Total-Count"]) == len(JobState)
    assert api.get("/api/v1/jobs?vault=nope").json()["error"]["code"] == "VAULT_NOT_FOUND"
