"""One request of the CLI to ``vmvault serve``'s local socket (docs/server.md, "The local
socket"), and the answer type of every request of the remote CLI (:class:`Response`).

On the local socket the CLI asks its own host's server, over a unix socket, for the listings
and the dashboard: no proxy, no TLS, one request per connection. ``http.client`` (which
``urllib.request`` is built on) imports ``email.parser``, ``email.message`` and ``ssl`` to do
that: ~0.02 CPU-s, a tenth of such a command's CPU (docs/deployment.md, "The CLI's start").
So the request is written and its answer read here, strictly, as HTTP/1.1 of RFC 9112 says
and as ``vmvault serve`` (uvicorn) answers: a status line ``HTTP/1.x NNN reason``, header
lines ``name: value`` (no line folding), a blank line, then a body of ``Content-Length``
bytes, in chunks (``Transfer-Encoding: chunked``), or up to the end of the connection (the
request says ``Connection: close``). Anything else — a malformed line, a head over 64 KiB, a
body shorter than it said, a transfer coding other than chunked — is a transport failure
(``SERVER_UNREACHABLE``, which the CLI reads as a server gone: it reads the catalog itself).
tests/unit/test_local_http.py tries the answers a server may give (and bad ones) on a real
unix socket; tests/e2e/test_cli_local_socket.py runs the commands against a real server.

The remote CLI over TCP (``--server``) keeps ``urllib.request`` (cli/remote_http.py: proxies,
TLS, redirects).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from vmvault.domain.errors import ServerUnreachable

#: The longest head (status line and headers) an answer may have, and the largest body (a
#: page of 1,000 documents is ~0.3 MiB).
MAX_HEAD, MAX_BODY = 64 * 1024, 64 * 1024 * 1024
#: What a request's target may hold (its parameters are percent-encoded) and a header's name.
_TARGET = re.compile(r"/[!-~]*")
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [\t -~\x80-\xff]*)?")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t -~\x80-\xff]*?)[\t ]*")
#: Methods whose request carries a ``Content-Length`` even without a body (as http.client).
_BODY_METHODS = frozenset({"PATCH", "POST", "PUT"})


class HeaderLookup(Protocol):
    """An answer's headers, looked up by name whatever its case."""

    def get(self, name: str, default: Any = None, /) -> Any: ...


class Headers(dict[str, str]):
    """Header values by their lower-case names."""

    def get(self, name: str, default: Any = None, /) -> Any:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Response:
    """An answer of the server: its status, headers and body."""

    status_code: int
    headers: HeaderLookup
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.content)


