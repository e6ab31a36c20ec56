"""Notifications: targets and their delivery (docs/notifications.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class NotifyTargetNotFound(VmvaultError):
    code = "NOTIFY_TARGET_NOT_FOUND"
    message = "no notification target with id {target}"
    remedy = "List the targets with 'vmvault notify list'."
    kind = "usage"


class NotifyNoTarget(VmvaultError):
    code = "NOTIFY_NO_TARGET"
    message = "no notification target is configured{where}"
    remedy = "Add one with 'vmvault notify add --vault V --webhook URL | --email ADDRESS'."
    kind = "usage"


class SmtpNotConfigured(VmvaultError):
    code = "SMTP_NOT_CONFIGURED"
    message = "e-mail cannot be sent: {setting} is not set"
    remedy = (
        "Set VMVAULT_SMTP_HOST (and VMVAULT_SMTP_PORT, VMVAULT_SMTP_FROM; VMVAULT_SMTP_STARTTLS, "
        "VMVAULT_SMTP_USER and VMVAULT_SMTP_PASSWORD when the server needs them) for the "
        "process that sends: 'vmvault serve' and 'vmvault notify test'."
    )
    kind = "usage"


class NotifyDeliveryFailed(VmvaultError):
    code = "NOTIFY_DELIVERY_FAILED"
    message = "the {channel} notification to {address} was not delivered"
    remedy = (
        "Check that the receiver is up and reachable from this host ('vmvault notify test "
        "ID'); the server tries again with a growing delay and then marks the message failed."
    )
