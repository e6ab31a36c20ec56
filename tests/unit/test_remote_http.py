"""The remote CLI's HTTP request (vmvault.cli.remote_http) against a real local HTTP server:
the query as httpx encoded it, the JSON body, an error status and a redirect as answers, a
port with no server as SERVER_UNREACHABLE."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vmvault.cli.remote_http import send
from vmvault.domain.errors import ServerUnreachable


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if self.path.startswith("/moved"):
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/cut"):  # an error body cut short: the connection lost
            self.send_response(500)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"error": ')
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        doc = {
            "method": self.command,
            "path": self.path,
            "auth": self.headers.get("Authorization"),
            "type": self.headers.get("Content-Type"),
            "body": json.loads(self.rfile.read(length)) if length else None,
        }
        data = json.dumps(doc).encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Total-Count", "7")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_query_body_and_headers(server: str) -> None:
    params = {"vault": "a b/c", "flag": True, "off": False, "vm": ["x", "y"], "none": None}
    r = send("GET", server, "/api/v1/vms?path=%2F", "tok", None, params)
    assert r.is_success and r.headers["X-Total-Count"] == "7"
    doc = r.json()
    assert doc["path"] == "/api/v1/vms?path=%2F&vault=a%20b%2Fc&flag=true&off=false&vm=x&vm=y"
    assert doc["auth"] == "Bearer tok" and doc["body"] is None
    r = send("PATCH", server, "/p", None, None, None, {"name": "é", "n": 1})
    assert r.json() | {"path": None} == {
        "method": "PATCH",
        "path": None,
        "auth": None,
        "type": "application/json",
        "body": {"name": "é", "n": 1},
    }
    assert send("POST", server, "/p", None, None).json()["body"] is None


def test_an_error_status_and_a_redirect_are_answers(server: str) -> None:
    missing = send("GET", server, "/missing", None, None)
    assert missing.status_code == 404 and not missing.is_success
    assert missing.json()["path"] == "/missing"
    moved = send("GET", server, "/moved", None, None)
    assert moved.status_code == 307 and moved.headers["Location"] == "/elsewhere"


def test_no_server_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ServerUnreachable) as err:
        send("GET", url, "/api/v1/vms", "secret", None)
    assert url in str(err.value) and "secret" not in str(err.value)


def test_an_error_body_cut_short_is_unreachable_not_a_crash(server: str) -> None:
    with pytest.raises(ServerUnreachable) as err:
        send("GET", server, "/cut", None, None)
    assert server in str(err.value)
