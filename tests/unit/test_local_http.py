"""The local socket's HTTP client (vmvault.cli.local_http) on a real unix socket: what it
sends, the answers a server gives (a length, chunks, to the end of the connection, an error
status) read as they are, and every answer that is not HTTP/1.1 as it reads it refused as
SERVER_UNREACHABLE (the CLI then reads the catalog itself). Against ``vmvault serve``
itself: tests/e2e/test_cli_local_socket.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmvault.cli.local_http import MAX_HEAD, request_parts, send_unix
from vmvault.domain.errors import ServerUnreachable


class _Canned:
    """A unix socket server that reads one request and answers ``answer`` (in pieces of
    ``piece`` bytes), then closes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen()
        self.requests: list[bytes] = []

    def answer(self, answer: bytes, piece: int = 7) -> None:
        def serve() -> None:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed unasked: the request was never sent
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                self.requests.append(data)
                for i in range(0, len(answer), piece):
                    conn.sendall(answer[i : i + piece])

        threading.Thread(target=serve, daemon=True).start()


@pytest.fixture()
def canned(tmp_path: Path) -> Iterator[_Canned]:
    server = _Canned(tmp_path / "api.sock")
    yield server
    server.listener.close()


def _get(canned: _Canned, answer: bytes, piece: int = 7) -> tuple[int, dict[str, str], bytes]:
    canned.answer(answer, piece)
    target, headers, data = request_parts("/api/v1/vms", None, {"limit": 5, "x": None}, None, {})
    r = send_unix(canned.path, "unix:api.sock", "GET", target, headers, data, 5.0)
    return r.status_code, {"total": r.headers.get("X-Total-Count")}, r.content


def test_the_request_and_the_answers_a_server_gives(canned: _Canned) -> None:
    head = b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\nx-total-count: 2000\r\n"
    body = b'[{"name": "a"}]'
    length = head + b"content-length: %d\r\n\r\n" % len(body) + body
    assert _get(canned, length) == (200, {"total": "2000"}, body)
    assert canned.requests[0] == (
        b"GET /api/v1/vms?limit=5 HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert _get(canned, length, piece=1)[2] == body  # one byte at a time
    chunked = (
        head + b'Transfer-Encoding: chunked\r\n\r\n5;x=1\r\n[{"na\r\na\r\nme": "a"}]\r\n0\r\n\r\n'
    )
    assert _get(canned, chunked) == (200, {"total": "2000"}, body)
    assert _get(canned, b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")[0] == 404
    assert _get(canned, b"HTTP/1.0 200\r\nX-Total-Count: 1\r\n\r\n" + body)[2] == body  # to EOF
    assert _get(canned, b"HTTP/1.1 204 No Content\r\n\r\n")[2] == b""


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # the connection closed at once
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",  # no end of the head
        b"HTTP/2 200\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # shorter than said
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",  # no last chunk
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * MAX_HEAD + b"\r\n\r\n",
    ],
)
def test_what_is_not_http_is_refused_as_unreachable(canned: _Canned, answer: bytes) -> None:
    with pytest.raises(ServerUnreachable):
        _get(canned, answer, piece=4096)


def test_no_server_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(ServerUnreachable) as caught:
        send_unix(tmp_path / "none.sock", "unix:none", "GET", "/", {}, None, 1.0)
    assert "No such file" in caught.value.text


def test_a_peer_answering_a_byte_at_a_time_is_cut_at_the_deadline(tmp_path: Path) -> None:
    """The timeout is the whole answer's, not each read's (a read every 50 ms of 0.5 s)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "slow.sock"))
    listener.listen()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nX: " + b"y" * 200:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ServerUnreachable):
        send_unix(tmp_path / "slow.sock", "unix:slow", "GET", "/", {}, None, 0.5)
    assert time.monotonic() - started < 2.0
    listener.close()


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/vms/a\r\nX-Evil: 1\r\n\r\nGET /b", {}),
        ("/vms/é", {}),
        ("/vms/日", {}),
        ("/", {"X-Vmvault-Local": "id\r\nX-Evil: 1"}),
        ("/", {"Bad Name": "1"}),
    ],
)
def test_a_request_it_does_not_send_is_refused_before_connecting(
    canned: _Canned, target: str, headers: dict[str, str]
) -> None:
    canned.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # were it sent
    with pytest.raises(ServerUnreachable) as caught:
        send_unix(canned.path, "unix:api.sock", "GET", target, headers, None, 1.0)
    assert "does not send" in caught.value.text and canned.requests == []
