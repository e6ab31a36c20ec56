"""One error language for the REST API: every refusal and failure is an :class:`ErrorDoc`.

``{"error": {"code", "message", "remedy"}}`` with a status derived from the error's code:

======  ==================================================================================
401     ``AUTH_REQUIRED``: no token, or one that is unknown, revoked or malformed
403     ``ROLE_REQUIRED``: the token's role is below the one the route needs;
        ``APPROVAL_SELF``: an admin approving its own request (docs/approvals.md)
404     what does not exist (``*_NOT_FOUND``, also ``ROUTE_NOT_FOUND``)
405     ``METHOD_NOT_ALLOWED``
409     a conflict with an active job or a state (:data:`CONFLICTS`)
413     ``REQUEST_TOO_LARGE``: a body over :data:`MAX_BODY_BYTES`
400     any other bad input: ``INVALID_INPUT`` for malformed JSON, a wrong content type, a
        wrong type, a missing or unknown field, a bad path or query parameter
500     a failure (``INTERNAL_ERROR`` for a bug; never a traceback)
======  ==================================================================================

Validation messages name *where* the input is wrong (``body.vms``, ``query.since``) and
what is wrong, never the value sent: a request body is not echoed back.

The size limit is an ASGI middleware (:class:`BodyLimit`) that reads the body before any
route or parser sees it — by ``Content-Length`` when there is one, by counting the chunks
when there is not — so an oversized body is refused without being parsed or kept.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmvault.api.models import ErrorDoc
from vmvault.domain.errors import (
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    RequestTooLarge,
    RouteNotFound,
    VmvaultError,
)

#: The largest request body the API reads. Its requests are small JSON documents (a list of
#: VM references at most), so 64 KiB is generous.
log = logging.getLogger("vmvault.api")
MAX_BODY_BYTES = 64 * 1024

CONFLICTS = {
    "OPERATION_IN_PROGRESS",
    "HOST_NOT_SERVED",  # the VM's host has no node (docs/deployment.md)
    "HOST_SERVED_ELSEWHERE",  # another node runs it: queue the job (docs/deployment.md)
    "HOST_JOBS_ACTIVE",  # host update: a job of its VMs runs the way the host is now
    "DISCOVERY_IN_PROGRESS",
    "JOB_NOT_ACTIVE",
    "VM_PROTECTED",
    "WRONG_PROTECTION_STATE",
    "ALREADY_REGISTERED",
    "POLICY_IN_USE",
    "NAME_IN_USE",
    "TOKEN_EXISTS",
    # a create that meets an existing one of the same name
    "VAULT_EXISTS",
    "VAULT_ALREADY_ATTACHED",
    "HOST_EXISTS",
    "POLICY_EXISTS",
    "RESTORE_NAME_EXISTS",
    # soft delete (docs/soft-delete.md): the point's state forbids what was asked
    "POINT_SOFT_DELETED",
    "POINT_NOT_SOFT_DELETED",
    "SOFT_DELETE_EXPIRED",
    "SOFT_DELETE_ALWAYS_ON",
    # approvals (docs/approvals.md)
    "APPROVAL_NOT_PENDING",
    "APPROVAL_EXPIRED",
    "VAULT_IN_USE",
    # immutable vaults (docs/immutability.md): a retention or a lock forbids what was asked
    "POINT_RETAINED",
    "RETENTION_SHORTENED",
    "IMMUTABLE_LOCKED",
    "IMMUTABLE_UNSUPPORTED",
}
_BY_CODE = {
    "AUTH_REQUIRED": 401,
    "ROLE_REQUIRED": 403,
    "APPROVAL_SELF": 403,
    "METHOD_NOT_ALLOWED": 405,
    "LOCAL_SOCKET_READ_ONLY": 405,
    "LOCAL_SOCKET_MISMATCH": 421,
    "REQUEST_TOO_LARGE": 413,
}

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
#: How many validation problems one message names, and how long a location may be.
_MAX_PROBLEMS = 5
_MAX_LOC = 60


def status_for(error: VmvaultError) -> int:
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    if error.code.endswith("_NOT_FOUND"):
        return 404
    if error.code in CONFLICTS:
        return 409
    return 400 if error.kind == "usage" else 500


def error_response(error: VmvaultError, headers: dict[str, str] | None = None) -> JSONResponse:
    status = status_for(error)
    if status == 401:  # RFC 9110: a 401 names the scheme it wants
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="vmvault"'}
    return JSONResponse({"error": error.as_dict()}, status_code=status, headers=headers)


def responses(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route: its own error ``statuses`` plus those any
    request can meet (400 for a bad header or parameter, 401/403 when the route needs a
    token (``auth``), 413 for a body over the limit, 500 for a failure); each with the error
    schema."""
    described = {
        400: "Bad input (INVALID_INPUT or another usage error)",
        401: "No valid API token (AUTH_REQUIRED)",
        403: "The token's role is too low (ROLE_REQUIRED)",
        404: "Not found (a *_NOT_FOUND code)",
        409: "Conflict with an active job or a state",
        413: "Request body too large (REQUEST_TOO_LARGE)",
        500: "Failure (INTERNAL_ERROR for a bug)",
    }
    return {
        s: {"model": ErrorDoc, "description": described[s]}
        for s in sorted({400, 413, 500, *statuses, *((401, 403) if auth else ())})
    }


