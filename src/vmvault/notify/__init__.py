"""Notification senders: the adapters behind ``services.ports.NotificationSender``.

:class:`Senders` picks the channel's sender: a webhook (``webhook.py``: a JSON POST) or an
e-mail (``email.py``: SMTP with smtplib).  Each delivers once; the outbox retries
(services/notifications.py).
"""

from __future__ import annotations

from vmvault.domain.notification import Channel, Message, Target
from vmvault.notify.email import EmailSender, SmtpConfig
from vmvault.notify.webhook import WebhookSender

__all__ = ["EmailSender", "Senders", "SmtpConfig", "WebhookSender"]


class Senders:
    """The sender of each channel (satisfies ``NotificationSender``)."""

    def __init__(self, webhook: WebhookSender, email: EmailSender) -> None:
        self.webhook = webhook
        self.email = email

    def send(self, target: Target, message: Message) -> None:
        if target.channel is Channel.WEBHOOK:
            self.webhook.send(target, message)
        else:
            self.email.send(target, message)
