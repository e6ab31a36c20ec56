"""Requests the REST API refuses before any route runs: no such route, a method the route
does not take, a body over the size limit (docs/server.md, "REST API")."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class RouteNotFound(VmvaultError):
    code = "ROUTE_NOT_FOUND"
    message = "no API route {path}"
    remedy = "The routes are listed at /docs and in /openapi.json; they start with /api/v1/."
    kind = "usage"


class MethodNotAllowed(VmvaultError):
    code = "METHOD_NOT_ALLOWED"
    message = "{path} does not take {method}"
    remedy = "Use {allowed} (see /docs)."
    kind = "usage"


class RequestTooLarge(VmvaultError):
    code = "REQUEST_TOO_LARGE"
    message = "the request body is larger than {limit} bytes"
    remedy = "API requests are small JSON documents; send at most {limit} bytes."
    kind = "usage"


class AuthRequired(VmvaultError):
    code = "AUTH_REQUIRED"
    message = "this request needs a valid API token: {why}"
    remedy = (
        "Send 'Authorization: Bearer TOKEN' with a token from 'vmvault token create NAME "
        "--role ROLE' (an admin creates it; it is printed once)."
    )
    kind = "usage"


class RoleRequired(VmvaultError):
    code = "ROLE_REQUIRED"
    message = "token {name!r} has role {role}; this needs {needed} or above"
    remedy = (
        "Ask an admin for a token with role {needed} (vmvault token create NAME --role {needed})."
    )
    kind = "usage"
