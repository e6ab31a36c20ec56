"""The web console: a single-page app of static files (HTML, CSS, ES modules; no build step,
nothing fetched from elsewhere at run time) served by ``vmvault serve`` at ``/console/``.

It talks only to the REST API (``/api/v1``) with the bearer token its user signed in with, so
it can do exactly what that token's role allows: the server checks every call, the console
only hides the buttons a role may not use.  See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

#: The console's files (package data).
STATIC = Path(__file__).parent / "static"

#: Where the console is served.
PREFIX = "/console"

#: Sent with every file: the page may load its own files and call its own server, nothing
#: else (no inline script or style, no other origin, not framed); the token it holds cannot
#: leave through a referrer.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ConsoleFiles(StaticFiles):
    """The static files, each with :data:`HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console at ``/console/`` and redirect ``/`` and ``/console`` there."""

    def to_console() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    app.add_api_route("/", to_console, methods=["GET"], include_in_schema=False)
    app.add_api_route(PREFIX, to_console, methods=["GET"], include_in_schema=False)
    app.mount(PREFIX, ConsoleFiles(directory=STATIC, html=True), name="console")
