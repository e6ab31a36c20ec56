"""Notification targets: ``/api/v1/notifications`` (contributor; docs/notifications.md).

The same operations as ``vmvault notify add | list | remove | test | outbox``, through
``services.notifications``.  A target's address is shown without a URL's user and password.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from vmvault import documents
from vmvault.api.auth import needs
from vmvault.api.errors import responses
from vmvault.api.requests import NotifyTestRequest, TargetCreate
from vmvault.bootstrap import Services
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import MAX_INT64
from vmvault.domain.notification import Channel, Event
from vmvault.services.notifications import MAX_OUTBOX_PAGE

TargetId = Annotated[int, Path(ge=1, le=MAX_INT64, description="a notification target's id")]


class TargetDoc(BaseModel):
    id: int
    vault: str
    channel: Literal["webhook", "email"]
    address: str
    events: list[str]
    created_at: str | None


class OutboxDoc(BaseModel):
    id: int
    target: TargetDoc
    vault: str
    event: str
    subject: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: str | None = Field(description="pending: when it is tried next")
    last_error: str | None
    created_at: str | None
    sent_at: str | None


class NotifyTestResultDoc(BaseModel):
    target: TargetDoc
    ok: bool
    error: dict[str, str] | None


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
    contributor = [needs(Role.CONTRIBUTOR)]

    @router.get(
        "", response_model=list[TargetDoc], responses=responses(404), dependencies=contributor
    )
    def list_targets(vault: str | None = None) -> list[dict[str, Any]]:
        return [documents.notify_target_doc(t) for t in services.notifications.list_targets(vault)]

    @router.get(
        "/outbox",
        response_model=list[OutboxDoc],
        responses=responses(404),
        dependencies=contributor,
    )
    def outbox(
        target: Annotated[
            int | None, Query(ge=1, le=MAX_INT64, description="only this target's messages")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_OUTBOX_PAGE)] = 100,
    ) -> list[dict[str, Any]]:
        """The newest messages of the outbox, newest first: state (pending, sent, failed),
        attempts, the next attempt and the last error (``notify outbox``)."""
        return [documents.outbox_doc(o) for o in services.notifications.outbox(limit, target)]

    @router.post(
        "",
        status_code=201,
        response_model=TargetDoc,
        responses=responses(404),
        dependencies=contributor,
    )
    def add_target(body: TargetCreate) -> dict[str, Any]:
        if (body.webhook is None) == (body.email is None):
            raise InvalidInput("give exactly one of webhook and email", what="target")
        channel = Channel.WEBHOOK if body.webhook is not None else Channel.EMAIL
        address = body.webhook if body.webhook is not None else body.email
        events = tuple(e for e in Event if e.value in body.events)
        target = services.notifications.add_target(body.vault, channel, address or "", events)
        return documents.notify_target_doc(target)

    @router.delete(
        "/{target_id}",
        response_model=TargetDoc,
        responses=responses(404),
        dependencies=contributor,
    )
    def remove_target(target_id: TargetId) -> dict[str, Any]:
        return documents.notify_target_doc(services.notifications.remove_target(target_id))

    @router.post(
        "/test",
        response_model=list[NotifyTestResultDoc],
        responses=responses(404),
        dependencies=contributor,
    )
    def test(body: NotifyTestRequest | None = None) -> list[dict[str, Any]]:
        """Send a test message now to one target, or to every target (of a vault); an id and a
        vault together are refused (400)."""
        body = body or NotifyTestRequest()
        return [
            documents.notify_test_doc(r) for r in services.notifications.test(body.id, body.vault)
        ]

    return router
