"""The CLI's remote mode: ``vmvault --server URL --token T CMD`` calls the REST API of a
running ``vmvault serve`` instead of the local services (docs/server.md, "Remote CLI").

The root command calls :func:`configure` with its global options (or VMVAULT_SERVER,
VMVAULT_TOKEN / VMVAULT_TOKEN_FILE, VMVAULT_SERVER_CA). A command that runs remotely asks
:func:`active` and then :func:`get` / :func:`get_all` / :func:`post` for the same JSON
documents it builds locally (:mod:`vmvault.documents`); every other command reaches
:func:`vmvault.cli.context.services`, which refuses it with ``REMOTE_UNSUPPORTED``
(:func:`refuse`) before anything runs.

A call the server may hold for approval goes through :func:`holdable`: when the server
answers 202 with the pending request (docs/approvals.md), it prints what the local command
prints when held (:func:`vmvault.cli.render.held`) and exits 4.

On the server's own host, a command that only reads and grows with the fleet (the listings
of VMs, protection, points, jobs and hosts, and the dashboard) asks :func:`reads` instead: it
is answered by the running ``vmvault serve`` of this ``VMVAULT_HOME`` on its local socket
(docs/server.md, "The local socket"; api/local_socket.py) when one answers there for the same
catalog, version and default vault, and the command then runs as in remote mode without
importing SQLAlchemy or the composition root; otherwise it reads the catalog itself. Its
settings are read and checked as a local command's are. Such a command makes its requests
before it prints anything: when the server stops answering during one (:class:`LocalGone`),
``cli/main.py`` runs it again reading the catalog itself.

The API's error body is raised again as the same error class (so it is printed and exits as
it would locally); a server that cannot be reached or whose certificate is not trusted is
``SERVER_UNREACHABLE`` / ``SERVER_UNTRUSTED``. The token is sent only in the Authorization
header: never printed, logged or put in an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from vmvault.domain.errors import (
    InternalError,
    InvalidInput,
    RemoteUnsupported,
    ServerUnreachable,
    VmvaultError,
)

if TYPE_CHECKING:  # the HTTP client is imported in remote mode only
    from vmvault.cli.local_http import Response

PREFIX = "/api/v1"
#: Seconds a request may take (a job is polled, never waited for in one request).
TIMEOUT = 60.0
#: The largest page GET /jobs gives.
PAGE = 1000
#: Seconds the local socket's server has to answer the first request (else: read the catalog).
PROBE_TIMEOUT = 2.0


class LocalGone(Exception):
    """The local socket's server stopped answering during a read (:func:`reads`)."""


@dataclass(frozen=True)
class Server:
    url: str
    token: str | None
    ca: Path | None
    #: The local socket's (:func:`reads`): its path and the settings' identity it sends.
    socket: Path | None = None
    identity: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"Server(url={self.url!r}, ca={self.ca!r})"


_server: Server | None = None
#: The local socket's server once :func:`reads` looked for it (None inside: none answers).
_local: list[Server | None] = []
_describe: Callable[[], tuple[str, list[str]] | None] | None = None


def configure(url: str | None, token: str | None, token_file: Path | None, ca: Path | None) -> None:
    """Set remote mode from the root command's options (``url`` None: local mode)."""
    global _server
    if not url:
        _server = None
        return
    if not url.startswith(("http://", "https://")):
        raise InvalidInput("give http://HOST:PORT or https://HOST:PORT", what="--server")
    if url.startswith("http://") and not _loopback(urlsplit(url).hostname or ""):
        # as 'vmvault serve' speaks HTTPS only beyond loopback: the token never goes in clear
        raise InvalidInput("beyond loopback the server speaks https:// only", what="--server")
    if token is None and token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise InvalidInput(exc.strerror or str(exc), what="VMVAULT_TOKEN_FILE") from None
    _server = Server(url.rstrip("/"), token or None, ca)


#: The root command's options that take a value (left out when a command is named).
GLOBAL_OPTIONS = ("--server", "--token")


def command_args(args: list[str]) -> list[str]:
    """``args`` without the root command's options (before the command's first word)."""
    rest = list(args)
    while rest and rest[0].split("=", 1)[0] in GLOBAL_OPTIONS:
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    return rest


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def active() -> bool:
    return _server is not None


def reads() -> bool:
    """Whether a command that only reads asks a server: in remote mode, or on this host when
    its ``vmvault serve`` answers on the local socket for the same settings (module doc)."""
    if _server is not None:
        return True
    if not _local:
        _local.append(_local_server())
    return _local[0] is not None


def read_locally() -> None:
    """Read the catalog itself from now on (the local socket's server stopped answering)."""
    _local[:] = [None]


