"""One HTTP request of the remote CLI to a ``vmvault serve`` (:mod:`vmvault.cli.remote`), with
the standard library alone.

The remote CLI makes one request at a time and waits for its whole answer, so a client
library brings nothing but its import: ``urllib.request`` with ``ssl`` and ``json`` costs
~0.03–0.05 CPU-s where httpx cost ~0.15–0.2 (with httpcore, anyio and, where it is installed,
trio) — most of a remote ``vm list`` (docs/deployment.md, "The CLI's start").  What httpx
did is kept: the proxy of the environment, no redirect followed (an answer 3xx is an answer),
the query's ``True``/``False`` as ``true``/``false`` and a list as the key repeated, a JSON
body in UTF-8.

The proxy is the scheme's own (``https_proxy``/``HTTPS_PROXY``, ``http_proxy``/``HTTP_PROXY``,
lower case first), else ``all_proxy``/``ALL_PROXY``, unless ``no_proxy``/``NO_PROXY`` names
the server's host; an ``http://`` proxy (or one given without a scheme) is used, any other
(``socks5://``, and ``https://``: urllib would send it the ``CONNECT`` and its credentials in
clear) is refused before the request, ``PROXY_UNSUPPORTED``.

The TLS context (the CA file read, the system's trust store loaded) and the handlers are made
once per process, for each CA file and proxy: a command that reads many pages (``discover``,
``get_all``) pays for them once.

A transport failure is ``SERVER_UNREACHABLE``, a certificate that does not verify
``SERVER_UNTRUSTED``; an HTTP error status is an answer (:class:`Response`), for the caller to
read the API's error body from.  The token goes in the ``Authorization`` header only.
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmvault.cli.local_http import Response, request_parts
from vmvault.domain.errors import (
    InvalidInput,
    ProxyUnsupported,
    ServerUnreachable,
    ServerUntrusted,
    VmvaultError,
)


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
    left out) and the JSON ``body`` (None: no body); its answer, whatever its status. (The
    local socket's requests: cli/local_http.py.)"""
    target, headers, data = request_parts(path, token, params, body, None)
    url = server + target
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    https = url.startswith("https://")
    opener = _opener(ca if https else None, https, _proxy(url))
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


def _environment_proxy(url: str) -> tuple[str, str] | None:
    """The proxy of the environment for ``url`` and the variable that names it (the module
    doc: the scheme's own, else ``ALL_PROXY``), whether or not ``NO_PROXY`` bypasses it."""
    scheme = url.split("://", 1)[0]
    names = [f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"]
    if "REQUEST_METHOD" in os.environ and "HTTP_PROXY" in names:
        names.remove("HTTP_PROXY")  # as urllib: in a CGI script it is a request header (httpoxy)
    for name in names:
        value = os.environ.get(name)
        if value:
            return value, name
    return None


def _proxy(url: str) -> str | None:
    """The proxy to reach ``url`` through (None: directly); a proxy that is not HTTP's is
    refused, ``PROXY_UNSUPPORTED``."""
    found = _environment_proxy(url)
    if found is None or urllib.request.proxy_bypass(urlsplit(url).netloc):
        return None
    proxy, name = found
    # urllib speaks plain HTTP to a proxy: an https:// one would get the CONNECT, and the
    # proxy's credentials, in clear on its TLS port
    if "://" in proxy and not proxy.lower().startswith("http://"):
        parts = urlsplit(proxy)  # never its user and password
        raise ProxyUnsupported(proxy=f"{parts.scheme}://{parts.hostname}", variable=name)
    return proxy


@cache
def _opener(ca: Path | None, https: bool, proxy: str | None) -> urllib.request.OpenerDirector:
    """The handlers of the requests to a server over TLS (``https``, trusting ``ca``) or not,
    through ``proxy`` or directly: made once per process for each."""
    scheme = "https" if https else "http"
    handlers: list[urllib.request.BaseHandler] = [
        _NoRedirect(),
        urllib.request.ProxyHandler({scheme: proxy} if proxy else {}),
    ]
    if https:
        handlers.append(urllib.request.HTTPSHandler(context=_context(ca)))
    return urllib.request.build_opener(*handlers)


@cache
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