def request_parts(
    path: str,
    token: str | None,
    params: Mapping[str, Any] | None,
    body: Any,
    extra: Mapping[str, str] | None,
) -> tuple[str, dict[str, str], bytes | None]:
    """A request's target (``path`` with the query ``params``, None values left out), its
    headers (the token's, the JSON body's type, ``extra``) and its body (``body`` as JSON in
    UTF-8; None: no body): what httpx made of them, for either transport."""
    query = _query(params or {})
    target = path + (("&" if "?" in path else "?") + query if query else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers |= extra or {}
    data = None
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    return target, headers, data


def _query(params: Mapping[str, Any]) -> str:
    """``True``/``False`` as ``true``/``false``, a list as the key repeated (as httpx)."""
    pairs = [
        (key, _text(item))
        for key, value in params.items()
        if value is not None
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return urlencode(pairs, quote_via=quote)


def _text(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


class BadAnswer(Exception):
    """An answer that is not HTTP/1.1 as this reads it (the module doc)."""


def send_unix(
    path: Path,
    server: str,
    method: str,
    target: str,
    headers: Mapping[str, str],
    data: bytes | None,
    timeout: float,
) -> Response:
    """``method`` of ``target`` (path and query) on the unix socket ``path`` with ``headers``
    and the body ``data``; its answer, whatever its status, within ``timeout`` seconds in
    all (however slowly a peer answers). A transport failure, a bad answer or a request this
    does not send (a target or header with a line break, a non-ASCII target: the callers'
    are percent-encoded) is ``SERVER_UNREACHABLE`` (``server`` names it)."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        request = _request(method, target, headers, data)
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(request)
        return read_answer(_Timed(sock, deadline), method == "HEAD")
    except (OSError, BadAnswer, UnicodeError) as exc:
        raise ServerUnreachable(url=server, why=str(exc) or type(exc).__name__) from None
    finally:
        sock.close()


def _request(method: str, target: str, headers: Mapping[str, str], data: bytes | None) -> bytes:
    if not _TARGET.fullmatch(target):
        raise BadAnswer(f"a request target this does not send: {target[:80]!r}")
    for name, value in headers.items():
        if not _NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise BadAnswer(f"a request header this does not send: {name[:40]!r}")
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if data is not None or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(data or b'')}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b"")


class _Timed:
    """A socket whose reads all end by ``deadline`` (``time.monotonic``), not each within a
    timeout: a peer sending a byte at a time cannot hold the CLI longer."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer took longer than allowed")
        self.sock.settimeout(left)
        return self.sock.recv(size)


class _Socket(Protocol):
    def recv(self, size: int, /) -> bytes: ...


def read_answer(sock: _Socket, head_only: bool = False) -> Response:
    """The answer read from ``sock`` (the module doc); :class:`BadAnswer` if it is not one."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise BadAnswer("the answer's head is too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise BadAnswer("the connection ended before the answer's head")
        buffer += chunk
    if end > MAX_HEAD:
        raise BadAnswer("the answer's head is too long")
    status_line, *header_lines = bytes(buffer[:end]).split(b"\r\n")
    status = _STATUS.fullmatch(status_line)
    if status is None:
        raise BadAnswer(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers = Headers()
    for line in header_lines:
        header = _HEADER.fullmatch(line)
        if header is None:
            raise BadAnswer(f"not a header line: {line[:80]!r}")
        name, value = header[1].decode("ascii").lower(), header[2].decode("latin-1")
        if name in headers and name in ("content-length", "transfer-encoding"):
            raise BadAnswer(f"{name} given twice")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    code = int(status[1])
    rest = _Reader(sock, bytes(buffer[end + 4 :]))
    if code < 200:
        raise BadAnswer(f"an interim answer ({code}): none was asked for")
    if head_only or code in (204, 304):
        return Response(code, headers, b"")
    coding, length = headers.get("transfer-encoding"), headers.get("content-length")
    if coding is not None:
        if coding.lower() != "chunked":
            raise BadAnswer(f"transfer coding {coding!r}")
        return Response(code, headers, rest.chunked())
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise BadAnswer(f"content-length {length!r}")
        return Response(code, headers, rest.exactly(int(length)))
    return Response(code, headers, rest.to_end())


class _Reader:
    """The bytes of a socket after what was read of it already."""

    def __init__(self, sock: _Socket, read: bytes) -> None:
        self.sock, self.buffer = sock, bytearray(read)

    def _more(self) -> bool:
        if len(self.buffer) > MAX_BODY:
            raise BadAnswer(f"a body over {MAX_BODY} bytes")
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise BadAnswer(f"the body ended after {len(self.buffer)} of {size} bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD or not self._more():
                raise BadAnswer("a chunk's line is missing")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            if not size_text or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                raise BadAnswer(f"not a chunk size: {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                while self.line():  # the trailer's fields, up to its blank line
                    pass
                return bytes(body)
            body += self.exactly(size)
            if len(body) > MAX_BODY:
                raise BadAnswer(f"a body over {MAX_BODY} bytes")
            if self.exactly(2) != b"\r\n":
                raise BadAnswer("a chunk does not end with CRLF")

    def to_end(self) -> bytes:
        while self._more():
            pass
        return bytes(self.buffer)
