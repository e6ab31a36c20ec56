"""Delivery of notifications (``vmvault.notify``)."""

from __future__ import annotations

from typing import Protocol

from vmvault.domain.notification import Message, Target


class NotificationSender(Protocol):
    """Delivers one message to one target, once (``vmvault.notify``): a webhook is a JSON
    POST of ``message.doc`` answered 2xx within the timeout; an e-mail is accepted by the SMTP
    server for the address.  Anything else MUST raise
    :class:`~vmvault.domain.errors.NotifyDeliveryFailed` (its ``detail`` says why, never a
    password) or, for e-mail without an SMTP server configured,
    :class:`~vmvault.domain.errors.SmtpNotConfigured`.  Retries are the caller's: the
    outbox tries again later."""

    def send(self, target: Target, message: Message) -> None: ...