def _problem(err: dict[str, Any]) -> str:
    parts = [_loc_part(part) for part in err.get("loc", ())]
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":  # loc: ("body", character offset)
        msg = f"malformed JSON at character {parts[-1]}" if len(parts) > 1 else "malformed JSON"
        parts = parts[:1]
    loc = ".".join(parts)
    if len(loc) > _MAX_LOC:
        loc = loc[: _MAX_LOC - 1] + "…"
    if err.get("type") == "model_attributes_type":  # a body that is not a JSON object
        msg = "expected a JSON object (Content-Type: application/json)"
    return f"{loc}: {msg}" if loc else msg


def _loc_part(part: object) -> str:
    """A location element; a key the client made up is named only when it looks like a
    field name (so a body's content never comes back as a "key")."""
    text = str(part)
    return text if isinstance(part, int) or _FIELD_NAME.fullmatch(text) else "<field>"


def _validation_error(exc: RequestValidationError) -> InvalidInput:
    errors = list(exc.errors())
    problems = [_problem(e) for e in errors[:_MAX_PROBLEMS]]
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return InvalidInput("; ".join(problems), what="the request")


def internal_error(detail: str, exc: BaseException | None = None) -> InternalError:
    """A bug's answer: a fixed text with an error id; the details (an exception's text may
    hold a path, a URL, a query) go to the server's log under that id, never to the client."""
    ident = secrets.token_hex(6)
    log.error("internal error %s: %s", ident, detail, exc_info=exc)
    return InternalError(f"error id {ident} (the server's log has the details)")


def install(app: FastAPI) -> None:
    """Route every error of ``app`` through :class:`ErrorDoc` and limit request bodies."""

    @app.exception_handler(VmvaultError)
    def _error(_request: Request, exc: VmvaultError) -> JSONResponse:
        if isinstance(exc, InternalError):  # its detail is an exception's text
            return error_response(internal_error(exc.text, exc))
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        path = request.url.path[:200]
        error: VmvaultError
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            error = RouteNotFound(path=path)
        elif exc.status_code == 405:
            allowed = headers.get("Allow", headers.get("allow", "the documented method"))
            error = MethodNotAllowed(path=path, method=request.method[:20], allowed=allowed)
        elif exc.status_code == 413:
            error = RequestTooLarge(limit=MAX_BODY_BYTES)
        elif exc.status_code < 500:
            error = InvalidInput(str(exc.detail)[:200], what="the request")
        else:
            error = internal_error(str(exc.detail)[:200], exc)
        return error_response(error, headers)

    @app.exception_handler(Exception)
    def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(internal_error(f"{type(exc).__name__}: {exc}", exc))

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.openapi = partial(_openapi_without_422, app, app.openapi)  # type: ignore[method-assign]


def _openapi_without_422(app: FastAPI, generate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI documents its own validation error (422, ``detail`` list) on every route with
    parameters; the API answers 400 with :class:`ErrorDoc` instead (declared by
    :func:`responses`), so that entry and its schemas go."""
    if app.openapi_schema is None:
        spec = generate()
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                op.get("responses", {}).pop("422", None)
        schemas = spec.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema


class BodyLimit:
    """Read an HTTP request's whole body, up to ``limit`` bytes, before the app sees it; a
    larger one (declared or counted) is answered 413 in the error body and never parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            bad = InvalidInput("it is not a byte count", what="the Content-Length header")
            await _send_error(send, bad)
            return
        if declared is not None and declared > self.limit:
            await _send_error(send, RequestTooLarge(limit=self.limit))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_error(send, RequestTooLarge(limit=self.limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None when there is none, -1 when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not (text.isascii() and text.isdigit()):
                return -1
            return int(text) if len(text) < 19 else 10**18  # int() of 5,000 digits raises
    return None


async def _send_error(send: Send, error: VmvaultError) -> None:
    response = error_response(error, {"Connection": "close"})
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})
