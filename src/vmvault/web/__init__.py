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

#: The console's files (package data).
STATIC = Path(__file__).parent / "static"

#: Where the console is served.
PREFIX = "/console"


def mount(app: FastAPI) -> None:
    """Serve the console at ``/console/`` and redirect ``/`` and ``/console`` there."""

    def to_console() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    app.add_api_route("/", to_console, methods=["GET"], include_in_schema=False)
    app.add_api_route(PREFIX, to_console, methods=["GET"], include_in_schema=False)
    app.mount(PREFIX, StaticFiles(directory=STATIC, html=True), name="console")
