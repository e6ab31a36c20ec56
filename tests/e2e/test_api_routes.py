"""The routes of issue 13 over the real SQLite catalog and a local vault, with the in-memory
hypervisor (tests/e2e/api_world.py): each route's success and a refusal (code and status),
roles, the queued restore, the paged job list, the policy preview, the dashboard's days."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tests.e2e.api_world import World, make_world
from vmvault import documents
from vmvault.api import models, openapi
from vmvault.domain.access import Role
from vmvault.domain.retention import Retention
from vmvault.services.protection import ProtectResult

WEB = "00000000-0000-0000-0000-0000000000aa"
DB = "00000000-0000-0000-0000-0000000000bb"
XML_TAKEN = "<domain><name>taken</name><uuid>11111111-2222-3333-4444-555555555555</uuid></domain>"


def refused(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"]["code"] == code, r.json()
    return str(r.json()["error"]["message"])


@pytest.fixture()
def world(tmp_path: Path, catalog_url: str) -> World:
    """Vault ``main``; VMs ``web`` (protected by ``gold``, one point) and ``db`` (discovered);
    the catalog on SQLite and on PostgreSQL (``catalog_url``, tests/pglab.py)."""
    w = make_world(tmp_path / "home", {"VMVAULT_CATALOG_URL": catalog_url})
    w.services.vaults.create("main", "local", None)
    w.add_vm("web", WEB)
    w.add_vm("db", DB)
    c = w.client()
    assert c.post("/api/v1/vms/discover", json={}).status_code == 200
    [reg] = c.post("/api/v1/vms/register", json={"vms": ["web"]}).json()
    assert reg["state"] == "completed", reg
    gold = {"name": "gold", "schedule": "daily@02:00", "retention": {"daily": 7}}
    assert c.post("/api/v1/policies", json=gold).status_code == 201
    [conf] = c.post("/api/v1/protection", json={"vms": ["web"], "policy": "gold"}).json()
    assert conf["vm_state"] == "protected" and conf["policy"] == "gold"
    assert c.post("/api/v1/backups", json={"vms": ["web"]}).status_code == 202
    [backup, *_] = w.run_queued()
    assert backup.state.value == "completed", backup.message
    return w


@pytest.fixture()
def api(world: World) -> TestClient:
    return world.client()


def point_of(api: TestClient, vm: str = "web") -> str:
    [p] = api.get(f"/api/v1/points?vm={vm}").json()
    return str(p["id"])


def test_roles_are_enforced_per_route(world: World) -> None:
    reader, operator = world.client(Role.READER), world.client(Role.OPERATOR)
    assert reader.get("/api/v1/protection").status_code == 200
    body = {"schedule": "daily@01:00", "retention": {"daily": 3}}
    assert reader.post("/api/v1/policies/preview", json=body).status_code == 200
    refused(reader.post("/api/v1/backups", json={"vms": ["web"]}), 403, "ROLE_REQUIRED")
    refused(operator.post("/api/v1/policies", json=body | {"name": "x"}), 403, "ROLE_REQUIRED")
    refused(operator.delete(f"/api/v1/points/{point_of(reader)}"), 403, "ROLE_REQUIRED")
    anonymous = TestClient(reader.app)
    r = anonymous.get("/api/v1/vaults")
    refused(r, 401, "AUTH_REQUIRED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get("/api/v1/health").status_code == 200


def test_vaults(api: TestClient, tmp_path: Path) -> None:
    shown = api.get("/api/v1/vaults/main").json()
    assert shown["vm_counts"] == {"protected": 1, "discovered": 1}
    assert [h["uri"] for h in shown["hosts"]] == ["qemu:///system"]
    r = api.post("/api/v1/vaults", json={"name": "second", "location": "local",
                                         "path": str(tmp_path / "v2")})  # fmt: skip
    assert r.status_code == 201 and r.json()["path"] == str(tmp_path / "v2")
    assert (tmp_path / "v2").is_dir()
    refused(api.post("/api/v1/vaults", json={"name": "second", "location": "local"}),
            409, "VAULT_EXISTS")  # fmt: skip
    msg = refused(api.post("/api/v1/vaults", json={"name": "third", "location": "local",
                                                   "path": "rel/dir"}), 400, "INVALID_INPUT")  # fmt: skip
    assert "absolute" in msg
    refused(api.get("/api/v1/vaults/nope"), 404, "VAULT_NOT_FOUND")
    assert [v["name"] for v in api.get("/api/v1/vaults").json()] == ["main", "second"]


def test_hosts(api: TestClient) -> None:
    r = api.post("/api/v1/hosts", json={"uri": "qemu+ssh://h2/system", "location": "local"})
    assert r.status_code == 201 and r.json()["hostname"] == "memory"  # it answered
    refused(api.post("/api/v1/hosts", json={"uri": "qemu+ssh://h2/system", "location": "x"}),
            409, "HOST_EXISTS")  # fmt: skip
    cmd = {"uri": "qemu+ext:///system?command=/bin/sh", "location": "local"}
    refused(api.post("/api/v1/hosts", json=cmd), 400, "HOST_URI_RUNS_COMMAND")
    r = api.patch("/api/v1/hosts/qemu:///system", json={"cluster_managed": ["db"]})
    assert r.status_code == 200 and r.json()["cluster_managed"] == ["db"]
    assert api.get("/api/v1/vms/db").json()["cluster_managed"] is True
    assert api.delete("/api/v1/hosts/qemu+ssh://h2/system").json() == {
        "deleted": "qemu+ssh://h2/system"
    }
    refused(api.delete("/api/v1/hosts/qemu+ssh://h2/system"), 404, "HOST_NOT_FOUND")
    assert [h["uri"] for h in api.get("/api/v1/hosts?location=local").json()] == ["qemu:///system"]


def test_vms_register_update_unregister(api: TestClient) -> None:
    refused(api.post("/api/v1/vms/register", json={"vms": ["nope"]}), 404, "VM_NOT_FOUND")
    refused(api.post("/api/v1/vms/register", json={"vms": ["web"]}), 409, "ALREADY_REGISTERED")
    [job] = api.post("/api/v1/vms/register", json={"vms": ["db"]}).json()
    assert job["type"] == "register" and job["state"] == "completed"
    msg = refused(api.patch("/api/v1/vms/db", json={"exclude_disks": ["vdz"]}),
                  400, "DISK_NOT_OF_VM")  # fmt: skip
    assert "vdz" in msg
    r = api.patch("/api/v1/vms/db", json={"exclude_disks": ["vdb"]})
    assert r.status_code == 200 and r.json()["excluded_disks"] == ["vdb"]
    refused(api.post("/api/v1/vms/unregister", json={"vms": ["web"]}), 409, "VM_PROTECTED")
    [job] = api.post("/api/v1/vms/unregister", json={"vms": ["db"]}).json()
    assert job["type"] == "unregister" and job["vm_state"] == "discovered"
    found = api.post("/api/v1/vms/discover", json={}).json()
    assert found["state"] == "completed" and sorted(found["result"]["unchanged"]) == [WEB, DB]


def test_policies_and_preview(api: TestClient) -> None:
    body = {"name": "hourly", "schedule": "every:6h", "retention": {"daily": 2, "weekly": 2}}
    assert api.post("/api/v1/policies", json=body).status_code == 201
    refused(api.post("/api/v1/policies", json=body), 409, "POLICY_EXISTS")
    bad = body | {"name": "bad", "schedule": "sometimes"}
    refused(api.post("/api/v1/policies", json=bad), 400, "INVALID_SCHEDULE")
    r = api.patch("/api/v1/policies/hourly", json={"retention": {"daily": 5}})
    assert r.json()["retention"] == {"daily": 5, "weekly": 2, "monthly": 0, "yearly": 0}
    refused(api.patch("/api/v1/policies/hourly", json={}), 400, "INVALID_INPUT")
    refused(api.delete("/api/v1/policies/gold"), 409, "POLICY_IN_USE")
    assert api.delete("/api/v1/policies/hourly").json() == {"deleted": "hourly"}
    refused(api.get("/api/v1/policies/hourly"), 404, "POLICY_NOT_FOUND")
    preview = {"schedule": "weekly:mon@03:00", "timezone": "Europe/Berlin",
               "retention": {"weekly": 4}, "vm": "web", "runs": 3}  # fmt: skip
    shown = api.post("/api/v1/policies/preview", json=preview).json()
    assert len(shown["next_runs"]) == 3  # Mondays 03:00 in Berlin: 02:00 UTC in winter
    assert all(t.endswith("T02:00:00+00:00") for t in shown["next_runs"])
    [decision] = shown["retention"]
    assert decision["point"] == point_of(api) and decision["kept"]
    assert "newest point" in decision["reasons"]
    assert api.get("/api/v1/policies").json()[0]["name"] == "gold"  # nothing was stored
    refused(api.post("/api/v1/policies/preview", json=preview | {"runs": 0}),
            400, "INVALID_INPUT")  # fmt: skip
    refused(api.post("/api/v1/policies/preview", json=preview | {"vm": "nope"}),
            404, "VM_NOT_FOUND")  # fmt: skip


def test_protection_stop_and_resume(api: TestClient) -> None:
    [item] = api.get("/api/v1/protection").json()
    assert item["name"] == "web" and item["health"] == "ok" and item["points"] == 1
    [job] = api.post("/api/v1/protection/stop", json={"vms": ["web"]}).json()
    assert job["type"] == "stop-protection" and job["vm_state"] == "protection-stopped"
    refused(api.post("/api/v1/protection/stop", json={"vms": ["web"]}),
            409, "WRONG_PROTECTION_STATE")  # fmt: skip
    [job] = api.post("/api/v1/protection/resume", json={"vms": ["web"]}).json()
    assert job["vm_state"] == "protected" and job["policy"] == "gold"
    refused(api.post("/api/v1/protection", json={"vms": ["web"], "policy": "nope"}),
            404, "POLICY_NOT_FOUND")  # fmt: skip


def test_points_pin_and_delete(api: TestClient) -> None:
    pid = point_of(api)
    assert api.post(f"/api/v1/points/{pid}/protect", json={"protected": True}).json()["protected"]
    refused(api.post("/api/v1/points/nope/protect", json={"protected": True}),
            404, "POINT_NOT_FOUND")  # fmt: skip
    job = api.delete(f"/api/v1/points/{pid}").json()
    assert job["type"] == "prune" and job["state"] == "completed"
    # soft-deleted (the vault's default): listed apart, refused for restores, undeletable
    assert pid not in [p["id"] for p in api.get("/api/v1/points").json()]
    [gone] = api.get("/api/v1/points/deleted").json()
    assert gone["id"] == pid and gone["deleted_vault"] == "main" and gone["purge_after"]
    refused(api.post("/api/v1/restores", json={"vm": "web", "point": pid, "mode": "disks-only",
                                                "directory": "/tmp/x"}), 409, "POINT_SOFT_DELETED")  # fmt: skip
    refused(api.post(f"/api/v1/points/{pid}/undelete", json={"vault": "nope"}),
            404, "VAULT_NOT_FOUND")  # fmt: skip
    [back] = api.post(f"/api/v1/points/{pid}/undelete").json()
    assert back["id"] == pid
    assert pid in [p["id"] for p in api.get("/api/v1/points").json()]
    refused(api.post(f"/api/v1/points/{pid}/undelete"), 409, "POINT_NOT_SOFT_DELETED")
    assert api.get("/api/v1/points/deleted").json() == []
    # with soft delete off, a deletion is immediate
    assert (
        api.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()["soft_delete"] == "off"
    )
    api.delete(f"/api/v1/points/{pid}")
    refused(api.get(f"/api/v1/points/{pid}"), 404, "POINT_NOT_FOUND")
    refused(api.delete(f"/api/v1/points/{pid}"), 404, "POINT_NOT_FOUND")


def test_a_vaults_soft_delete_always_on_is_for_good(api: TestClient) -> None:
    r = api.patch("/api/v1/vaults/main", json={"soft_delete": "always", "soft_delete_days": 30})
    assert (r.json()["soft_delete"], r.json()["soft_delete_days"]) == ("always", 30)
    refused(api.patch("/api/v1/vaults/main", json={"soft_delete": "off"}),
            409, "SOFT_DELETE_ALWAYS_ON")  # fmt: skip
    refused(api.patch("/api/v1/vaults/main", json={"soft_delete_days": 0}), 400, "INVALID_INPUT")
    refused(api.patch("/api/v1/vaults/main", json={}), 400, "INVALID_INPUT")
    refused(api.patch("/api/v1/vaults/nope", json={"soft_delete": "on"}), 404, "VAULT_NOT_FOUND")
    assert api.get("/api/v1/vaults").json()[0]["soft_delete"] == "always"


def test_copies_are_queued(world: World, api: TestClient, tmp_path: Path) -> None:
    world.services.vaults.create("offsite", "local", str(tmp_path / "offsite"))
    r = api.post("/api/v1/copies", json={"from_vault": "main", "to_vault": "offsite",
                                         "vms": ["web"]})  # fmt: skip
    assert r.status_code == 202
    [job] = r.json()
    assert job["type"] == "copy" and job["state"] == "queued" and job["origin"] == "api"
    [done] = world.run_queued()
    assert done.state.value == "completed"
    assert api.get(f"/api/v1/points/{point_of(api)}").json()["vaults"] == ["main", "offsite"]
    refused(api.post("/api/v1/copies", json={"from_vault": "main", "to_vault": "main",
                                             "all": True}), 400, "COPY_SAME_VAULT")  # fmt: skip


def test_a_restore_is_queued_checked_and_run(world: World, api: TestClient, tmp_path: Path) -> None:
    pid = point_of(api)
    out = tmp_path / "restored"
    r = api.post("/api/v1/restores",
                 json={"vm": "web", "point": pid, "mode": "disks-only", "directory": str(out)})  # fmt: skip
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["type"] == "restore" and job["state"] == "queued"
    assert job["request"]["mode"] == "disks-only" and job["request"]["point"] == pid
    [done] = world.run_queued()
    assert done.state.value == "completed", done.message
    assert sorted(p.name for p in out.iterdir()) == ["web-vda.qcow2", "web-vdb.qcow2", "web.xml"]
    r = api.post("/api/v1/restores", json={"vm": "web", "point": pid, "mode": "as-new",
                                           "name": "web-copy"})  # fmt: skip
    assert r.status_code == 202 and r.json()["request"]["name"] == "web-copy"
    assert api.post(f"/api/v1/jobs/{r.json()['id']}/cancel").json()["state"] == "cancelled"


def test_a_restore_with_a_bad_target_is_refused_and_nothing_queued(
    world: World, api: TestClient
) -> None:
    pid = point_of(api)
    world.restore_driver.add(XML_TAKEN)
    before = api.get("/api/v1/jobs").headers["x-total-count"]
    base = {"vm": "web", "point": pid}
    cases = [
        (base | {"mode": "as-new", "name": "taken"}, 409, "RESTORE_NAME_EXISTS"),
        (base | {"mode": "as-new"}, 400, "INVALID_INPUT"),  # no name
        (base | {"mode": "as-new", "name": "n", "host": "qemu+ssh://x/system"},
         404, "HOST_NOT_FOUND"),
        (base | {"mode": "replace", "name": "n"}, 400, "INVALID_INPUT"),
        (base | {"mode": "disks-only"}, 400, "INVALID_INPUT"),  # no directory
        (base | {"mode": "disks-only", "directory": "rel"}, 400, "INVALID_INPUT"),
        (base | {"mode": "as-new", "name": "n", "format": "raw"}, 400, "INVALID_INPUT"),
        (base | {"mode": "as-new", "name": "n", "point": "nope"}, 404, "POINT_NOT_FOUND"),
        ({"vm": "db", "point": pid, "mode": "as-new", "name": "n"}, 400, "POINT_OF_ANOTHER_VM"),
        (base | {"mode": "sideways"}, 400, "INVALID_INPUT"),
    ]  # fmt: skip
    for body, status, code in cases:
        refused(api.post("/api/v1/restores", json=body), status, code)
    assert api.get("/api/v1/jobs").headers["x-total-count"] == before
    assert api.get("/api/v1/jobs?type=restore").json() == []


def test_jobs_are_paged_with_a_total(api: TestClient) -> None:
    everything = api.get("/api/v1/jobs").json()
    total = len(everything)
    assert total >= 5  # discovery, register, configure-protection, backup, prune
    r = api.get("/api/v1/jobs?limit=2&offset=1")
    assert r.headers["x-total-count"] == str(total)
    assert [j["id"] for j in r.json()] == [j["id"] for j in everything[1:3]]
    r = api.get(f"/api/v1/jobs?offset={total}")
    assert r.json() == [] and r.headers["x-total-count"] == str(total)
    r = api.get("/api/v1/jobs?type=backup&state=completed&vm=web&since=1h")
    assert r.headers["x-total-count"] == "1" and r.json()[0]["type"] == "backup"
    assert api.get("/api/v1/jobs?status=completed&type=backup").headers["x-total-count"] == "1"
    refused(api.get("/api/v1/jobs?limit=1001"), 400, "INVALID_INPUT")
    refused(api.get("/api/v1/jobs?offset=-1"), 400, "INVALID_INPUT")
    refused(api.get("/api/v1/jobs?state=failed&status=completed"), 400, "INVALID_INPUT")


def test_dashboard_days_and_the_error_catalog(api: TestClient) -> None:
    d = api.get("/api/v1/dashboard").json()
    assert len(d["daily"]) == 14
    today = d["daily"][-1]
    assert today["day"] == d["at"][:10] and today["backups"] == 1 and today["failed"] == 0
    assert today["bytes_new"] == api.get(f"/api/v1/points/{point_of(api)}").json()["bytes_new"]
    assert all(day["backups"] == 0 for day in d["daily"][:-1])
    catalog = {e["code"]: e for e in api.get("/api/v1/errors").json()}
    assert catalog["AUTH_REQUIRED"]["kind"] == "usage"
    assert catalog["VM_NOT_FOUND"]["remedy"]


def test_the_committed_openapi_document_is_current() -> None:
    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert committed.read_text() == openapi.text(), (
        "docs/openapi.json is stale: run 'python -m vmvault.api.openapi > docs/openapi.json'"
    )


def test_the_new_models_name_exactly_their_documents_keys(world: World, api: TestClient) -> None:
    """As test_api.py's check for the older ones: a document's field the model lacks would be
    dropped from the answer, a model's field the document lacks would fail its schema."""
    svc = world.services
    preview = svc.policies.preview(None, "daily@01:00", "UTC", Retention(daily=2), vm_ref="web")
    discovered = api.post("/api/v1/vms/discover", json={}).json()
    docs: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (models.HostDoc, documents.host_doc(svc.vaults.list_hosts()[0])),
        (models.VaultShowDoc, documents.vault_summary_doc(svc.vaults.show(None))),
        (models.ProtectedItemDoc, documents.protected_item_doc(svc.protection.items(None)[0][0])),
        (models.PolicyPreviewDoc, documents.preview_doc(preview)),
        (models.RetentionDecisionDoc, documents.preview_doc(preview)["retention"][0]),
        (models.ErrorCatalogDoc, documents.error_catalog()[0]),
        (models.DayDoc, documents.dashboard_doc(svc.dashboard.summary(None))["daily"][0]),
        (models.DiscoveryDoc, discovered),
        (models.DiscoveryResultDoc, discovered["result"]),
    ]
    for model, doc in docs:
        assert set(doc) == set(model.model_fields), model.__name__
    [stopped] = documents.protect_docs(ProtectResult(svc.protection.stop(None, ["web"],
                                                                         retain_data=True), []))  # fmt: skip
    assert set(stopped) == set(models.ProtectJobDoc.model_fields)
