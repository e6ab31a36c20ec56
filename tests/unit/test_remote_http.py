"""The remote CLI's HTTP request (vmvault.cli.remote_http) against a real local HTTP server:
the query as httpx encoded it, the JSON body, an error status and a redirect as answers, a
port with no server as SERVER_UNREACHABLE; the environment's proxy (``ALL_PROXY`` too, through
a real forwarding proxy), ``NO_PROXY``, a SOCKS proxy refused before any request; over TLS,
one context for every request of the process."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from vmvault.cli import remote_http
from vmvault.cli.remote_http import send
from vmvault.config import parse_listen
from vmvault.domain.errors import ProxyUnsupported, ServerUnreachable
from vmvault.jobs import tls

PROXY_VARIABLES = (
    *("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
    *("no_proxy", "NO_PROXY", "REQUEST_METHOD"),
)
#: The paths the echo server answered, in order.
ECHOED: list[str] = []


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        ECHOED.append(self.path)
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


class _Forward(BaseHTTPRequestHandler):
    """A forwarding HTTP proxy: the request's absolute URL asked of its server, the answer
    relayed; the URLs it forwarded in ``server.forwarded``."""

    def _forward(self) -> None:
        self.server.forwarded.append(self.path)  # type: ignore[attr-defined]
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = http.client.HTTPConnection(target.netloc, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            conn.request(self.command, path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        self.send_response(answer.status)
        for key in ("Content-Type", "X-Total-Count"):
            if answer.headers.get(key):
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, *args: Any) -> None:
        pass


def _serving(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the machine's environment; the process's handlers made afresh."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    remote_http._opener.cache_clear()
    remote_http._context.cache_clear()


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = _serving(_Echo)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def proxy() -> Iterator[ThreadingHTTPServer]:
    httpd = _serving(_Forward)
    httpd.forwarded = []  # type: ignore[attr-defined]
    try:
        yield httpd
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


def test_all_proxy_is_used_when_the_scheme_has_none_and_no_proxy_bypasses_it(
    server: str, proxy: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarded: list[str] = proxy.forwarded  # type: ignore[attr-defined]
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    for name in ("ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, address)
        r = send("GET", server, "/api/v1/vms", "tok", None, {"limit": 5})
        assert r.is_success and r.headers["X-Total-Count"] == "7"
        assert r.json()["path"] == "/api/v1/vms?limit=5" and r.json()["auth"] == "Bearer tok"
        assert forwarded[-1] == f"{server}/api/v1/vms?limit=5"
        monkeypatch.delenv(name)
    assert len(forwarded) == 2
    monkeypatch.setenv("ALL_PROXY", address)
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
    assert send("POST", server, "/direct", None, None, None, {"a": 1}).json()["body"] == {"a": 1}
    assert len(forwarded) == 2  # reached directly
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:1")  # the scheme's own comes first
    monkeypatch.setenv("HTTP_PROXY", address)
    assert send("GET", server, "/own", None, None).is_success
    assert forwarded[-1] == f"{server}/own"


def test_a_socks_proxy_is_refused_before_any_request(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ECHOED.clear()
    monkeypatch.setenv("ALL_PROXY", "socks5://user:secret@127.0.0.1:1080")
    with pytest.raises(ProxyUnsupported) as err:
        send("GET", server, "/api/v1/vms", None, None)
    assert err.value.kind == "usage" and ECHOED == []
    message = str(err.value)
    assert "socks5://127.0.0.1" in message and "ALL_PROXY" in message
    assert "secret" not in message and "user" not in message
    assert "NO_PROXY" in err.value.as_dict()["remedy"]
    monkeypatch.setenv("HTTPS_PROXY", "socks4://127.0.0.1:1080")  # the scheme's own as well
    with pytest.raises(ProxyUnsupported, match="HTTPS_PROXY"):
        send("GET", server.replace("http://", "https://"), "/x", None, None)
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # not used for this host: not refused
    assert send("GET", server, "/direct", None, None).is_success
    assert ECHOED == ["/direct"]


def test_a_tls_proxy_is_refused_and_a_cgi_environment_is_no_crash(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib speaks plain HTTP to its proxy: an https:// proxy would get the CONNECT and its
    credentials in clear; and in a CGI environment (REQUEST_METHOD) an https:// server's
    proxy is looked up without HTTP_PROXY, which is a request header there (httpoxy)."""
    ECHOED.clear()
    monkeypatch.setenv("HTTPS_PROXY", "https://alice:s3cret@127.0.0.1:3128")
    with pytest.raises(ProxyUnsupported) as err:
        send("GET", server.replace("http://", "https://"), "/x", None, None)
    assert "https://127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1")  # ignored: a request header
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert send("GET", server, "/cgi", None, None).is_success
    with pytest.raises(ServerUnreachable):  # no TLS server there: reached, not a crash
        send("GET", server.replace("http://", "https://"), "/tls", None, None)
    assert ECHOED == ["/cgi"]


def test_one_tls_context_serves_every_request_of_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.generate(cert, key, parse_listen("127.0.0.1:8470"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    httpd.socket = served.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        for i in range(3):  # pages of a listing
            r = send("GET", url, "/api/v1/vms", "tok", cert, {"offset": i * 100})
            assert r.is_success and r.json()["path"] == f"/api/v1/vms?offset={i * 100}"
        assert send("POST", url, "/p", "tok", cert, None, {"n": 1}).json()["body"] == {"n": 1}
        assert len(made) == 1
        with pytest.raises(remote_http.ServerUntrusted):  # another CA file: its own context
            send("GET", url, "/x", None, None)
        assert len(made) == 2
    finally:
        httpd.shutdown()
        httpd.server_close()
