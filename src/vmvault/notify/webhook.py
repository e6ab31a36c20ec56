"""Webhooks: ``POST`` the message's JSON document to the target's URL.

Delivered means answered 2xx within the timeout; a redirect is not followed (a 3xx is a
failure: a webhook that moved must be configured again), and neither is anything else.
The body is the message's document (docs/notifications.md lists its fields) with
``Content-Type: application/json``; the headers ``X-Vmvault-Event`` and
``X-Vmvault-Delivery`` (the message's key) let a receiver route and deduplicate.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from vmvault import __version__
from vmvault.domain.errors import NotifyDeliveryFailed
from vmvault.domain.notification import Message, Target, shown_address


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, target: Target, message: Message) -> None:
        body = json.dumps(message.doc, sort_keys=True).encode()
        request = urllib.request.Request(
            target.address,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"vmvault/{__version__}",
                "X-Vmvault-Event": message.event.value,
                "X-Vmvault-Delivery": message.key,
            },
        )
        fail = {"channel": "webhook", "address": shown_address(target.address)}
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                status = answer.status
                answer.read(65536)
        except urllib.error.HTTPError as exc:
            raise NotifyDeliveryFailed(f"HTTP {exc.code} {exc.reason}", **fail) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NotifyDeliveryFailed(f"{type(exc).__name__}: {reason}", **fail) from None
        if not 200 <= status < 300:
            raise NotifyDeliveryFailed(f"HTTP {status}", **fail)
