"""One HTTP request of the remote CLI to a ``vmvault serve`` (:mod:`vmvault.cli.remote`), with
the standard library alone.

The remote CLI makes one request at a time and waits for its whole answer, so a client
library brings nothing but its import: ``urllib.request`` with ``ssl`` and ``json`` costs
~0.03–0.05 CPU-s where httpx cost ~0.15–0.2 (with httpcore, anyio and, where it is installed,
trio) — most of a remote ``vm list`` (docs/deployment.md, "The CLI's start").  What httpx
did is kept: the proxy of the environment (``HTTPS_PROXY``, ``NO_PROXY`` …), no redirect
followed (an answer 3xx is an answer), the query's ``True``/``False`` as ``true``/``false``
and a list as the key repeated, a JSON body in UTF-8.

A transport failure is ``SERVER_UNREACHABLE``, a certificate that does not verify
``SERVER_UNTRUSTED``; an HTTP error status is an answer (:class:`Response`), for the caller to
read the API's error body from.  The token goes in the ``Authorization`` header only.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from vmvault.domain.errors import InvalidInput, ServerUnreachable, ServerUntrusted, VmvaultError


@dataclass(frozen=True)
class Response:
    """An answer of the server: its status, headers and body."""

    status_code: int
    headers: Message
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.content)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as an HTTPError: an answer


def send(
    method: str,
    server: str,
    path: str,
    token: str | None,
    ca: Path | None,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    timeout: float = 60.0,
) -> Response:
    """``method`` of ``path`` on the ``server`` (its URL) with the query ``params`` (None values
    left out) and the JSON ``body`` (None: no body); its answer, whatever its status."""
    url = server + path
    query = _query(params or {})
    if query:
        url += ("&" if "?" in url else "?") + query
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if url.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(context=_context(ca)))
    opener = urllib.request.build_opener(*handlers)
    try:
        try:
            with opener.open(request, timeout=timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as exc:  # an error status is an answer: its body too
            with exc:  # a connection lost while reading it is handled below, as any other
                return Response(exc.code, exc.headers, exc.read())
    except urllib.error.URLError as exc:
        why = exc.reason if isinstance(exc.reason, BaseException) else exc
        raise _unreachable(server, why) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(server, exc) from None


def _query(params: Mapping[str, Any]) -> str:
    pairs = [
        (key, _text(item))
        for key, value in params.items()
        if value is not None
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return urlencode(pairs, quote_via=quote)


def _text(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _context(ca: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"not a readable PEM file: {exc}", what="VMVAULT_SERVER_CA") from None


def _unreachable(server: str, exc: BaseException) -> VmvaultError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ServerUntrusted(url=server, why=cause.verify_message or str(cause))
        cause = cause.__cause__ or cause.__context__
    return ServerUnreachable(url=server, why=str(exc) or type(exc).__name__)
