"""Authentication, authorization and the audit log of the REST API, over a real catalog:
FastAPI's TestClient for the app, the real ``vmvault`` command for tokens made and changes
recorded by the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.conftest import CliRunner, save_vm
from vmvault.api.app import create_app
from vmvault.api.auth import needed_role
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Role
from vmvault.domain.vm import VmState

#: Routes anyone may call: the health check, FastAPI's documentation and the web console's
#: redirect and static files (under /console).
PUBLIC = {"/api/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"}
ROLES = list(Role)


@pytest.fixture()
def services(home: Path) -> Iterator[Services]:
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    svc.vaults.create("main", "local", None)
    save_vm(svc, "web", VmState.REGISTERED, host="h1")
    yield svc
    svc.close()


@pytest.fixture()
def api(services: Services) -> TestClient:
    return TestClient(create_app(services, authenticate=services.tokens.authenticate))


@pytest.fixture()
def keys(services: Services) -> dict[Role, dict[str, str]]:
    """A token of each role, as the header that carries it."""
    made = {r: services.tokens.create(f"t-{r.value}", r, "local:test")[1] for r in Role}
    return {r: {"Authorization": f"Bearer {t}"} for r, t in made.items()}


def _routes(api: TestClient) -> list[tuple[str, str, Role | None]]:
    """Every (method, path, role needed) of the app, routers included by others too."""
    found = []
    for route in iter_route_contexts(api.app.routes):  # type: ignore[attr-defined]
        methods = route.methods or set()
        if route.path.startswith("/console") or not methods:
            continue  # the console's static files (a mount)
        for method in sorted(methods - {"HEAD"}):
            found.append((method, route.path, needed_role(route)))
    return found


def _call(api: TestClient, method: str, path: str, headers: dict[str, str] | None) -> Any:
    url = re.sub(r"\{[^}]+\}", "1", path)  # a value for every path parameter
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return api.request(method, url, headers=headers, **body)


def _refused(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"]["code"] == code
    if status == 401:
        assert r.headers["www-authenticate"] == 'Bearer realm="vmvault"'


def test_every_route_but_the_public_ones_needs_a_role(api: TestClient) -> None:
    routes = _routes(api)
    assert len(routes) > 15
    missing = [(m, p) for m, p, role in routes if role is None and p not in PUBLIC]
    assert missing == []
    roles = {(m, p): role for m, p, role in routes}
    assert roles[("GET", "/api/v1/health")] is None
    assert roles[("GET", "/api/v1/whoami")] is Role.READER
    assert roles[("POST", "/api/v1/backups")] is Role.OPERATOR
    for route in [("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"),
                  ("DELETE", "/api/v1/tokens/{name}"), ("GET", "/api/v1/audit")]:  # fmt: skip
        assert roles[route] is Role.ADMIN, route


#: The contract: each route's role, as docs/server.md's routes table states it (a path
#: parameter is ``{}``). The app's routes must match it exactly, and the table must say it.
R, OP, C, A = Role.READER, Role.OPERATOR, Role.CONTRIBUTOR, Role.ADMIN
CONTRACT: dict[tuple[str, str], Role] = {
    ("GET", "/metrics"): R,
    ("GET", "/api/v1/dashboard"): R,
    ("GET", "/api/v1/errors"): R,
    ("GET", "/api/v1/vaults"): R,
    ("GET", "/api/v1/vaults/{}"): R,
    ("POST", "/api/v1/vaults"): C,
    ("POST", "/api/v1/vaults/attach"): C,
    ("PATCH", "/api/v1/vaults/{}"): C,
    ("DELETE", "/api/v1/vaults/{}"): C,
    ("GET", "/api/v1/hosts"): R,
    ("POST", "/api/v1/hosts"): C,
    ("PATCH", "/api/v1/hosts/{}"): C,
    ("DELETE", "/api/v1/hosts/{}"): C,
    ("GET", "/api/v1/vms"): R,
    ("GET", "/api/v1/vms/{}"): R,
    ("POST", "/api/v1/vms/discover"): C,
    ("POST", "/api/v1/vms/register"): C,
    ("POST", "/api/v1/vms/unregister"): C,
    ("PATCH", "/api/v1/vms/{}"): C,
    ("GET", "/api/v1/policies"): R,
    ("GET", "/api/v1/policies/{}"): R,
    ("POST", "/api/v1/policies/preview"): R,
    ("POST", "/api/v1/policies"): C,
    ("PATCH", "/api/v1/policies/{}"): C,
    ("DELETE", "/api/v1/policies/{}"): C,
    ("GET", "/api/v1/protection"): R,
    ("POST", "/api/v1/protection"): C,
    ("POST", "/api/v1/protection/stop"): C,
    ("POST", "/api/v1/protection/resume"): C,
    ("POST", "/api/v1/backups"): OP,
    ("POST", "/api/v1/copies"): OP,
    ("GET", "/api/v1/jobs"): R,
    ("GET", "/api/v1/jobs/{}"): R,
    ("GET", "/api/v1/jobs/{}/outcome"): R,
    ("POST", "/api/v1/jobs/{}/cancel"): OP,
    ("GET", "/api/v1/points"): R,
    ("GET", "/api/v1/points/{}"): R,
    ("DELETE", "/api/v1/points/{}"): C,
    ("POST", "/api/v1/points/{}/protect"): C,
    ("GET", "/api/v1/points/deleted"): R,
    ("POST", "/api/v1/points/{}/lock"): C,
    ("POST", "/api/v1/points/{}/undelete"): C,
    ("POST", "/api/v1/points/{}/purge"): C,
    ("GET", "/api/v1/points/{}/filesystems"): R,
    ("GET", "/api/v1/points/{}/files"): R,
    ("GET", "/api/v1/points/{}/files/find"): R,
    ("GET", "/api/v1/points/{}/files/content"): OP,
    ("GET", "/api/v1/points/{}/files/archive"): OP,
    ("POST", "/api/v1/points/{}/export"): OP,
    ("POST", "/api/v1/exports/{}/stop"): OP,
    ("POST", "/api/v1/restores"): OP,
    ("POST", "/api/v1/restore-tests"): OP,
    ("POST", "/api/v1/verify"): OP,
    ("POST", "/api/v1/gc"): OP,
    ("GET", "/api/v1/whoami"): R,
    ("GET", "/api/v1/tokens"): A,
    ("POST", "/api/v1/tokens"): A,
    ("DELETE", "/api/v1/tokens/{}"): A,
    ("GET", "/api/v1/audit"): A,
    ("GET", "/api/v1/approvals"): A,
    ("GET", "/api/v1/approvals/{}"): A,
    ("POST", "/api/v1/approvals/{}/approve"): A,
    ("POST", "/api/v1/approvals/{}/reject"): A,
    ("GET", "/api/v1/notifications"): C,
    ("POST", "/api/v1/notifications"): C,
    ("DELETE", "/api/v1/notifications/{}"): C,
    ("POST", "/api/v1/notifications/test"): C,
    ("GET", "/api/v1/notifications/outbox"): C,
}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_needs_the_role_the_contract_states(api: TestClient) -> None:
    """Not only "each route refuses below its own declared role": the declared role is the
    one the contract gives it, and no route is missing from or unknown to the contract."""
    declared = {(m, _shape(p)): role for m, p, role in _routes(api) if p not in PUBLIC}
    assert declared == CONTRACT


def test_the_routes_table_of_docs_server_md_is_the_contract() -> None:
    text = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    rows = re.findall(
        r"^\| (reader|operator|contributor|admin) \| ([A-Z, ]+) \| ([^|]+) \|", text, re.M
    )
    documented: dict[tuple[str, str], Role] = {}
    for role, methods, paths in rows:
        for path in re.findall(r"`(/[^`]*)`", paths):
            if path == "/api/v1":  # "(not under `/api/v1`)"
                continue
            full = path if path == "/metrics" else f"/api/v1{path}"
            for method in methods.split(", "):
                documented[(method, _shape(full))] = Role(role)
    assert documented == CONTRACT


def test_the_role_matrix_of_every_route(api: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    """A route that needs role R: 401 without a token, 403 to every lower role, neither to R."""
    checked = 0
    for method, path, needed in _routes(api):
        if needed is None:
            continue
        _refused(_call(api, method, path, None), 401, "AUTH_REQUIRED")
        for role in ROLES[: ROLES.index(needed)]:
            r = _call(api, method, path, keys[role])
            _refused(r, 403, "ROLE_REQUIRED")
            assert f"this needs {needed.value} or above" in r.json()["error"]["message"]
        r = _call(api, method, path, keys[needed])
        assert r.status_code not in (401, 403), (method, path, needed, r.status_code, r.text)
        checked += 1
    assert checked > 15


def test_no_token_a_malformed_unknown_or_revoked_one_is_401(
    api: TestClient, services: Services, keys: dict[Role, dict[str, str]]
) -> None:
    _token, text = services.tokens.create("soon-revoked", Role.ADMIN, "local:test")
    assert api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {text}"}).status_code == 200
    services.tokens.revoke("soon-revoked")
    other = services.tokens.create("other", Role.ADMIN, "local:test")[1]
    for header in [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer vmv_0123456789abcdef_" + "a" * 43,  # well-formed, unknown
        f"Bearer {text}",  # revoked
        f"Bearer {text[:21]}{other[21:]}",  # a known id with another token's secret
        f"Bearer {text}x",
        "Bearer " + "x" * 500,
    ]:
        headers = {"Authorization": header} if header else None
        for method, path in (("GET", "/api/v1/vms"), ("POST", "/api/v1/gc")):
            _refused(api.request(method, path, headers=headers), 401, "AUTH_REQUIRED")
    assert api.get("/api/v1/health").status_code == 200  # health needs no token
    assert api.get("/api/v1/whoami", headers=keys[Role.OPERATOR]).json() == {
        "name": "t-operator", "role": "operator"
    }  # fmt: skip


def test_tokens_through_the_api(api: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    admin = keys[Role.ADMIN]
    r = api.post("/api/v1/tokens", json={"name": "ci", "role": "operator"}, headers=admin)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    made = r.json()
    assert made["name"] == "ci" and made["role"] == "operator" and made["created_by"] == "t-admin"
    ci = {"Authorization": f"Bearer {made['token']}"}
    assert api.get("/api/v1/whoami", headers=ci).json() == {"name": "ci", "role": "operator"}
    assert api.post("/api/v1/gc", json={}, headers=ci).status_code == 202
    _refused(api.get("/api/v1/tokens", headers=ci), 403, "ROLE_REQUIRED")
    r = api.post("/api/v1/tokens", json={"name": "ci", "role": "reader"}, headers=admin)
    _refused(r, 409, "TOKEN_EXISTS")
    r = api.post("/api/v1/tokens", json={"name": "a b", "role": "reader"}, headers=admin)
    _refused(r, 400, "INVALID_INPUT")
    r = api.post("/api/v1/tokens", json={"name": "x", "role": "root"}, headers=admin)
    _refused(r, 400, "INVALID_INPUT")
    listed = api.get("/api/v1/tokens", headers=admin)
    assert made["token"] not in listed.text and made["token"][21:] not in listed.text
    assert {t["name"] for t in listed.json()} == {"ci"} | {f"t-{r.value}" for r in Role}
    assert all("token" not in t for t in listed.json())
    r = api.delete("/api/v1/tokens/ci", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    _refused(api.get("/api/v1/whoami", headers=ci), 401, "AUTH_REQUIRED")
    _refused(api.delete("/api/v1/tokens/nope", headers=admin), 404, "TOKEN_NOT_FOUND")


def test_changes_are_audited_with_actor_role_remote_and_status(
    api: TestClient, keys: dict[Role, dict[str, str]]
) -> None:
    admin = keys[Role.ADMIN]
    assert (
        api.post("/api/v1/backups", json={"vms": ["web"]}, headers=keys[Role.OPERATOR]).status_code
        == 202
    )
    assert api.post("/api/v1/gc", json={}, headers=keys[Role.READER]).status_code == 403
    assert api.post("/api/v1/gc", json={}).status_code == 401
    assert (
        api.post("/api/v1/tokens", json={"name": "n1", "role": "reader"}, headers=admin).status_code
        == 201
    )
    assert api.delete("/api/v1/tokens/n1", headers=admin).status_code == 200
    assert (
        api.post("/api/v1/backups", json={"vms": []}, headers=keys[Role.OPERATOR]).status_code
        == 400
    )
    api.get("/api/v1/vms", headers=admin)  # reads are not recorded
    r = api.get("/api/v1/audit", headers=admin)
    assert r.status_code == 200 and r.headers["x-total-count"] == "6"
    got = [
        {k: e[k] for k in ("actor", "role", "action", "target", "status", "remote")}
        for e in r.json()
    ]
    assert got == [
        {"actor": "t-operator", "role": "operator", "action": "POST /api/v1/backups", "target": None, "status": 400, "remote": "testclient"},
        {"actor": "t-admin", "role": "admin", "action": "DELETE /api/v1/tokens/n1", "target": "n1", "status": 200, "remote": "testclient"},
        {"actor": "t-admin", "role": "admin", "action": "POST /api/v1/tokens", "target": "n1", "status": 201, "remote": "testclient"},
        {"actor": "anonymous", "role": None, "action": "POST /api/v1/gc", "target": None, "status": 401, "remote": "testclient"},
        {"actor": "t-reader", "role": "reader", "action": "POST /api/v1/gc", "target": None, "status": 403, "remote": "testclient"},
        {"actor": "t-operator", "role": "operator", "action": "POST /api/v1/backups", "target": None, "status": 202, "remote": "testclient"},
    ]  # fmt: skip
    assert all(e["at"] for e in r.json())
    r = api.get("/api/v1/audit?actor=t-admin&limit=1&offset=1&since=1h", headers=admin)
    assert r.headers["x-total-count"] == "2" and [e["action"] for e in r.json()] == [
        "POST /api/v1/tokens"
    ]
    _refused(api.get("/api/v1/audit?limit=0", headers=admin), 400, "INVALID_INPUT")
    _refused(api.get("/api/v1/audit?since=soon", headers=admin), 400, "INVALID_INPUT")


def test_the_cli_makes_tokens_the_api_takes_and_records_its_changes(
    cli: CliRunner, home: Path
) -> None:
    r = cli("token", "create", "ops", "--role", "admin")
    assert r.code == 0, r.stderr
    text = r.stdout.splitlines()[-1]
    assert text.startswith("vmv_") and text.strip() == text
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    api = TestClient(create_app(svc, authenticate=svc.tokens.authenticate))
    assert api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {text}"}).json() == {
        "name": "ops", "role": "admin"
    }  # fmt: skip
    assert cli("token", "create", "ops", "--role", "reader").code == 2
    listed = cli("token", "list", "--json")
    assert text not in listed.stdout and text[21:] not in listed.stdout
    [doc] = listed.json()
    assert doc["name"] == "ops" and doc["role"] == "admin" and doc["last_used_at"]
    assert doc["created_by"].startswith("local:")
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("token", "revoke", "ops").code == 0
    assert api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {text}"}).status_code == 401
    assert cli("vault", "list").code == 0  # reads are not recorded
    entries = cli("audit", "list", "--json").json()
    assert [(e["action"], e["target"], e["status"], e["remote"]) for e in entries] == [
        ("vmvault token revoke", "ops", 0, "cli"),
        ("vmvault vault create", "main", 0, "cli"),
        ("vmvault token create", "ops", 2, "cli"),
        ("vmvault token create", "ops", 0, "cli"),
    ]
    assert len({e["actor"] for e in entries}) == 1 and entries[0]["actor"].startswith("local:")
    assert "local" not in str([e["target"] for e in entries])  # no option value recorded
    assert cli("audit", "list", "--actor", "someone-else", "--json").json() == []
    svc.close()


def test_a_body_over_the_limit_and_an_unknown_route_are_audited_too(
    api: TestClient, keys: dict[Role, dict[str, str]]
) -> None:
    big = b'{"vms": ["' + b"x" * 70_000 + b'"]}'
    headers = {**keys[Role.OPERATOR], "content-type": "application/json"}
    assert api.post("/api/v1/backups", content=big, headers=headers).status_code == 413
    assert api.delete("/api/v1/nowhere", headers=keys[Role.ADMIN]).status_code == 404
    r = api.get("/api/v1/audit", headers=keys[Role.ADMIN])
    got = [(e["actor"], e["action"], e["status"]) for e in r.json()]
    # refused before any route ran: the audit trail checks the token itself
    assert got == [
        ("t-admin", "DELETE /api/v1/nowhere", 404),
        ("t-operator", "POST /api/v1/backups", 413),
    ]
    assert (
        api.post(
            "/api/v1/backups", content=big, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )
    assert (
        api.get("/api/v1/audit?limit=1", headers=keys[Role.ADMIN]).json()[0]["actor"] == "anonymous"
    )


def test_a_request_refused_before_its_role_check_is_audited_by_its_token(
    api: TestClient, keys: dict[Role, dict[str, str]]
) -> None:
    """Malformed JSON (400: the body is parsed before the route's dependencies) and a method
    the route does not take (405) carry a valid token: the entry names it, not anonymous."""
    headers = {**keys[Role.OPERATOR], "content-type": "application/json"}
    assert api.post("/api/v1/backups", content=b"{nope", headers=headers).status_code == 400
    assert api.put("/api/v1/backups", json={}, headers=keys[Role.ADMIN]).status_code == 405
    r = api.get("/api/v1/audit", headers=keys[Role.ADMIN])
    got = [(e["actor"], e["role"], e["action"], e["status"]) for e in r.json()]
    assert got == [
        ("t-admin", "admin", "PUT /api/v1/backups", 405),
        ("t-operator", "operator", "POST /api/v1/backups", 400),
    ]


def test_an_audit_write_that_fails_is_logged_and_the_answer_stands(
    services: Services, keys: dict[Role, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any) -> None:
        raise OSError("disk full")

    services.audit.record = broken  # type: ignore[method-assign]
    api = TestClient(create_app(services, authenticate=services.tokens.authenticate))
    r = api.post("/api/v1/gc", json={}, headers=keys[Role.OPERATOR])
    assert r.status_code == 202 and r.json()["type"] == "gc"
    assert "audit entry not written: POST /api/v1/gc 202 by t-operator" in caplog.text


def test_anonymous_refusals_are_one_entry_per_address_and_status_a_minute(
    home: Path, keys: dict[Role, dict[str, str]]
) -> None:
    """Anyone who reaches the port cannot grow the audit log without bound: 50 refused POSTs
    from one address in a minute are two entries (the first, then the count); a token holder's
    requests are each recorded."""
    now = [datetime(2026, 12, 2, 9, 0, tzinfo=UTC)]
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}), lambda: now[0])
    api = TestClient(create_app(svc, authenticate=svc.tokens.authenticate))
    for _ in range(50):
        assert api.post("/api/v1/gc").status_code == 401
    for _ in range(3):
        assert api.delete("/api/v1/nowhere").status_code == 404
    assert api.post("/api/v1/gc", headers=keys[Role.READER]).status_code == 403
    assert api.post("/api/v1/gc", headers=keys[Role.READER]).status_code == 403
    entries, total = svc.audit.list_entries(limit=100)
    assert total == 4
    now[0] += timedelta(seconds=61)
    assert api.post("/api/v1/gc").status_code == 401  # a new minute: a new entry
    entries, total = svc.audit.list_entries(limit=100)
    got = [(e.actor, e.action, e.target, e.status) for e in reversed(entries)]
    assert got == [
        ("anonymous", "POST /api/v1/gc", None, 401),
        ("anonymous", "DELETE /api/v1/nowhere", None, 404),
        ("t-reader", "POST /api/v1/gc", None, 403),
        ("t-reader", "POST /api/v1/gc", None, 403),
        ("anonymous", "POST /api/v1/gc", "49 more anonymous refusals like this since 09:00:00", 401),
        ("anonymous", "DELETE /api/v1/nowhere", "2 more anonymous refusals like this since 09:00:00", 404),
        ("anonymous", "POST /api/v1/gc", None, 401),
    ]  # fmt: skip
    svc.close()
