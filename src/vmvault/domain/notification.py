"""Notifications: which events reach whom, and what they say (docs/notifications.md).

A *target* is a webhook URL or an e-mail address, configured for one vault and a set of
*events*.  Events come from two places:

* the end of a job (:func:`job_events`): a backup that failed (``failed``), a backup that
  completed with warnings (``warnings``), a verify that failed (``verify-failed``);
* the periodic overdue check (:func:`overdue_event`): a protected VM the dashboard flags as
  overdue or never backed up.  One notification per overdue *episode*: the episode is named
  by the VM and the time its lateness is counted from (its last good point, or the moment
  protection was configured), so a check every few minutes re-finds the same key and sends
  nothing new, and a new backup followed by a new lateness is a new episode;
* ``approval``: an operation that reduces protection was held for an admin's approval
  (services/approvals.py emits it when it stores the request; docs/approvals.md).

Every event becomes one :class:`Message` per matching target, written to the catalog's
outbox and delivered by the server's notifier with retries (:func:`retry_delay`); after
:data:`MAX_ATTEMPTS` failed deliveries the message is ``failed`` for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vmvault.domain.errors import InvalidInput
from vmvault.domain.iso import iso
from vmvault.domain.job import Job, JobState, JobType


class Event(StrEnum):
    FAILED = "failed"
    OVERDUE = "overdue"
    WARNINGS = "warnings"
    VERIFY_FAILED = "verify-failed"
    APPROVAL = "approval"
    #: ``vmvault notify test``: never subscribed to, sent on request.
    TEST = "test"


#: The events a target may subscribe to (``--events``), in the documented order.
SUBSCRIBABLE = (Event.FAILED, Event.OVERDUE, Event.WARNINGS, Event.VERIFY_FAILED, Event.APPROVAL)


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class Delivery(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Target:
    id: int
    vault: str
    channel: Channel
    address: str
    events: tuple[Event, ...]
    created_at: datetime

    def wants(self, event: Event) -> bool:
        return event is Event.TEST or event in self.events


@dataclass(frozen=True)
class Message:
    """What one event says: a subject line, a text body (the e-mail), and a JSON document
    (the webhook's body).  ``key`` deduplicates: one message per target and key."""

    event: Event
    vault: str
    key: str
    subject: str
    text: str
    doc: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """A message of the outbox, for one target."""

    id: int
    target: Target
    message: Message
    state: Delivery
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None = None


#: Failed deliveries before a message is ``failed`` for good.
MAX_ATTEMPTS = 6


def retry_delay(attempts: int, base: timedelta = timedelta(seconds=30)) -> timedelta:
    """How long after its ``attempts``-th failed delivery a message is tried again: ``base``
    doubled each time, at most one hour (30 s, 1 min, 2 min, 4 min, 8 min with the default)."""
    if attempts < 1:
        raise ValueError("attempts counts failed deliveries: at least 1")
    delay: timedelta = base * (2 ** min(attempts - 1, 20))
    return min(delay, timedelta(hours=1))


def after_failure(attempts: int, now: datetime, base: timedelta) -> tuple[Delivery, datetime]:
    """The state and next attempt time of a message whose ``attempts``-th delivery failed."""
    if attempts >= MAX_ATTEMPTS:
        return Delivery.FAILED, now
    return Delivery.PENDING, now + retry_delay(attempts, base)


# --- parsing what the user gives ----------------------------------------------------------

_EMAIL = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
MAX_ADDRESS = 2000


def parse_events(text: str) -> tuple[Event, ...]:
    """``failed,overdue,…`` (or ``all``) → the events, in the documented order."""
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    if names == {"all"}:
        return SUBSCRIBABLE
    known = {e.value for e in SUBSCRIBABLE}
    unknown = sorted(names - known)
    if unknown or not names:
        what = f"--events {text!r}"
        raise InvalidInput(f"use a comma-separated list of {', '.join(sorted(known))}", what=what)
    return tuple(e for e in SUBSCRIBABLE if e.value in names)


def check_address(channel: Channel, address: str) -> str:
    """A webhook's http(s) URL or an e-mail address, refused before anything is stored."""
    address = address.strip()
    if not address or len(address) > MAX_ADDRESS or not address.isprintable():
        raise InvalidInput("it is empty, too long or not printable", what=f"{channel} address")
    if channel is Channel.WEBHOOK:
        scheme, sep, rest = address.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest or " " in rest:
            shown = shown_address(address)
            raise InvalidInput("give an http:// or https:// URL", what=f"webhook {shown!r}")
    elif not _EMAIL.fullmatch(address):
        raise InvalidInput("give one address such as ops@example.com", what=f"e-mail {address!r}")
    return address


# --- which events a job's end produces -------------------------------------------------------


def job_events(job: Job) -> list[Event]:
    """The events the end of ``job`` produces (none for a job still active or cancelled).

    A backup set's children are backup jobs: each VM's failure is its own event, and the
    set job itself produces none (it would repeat them)."""
    if job.type is JobType.BACKUP:
        if job.state is JobState.FAILED:
            return [Event.FAILED]
        if job.state is JobState.COMPLETED_WITH_WARNINGS:
            return [Event.WARNINGS]
    if job.type is JobType.VERIFY and job.state is JobState.FAILED:
        return [Event.VERIFY_FAILED]
    return []


def job_message(event: Event, job: Job) -> Message:
    """The message of a job's end event."""
    who = job.vm_name or job.vm_uuid or f"vault {job.vault}"
    what = {
        Event.FAILED: "backup failed",
        Event.WARNINGS: "backup completed with warnings",
        Event.VERIFY_FAILED: "verify failed",
    }.get(event, event.value)
    subject = f"[vmvault] {who}: {what} (job {job.id})"
    lines = [
        f"{what}: {who}",
        f"vault: {job.vault}",
        f"job: {job.id} ({job.type.value}, {job.state.value})",
        f"started: {iso(job.started_at) or '-'}",
        f"ended: {iso(job.ended_at) or '-'}",
    ]
    if job.error_code:
        lines += [f"error: {job.error_code}: {job.message}", f"remedy: {job.remedy}"]
    lines += [f"warning: {w}" for w in job.warnings]
    lines.append(f"details: vmvault jobs show {job.id}")
    doc = {
        "event": event.value,
        "vault": job.vault,
        "vm": {"uuid": job.vm_uuid, "name": job.vm_name} if job.vm_uuid else None,
        "job": {
            "id": job.id,
            "type": job.type.value,
            "state": job.state.value,
            "started_at": iso(job.started_at),
            "ended_at": iso(job.ended_at),
            "error": (
                {"code": job.error_code, "message": job.message, "remedy": job.remedy}
                if job.error_code
                else None
            ),
            "warnings": list(job.warnings),
        },
        "subject": subject,
    }
    return Message(event, job.vault, f"job:{job.id}:{event.value}", subject, "\n".join(lines), doc)


# --- overdue episodes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Lateness:
    """A protected VM the dashboard's attention rule flags as late (services/dashboard.py)."""

    vault: str
    vm_uuid: str
    vm_name: str
    policy: str | None
    #: what lateness is counted from: the last good point, else when protection was configured
    since: datetime
    detail: str
    never_backed_up: bool = False


def overdue_key(late: Lateness) -> str:
    """The episode's key: the same VM late from the same moment is one episode."""
    return f"overdue:{late.vm_uuid}:{iso(late.since)}"


def overdue_message(late: Lateness) -> Message:
    what = "never backed up" if late.never_backed_up else "backup overdue"
    subject = f"[vmvault] {late.vm_name}: {what}"
    text = "\n".join(
        [
            f"{what}: {late.vm_name} ({late.vm_uuid})",
            f"vault: {late.vault}",
            f"policy: {late.policy or '-'}",
            late.detail,
            f"details: vmvault dashboard --vault {late.vault}",
        ]
    )
    doc = {
        "event": Event.OVERDUE.value,
        "vault": late.vault,
        "vm": {"uuid": late.vm_uuid, "name": late.vm_name},
        "policy": late.policy,
        "since": iso(late.since),
        "never_backed_up": late.never_backed_up,
        "detail": late.detail,
        "subject": subject,
    }
    return Message(Event.OVERDUE, late.vault, overdue_key(late), subject, text, doc)


# --- approvals (issue 14) and tests ---------------------------------------------------------


def approval_message(vault: str, request_id: str, operation: str, requested_by: str) -> Message:
    """An operation waits for an admin's approval (services/approvals.py, when it stores the
    pending request ``request_id``; ``operation`` is its summary)."""
    subject = f"[vmvault] approval needed: {operation}"
    text = "\n".join(
        [
            f"{requested_by} asks to {operation} (vault {vault}).",
            f"request: {request_id}",
            "An admin approves or refuses it.",
        ]
    )
    doc = {
        "event": Event.APPROVAL.value,
        "vault": vault,
        "request": request_id,
        "operation": operation,
        "requested_by": requested_by,
        "subject": subject,
    }
    return Message(Event.APPROVAL, vault, f"approval:{request_id}", subject, text, doc)


def sample_message(target: Target, at: datetime) -> Message:
    subject = f"[vmvault] test message for vault {target.vault}"
    text = "\n".join(
        [
            f"This is a test message from vmvault ({iso(at)}).",
            f"target {target.id}: {target.channel.value} {shown_address(target.address)}",
            f"events: {', '.join(e.value for e in target.events)}",
        ]
    )
    doc = {
        "event": Event.TEST.value,
        "vault": target.vault,
        "target": target.id,
        "at": iso(at),
        "subject": subject,
    }
    return Message(Event.TEST, target.vault, f"test:{iso(at)}", subject, text, doc)


def split_credentials(address: str) -> tuple[str, str | None]:
    """A URL without its ``user:password@``, and that ``user:password`` (still %-encoded),
    or ``None`` when the URL has none."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return address, None
    end = _authority_end(rest)
    userinfo, at, host = rest[:end].rpartition("@")
    if not at:
        return address, None
    return f"{scheme}://{host}{rest[end:]}", userinfo


def shown_address(address: str) -> str:
    """The address as lists, logs and errors show it.  An e-mail address whole; a URL as
    ``scheme://host[:port]/…``: its user and password are secrets, and so are its path and
    query (a Slack or Teams webhook's token is its path)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return address
    end = _authority_end(rest)
    host = rest[:end].rpartition("@")[2]
    return f"{scheme}://{host}/…" if rest[end:].strip("/") else f"{scheme}://{host}/"


def _authority_end(rest: str) -> int:
    """Where a URL's ``user:password@host:port`` ends (``rest`` follows ``scheme://``)."""
    return min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
