"""What several route groups share: the job id parameter, the responses of a route that
queues a job, the role dependencies and server-side paths."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Path

from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import MAX_INT64

PREFIX = "/api/v1"

#: Job ids are SQLite integers: anything outside is refused as bad input, not looked up.
JobId = Annotated[int, Path(ge=1, le=MAX_INT64, description="a job id")]

READER = [needs(Role.READER)]
OPERATOR = [needs(Role.OPERATOR)]
CONTRIBUTOR = [needs(Role.CONTRIBUTOR)]


def queued(pointer: str) -> dict[int | str, dict[str, Any]]:
    """The responses of a route that queues a job: its errors, and OpenAPI links from the
    job's id (at JSON ``pointer`` in the 202 body) to showing and cancelling it."""
    link = {"parameters": {"job_id": f"$response.body#{pointer}"}}
    links = {
        "ShowJob": {"operationId": "show_job", **link},
        "CancelJob": {"operationId": "cancel_job", **link},
    }
    return {202: {"description": "Queued", "links": links}, **responses(404, 409)}


def server_path(value: str | None, what: str) -> str | None:
    """A path on the server given in a request: absolute only (a relative one would be taken
    from the server's working directory, which the client does not know)."""
    if value is not None and not os.path.isabs(value):
        raise InvalidInput("give an absolute path on the server", what=what)
    return value
