"""E-mail over SMTP (smtplib): one message per target address.

The server comes from the settings (``VMVAULT_SMTP_*``, config.py): host, port, sender
address, STARTTLS (verified against the system's CAs) and, when given, a user and password
for ``AUTH``.  The password is never part of an error, a log line or a repr.  Delivered
means the server accepted the message for the address.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from vmvault.domain.errors import NotifyDeliveryFailed, SmtpNotConfigured
from vmvault.domain.notification import Message, Target


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None
    port: int = 25
    sender: str = "vmvault@localhost"
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0


class EmailSender:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, target: Target, message: Message) -> None:
        c = self.config
        if not c.host:
            raise SmtpNotConfigured(setting="VMVAULT_SMTP_HOST")
        mail = EmailMessage()
        mail["From"] = c.sender
        mail["To"] = target.address
        mail["Subject"] = " ".join(message.subject.split())  # no line break in a header
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain="vmvault")
        mail["X-Vmvault-Event"] = message.event.value
        mail.set_content(message.text + "\n")
        fail = {"channel": "e-mail", "address": target.address}
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout) as smtp:
                if c.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if c.user:
                    smtp.login(c.user, c.password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            detail = f"SMTP authentication as {c.user} refused ({exc.smtp_code})"
            raise NotifyDeliveryFailed(detail, **fail) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyDeliveryFailed(f"{type(exc).__name__}: {exc}", **fail) from None
        if refused:
            raise NotifyDeliveryFailed(f"the server refused {', '.join(refused)}", **fail)