def _local_server() -> Server | None:
    """The local socket's server, when one answers for this CLI's settings; else None."""
    import os
    import stat

    from vmvault.config import Settings

    settings = Settings.from_env()  # a bad setting is refused as by any local command
    path = settings.api_socket
    try:
        found = path.lstat()
    except OSError:
        return None
    mine = found.st_uid in (os.geteuid(), 0)  # the socket of this user's server, or root's
    if not settings.local_socket or not stat.S_ISSOCK(found.st_mode) or not mine:
        return None
    server = Server(f"unix:{path}", None, None, path, settings.local_identity)
    try:
        answer = _send(server, "GET", "/whoami", timeout=PROBE_TIMEOUT)
    except VmvaultError:  # nobody answers (a server killed, or starting), or not in time
        return None
    return server if answer.is_success else None  # 421: another catalog, version or vault


def name_commands(describe: Callable[[], tuple[str, list[str]] | None]) -> None:
    """How to name the command being run in a refusal (its words, from the command line)."""
    global _describe
    _describe = describe


def refuse(why: str | None = None) -> None:
    """Refuse a command that has no remote mode, when remote mode is on (``why``: the reason,
    added to the message)."""
    if _server is not None:
        raise RemoteUnsupported(why, command=_command())


def refuse_option(option: str, why: str | None = None) -> None:
    """Refuse an option of a remote command that the API does not take."""
    if _server is not None:
        raise RemoteUnsupported(why, command=f"{_command()} {option}")


def get(path: str, **params: Any) -> Any:
    return _request("GET", path, params=params).json()


def page(path: str, **params: Any) -> tuple[list[Any], int]:
    """One page of a paginated list and how many items match in all (``X-Total-Count``)."""
    r = _request("GET", path, params=params)
    items = r.json()
    return items, int(r.headers.get("X-Total-Count", len(items)))


def get_all(path: str, **params: Any) -> list[Any]:
    """Every item of a paginated list (``X-Total-Count``)."""
    items: list[Any] = []
    while True:
        r = _request("GET", path, params=params | {"limit": PAGE, "offset": len(items)})
        page = r.json()
        items += page
        if not page or len(items) >= int(r.headers.get("X-Total-Count", len(items))):
            return items


def post(path: str, body: dict[str, Any] | None = None) -> Any:
    return _request("POST", path, json=body).json()


def patch(path: str, body: dict[str, Any]) -> Any:
    return _request("PATCH", path, json=body).json()


def delete(path: str, **params: Any) -> Any:
    return _request("DELETE", path, params=params).json()


def holdable(method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
    """A call the server may hold for approval (its route answers 202 with the request:
    ``PATCH /vaults/{name}``, ``PATCH /policies/{name}``, ``POST /protection/stop``,
    ``DELETE /vaults/{name}``, ``POST /points/{id}/purge``): its answer, or, held, the request
    printed as a local held command prints it and exit 4 — nothing after the call runs."""
    r = _request(method, path, json=body, params=params)
    if r.status_code == 202:
        import typer

        from vmvault.cli.render import held

        raise typer.Exit(held(r.json()))
    return r.json()


def part(value: str | int) -> str:
    """``value`` as one segment of a path (a name with ``/`` or ``?`` stays one segment)."""
    return quote(str(value), safe="")


def _command() -> str:
    described = _describe() if _describe is not None else None
    return f"vmvault {described[0]}" if described else "vmvault"


def _request(
    method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
) -> Response:
    server = _server or (_local[0] if _local else None)
    assert server is not None, "remote mode is off"
    try:
        r = _send(server, method, path, params, json)
    except ServerUnreachable:
        if server.socket is None:
            raise
        raise LocalGone from None
    if r.is_success:
        return r
    raise _answered(r)


def _send(
    server: Server,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float = TIMEOUT,
) -> Response:
    if server.socket is not None:  # without http.client, urllib or ssl (cli/local_http.py)
        from vmvault.cli.local_http import request_parts, send_unix
        from vmvault.config import LOCAL_IDENTITY_HEADER

        extra = {LOCAL_IDENTITY_HEADER: server.identity or ""}
        target, headers, data = request_parts(PREFIX + path, server.token, params, json, extra)
        return send_unix(server.socket, server.url, method, target, headers, data, timeout)
    from vmvault.cli.remote_http import send

    return send(
        method,
        server.url,
        PREFIX + path,
        server.token,
        server.ca,
        params,
        json,
        timeout,
    )


def _answered(r: Response) -> VmvaultError:
    """The API's ``{"error": {code, message, remedy}}`` as the error class of that code, so
    it prints and exits as locally; a code this CLI does not know exits by the status."""
    try:
        body = r.json()["error"]
        code, message, remedy = str(body["code"]), str(body["message"]), str(body["remedy"])
    except (ValueError, KeyError, TypeError):
        return InternalError(f"the server answered HTTP {r.status_code} without an error body")
    cls = VmvaultError.registry.get(code)
    exc: VmvaultError
    if cls is None:
        exc = (InvalidInput if r.status_code < 500 else InternalError)(message)
        exc.code = code  # type: ignore[misc]
    else:
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        exc.fields, exc.detail = {}, None
    exc.text, exc.remedy_text = message, remedy
    return exc
