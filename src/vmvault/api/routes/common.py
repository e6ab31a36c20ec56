"""What several route groups share: the job id parameter, a page of a listing, the responses
of a route that queues a job, the role dependencies and server-side paths."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Path, Query, Response

from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import DEFAULT_PAGE, MAX_INT64, MAX_PAGE

PREFIX = "/api/v1"
#: A page's size unless the request says.
PAGE = DEFAULT_PAGE

#: Job ids are SQLite integers: anything outside is refused as bad input, not looked up.
JobId = Annotated[int, Path(ge=1, le=MAX_INT64, description="a job id")]

#: A page of a listing (domain.inputs.check_page is the rule): ``limit`` items after ``offset``.
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items in the page")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64, description="items skipped before the page")]


def paged(what: str) -> dict[int | str, dict[str, Any]]:
    """The 200 response of a paged listing: its ``X-Total-Count`` header, documented."""
    total = {"description": f"how many {what} match the filters (every page)"}
    headers = {"X-Total-Count": total | {"schema": {"type": "integer"}}}
    return {200: {"description": f"A page of {what}", "headers": headers}}


def set_total(response: Response, total: int) -> None:
    response.headers["X-Total-Count"] = str(total)


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
