"""The web console's files as ``vmvault serve`` serves them (no browser: the browser tests are
tests/integration/test_console.py): the redirects, every file with a content type a browser
runs as a module or a stylesheet and the security headers, no token needed, and nothing of it in
the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmvault import web
from vmvault.api.app import create_app
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings

TYPES = {".html": "text/html", ".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    services = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}))
    return TestClient(create_app(services, authenticate=lambda _token: None))


def test_root_and_console_redirect_to_the_console(client: TestClient) -> None:
    for path in ("/", "/console"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/console/", path


def test_every_file_is_served_without_a_token_with_its_type(client: TestClient) -> None:
    files = [f for f in web.STATIC.rglob("*") if f.is_file()]
    assert {f.suffix for f in files} == set(TYPES)
    for f in files:
        rel = f.relative_to(web.STATIC).as_posix()
        r = client.get(f"/console/{rel}")
        assert r.status_code == 200, rel
        assert TYPES[f.suffix] in r.headers["content-type"], (rel, r.headers["content-type"])
        assert r.content == f.read_bytes()
        assert {k: r.headers[k] for k in web.HEADERS} == web.HEADERS, rel
    index = client.get("/console/")
    assert index.status_code == 200 and '<script type="module" src="js/app.js">' in index.text


def test_a_missing_file_is_a_404_in_the_api_s_error_language(client: TestClient) -> None:
    r = client.get("/console/js/missing.js")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"code", "message", "remedy"}


def test_the_console_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    # the API and Prometheus' /metrics (a documented route of its own), no /console path
    assert not [p for p in paths if not p.startswith("/api/v1/") and p != "/metrics"]
